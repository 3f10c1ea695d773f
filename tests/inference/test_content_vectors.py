"""Model-free content vectors: shared content means nearby vectors."""

from __future__ import annotations

import numpy as np

from inference.content_vectors import catalog_content_vectors, content_vectors


def test_same_category_items_are_closer_than_others() -> None:
    rng = np.random.default_rng(0)
    items = []
    for i in range(200):
        cat = f"cat{i % 4}"
        words = " ".join(f"w{cat}{int(k)}" for k in rng.integers(0, 5, 3))
        items.append(((cat,), {"brand": f"b{int(rng.integers(0, 50))}"}, words))
    vecs = catalog_content_vectors(items, 64)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    same = np.equal.outer(np.arange(200) % 4, np.arange(200) % 4)
    off_diag = ~np.eye(200, dtype=bool)
    assert sims[same & off_diag].mean() > 0.4
    assert abs(sims[~same].mean()) < 0.1


def test_deterministic_and_padding_ignored() -> None:
    rows = np.array([[5, 9, 0, 0], [5, 9, 0, 0], [0, 0, 0, 0]])
    a = content_vectors(rows, 16, seed=3)
    b = content_vectors(rows, 16, seed=3)
    assert np.array_equal(a, b)
    assert np.array_equal(a[0], a[1])
    assert not a[2].any()
    assert not np.array_equal(a[0], content_vectors(rows, 16, seed=4)[0])
