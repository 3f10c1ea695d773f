"""The saved ANN index: the same answers as a fresh build, never used for other vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference import ann_store
from inference.ann_index import AnnIndex
from inference.ann_store import build_or_load, index_digest

N, D = 25_000, 16  # past EXACT_BELOW, so an IVF index


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(64, D))
    x = centres[rng.integers(0, 64, N)] + 0.5 * rng.normal(size=(N, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def queries(vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(4)
    return (vectors[rng.integers(0, N, 64)] + 0.1 * rng.normal(size=(64, D))).astype(np.float32)


class Builds:
    """Counts ``AnnIndex.build`` calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = AnnIndex.build

        def counted(*args: object, **kwargs: object) -> AnnIndex:
            self.calls += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(AnnIndex, "build", counted)


def test_a_saved_index_answers_as_the_fresh_build_did(
    vectors: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = Builds(monkeypatch)
    fresh = build_or_load(vectors, tmp_path)
    assert builds.calls == 1 and not fresh.is_exact
    assert len(list(tmp_path.glob("*.faiss"))) == 1
    loaded = build_or_load(vectors.copy(), tmp_path)
    assert builds.calls == 1  # read, not built
    q = queries(vectors)
    ids_a, scores_a = fresh.search(q, 100)
    ids_b, scores_b = loaded.search(q, 100)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(scores_a, scores_b)
    assert loaded.nprobe == fresh.nprobe and loaded.tuned_recall == fresh.tuned_recall
    # It keeps taking catalog changes as a built index does.
    for index in (fresh, loaded):
        index.add(np.array([N]), -q[:1])
        index.remove(np.arange(10))
    np.testing.assert_array_equal(fresh.search(q, 50)[0], loaded.search(q, 50)[0])


def test_changed_vectors_never_get_the_saved_index(
    vectors: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_or_load(vectors, tmp_path)
    builds = Builds(monkeypatch)
    changed = vectors.copy()
    changed[N // 2, 0] = np.nextafter(changed[N // 2, 0], np.float32(2))  # one ulp
    assert index_digest(changed) != index_digest(vectors)
    index = build_or_load(changed, tmp_path)
    assert builds.calls == 1  # rebuilt
    exact = AnnIndex.build(changed, np.arange(N), exact_below=N + 1)
    # The rebuilt index holds the changed vector: its exact score comes back.
    ids, scores = index.search(changed[N // 2 : N // 2 + 1], 1)
    assert ids[0, 0] == N // 2
    np.testing.assert_allclose(scores[0, 0], exact.search(changed[N // 2 : N // 2 + 1], 1)[1][0, 0])
    # Other build parameters are other indexes too.
    assert index_digest(vectors, seed=1) != index_digest(vectors)


@pytest.mark.parametrize("damage", ["one byte", "emptied"])
def test_a_damaged_file_is_rejected_and_rebuilt(
    vectors: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    build_or_load(vectors, tmp_path)
    (saved,) = tmp_path.glob("*.faiss")
    raw = bytearray(saved.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    saved.write_bytes(
        bytes(raw) if damage == "one byte" else b""
    )  # (an empty file cannot be mapped)
    builds = Builds(monkeypatch)
    index = build_or_load(vectors, tmp_path)
    assert builds.calls == 1 and index.size == N
    assert ann_store.load_index(tmp_path, index_digest(vectors), vectors.shape) is not None


def test_small_catalogs_and_no_folder_save_nothing(vectors: np.ndarray, tmp_path: Path) -> None:
    assert build_or_load(vectors[:1000], tmp_path).is_exact
    assert build_or_load(vectors, None).size == N
    assert not list(tmp_path.iterdir())


def test_adding_new_ids_to_a_read_index_asks_faiss_to_remove_nothing(
    vectors: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faiss's removal scans every list; an add of ids the index lacks must not pay it,
    and an upsert of a held id must still replace it (no duplicate)."""
    build_or_load(vectors, tmp_path)
    index = build_or_load(vectors, tmp_path)  # read: which ids it holds comes from faiss
    removals: list[int] = []
    real = index._ivf.remove_ids  # type: ignore[union-attr]

    def counted(selector: object) -> int:
        removals.append(1)
        return int(real(selector))

    monkeypatch.setattr(index._ivf, "remove_ids", counted)
    q = queries(vectors)
    index.add(np.arange(N, N + 5), q[:5])
    assert removals == [] and index.size == N + 5
    index.add(np.array([7]), -q[:1])  # an upsert of a held id
    assert removals == [1] and index.size == N + 5
    ids, _ = index.search(-q[:1], 3)
    assert ids[0, 0] == 7 and len(set(ids[0].tolist())) == 3
    assert index.remove(np.array([10**9])) == 0 and removals == [1]
