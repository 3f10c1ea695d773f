"""The compiled top-k selection against the numpy selection it replaced in ``exact_topk``."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.ann_index import exact_topk
from inference.topk_kernel import top_rows


def stable_reference(scores: npt.NDArray[np.float32], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The defined order: best score first, ties by lower column, NaN last."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def old_exact_selection(scores: npt.NDArray[np.float32], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``exact_topk``'s selection before the kernel (argpartition, then a stable sort)."""
    n = scores.shape[1]
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


@st.composite
def score_matrices(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    b = draw(st.integers(1, 4))
    n = draw(st.integers(1, 60))
    k = draw(st.integers(1, n))
    # few distinct values: ties everywhere, including across the k-th place
    levels = draw(st.lists(st.sampled_from([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0, np.nan]), min_size=1))
    picks = draw(st.lists(st.integers(0, len(levels) - 1), min_size=b * n, max_size=b * n))
    return np.asarray([levels[i] for i in picks], np.float32).reshape(b, n), k


@settings(max_examples=300, deadline=None)
@given(score_matrices())
def test_ties_and_nan_in_the_defined_order(case: tuple[np.ndarray, int]) -> None:
    scores, k = case
    rows, vals = top_rows(scores, k)
    ref_rows, ref_vals = stable_reference(scores, k)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(vals, ref_vals)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 400))
def test_same_as_the_old_selection_without_ties(seed: int, b: int, k: int) -> None:
    """Where the k-th place is not tied, the old argpartition path is defined too."""
    rng = np.random.default_rng(seed)
    n = 300 + k
    # distinct values in each row (a random float32 draw may repeat one: seed 549, k 286)
    scores = np.stack([rng.permutation(n) for _ in range(b)]).astype(np.float32) - n / 2
    k = min(k, scores.shape[1])
    rows, vals = top_rows(scores, k)
    old_rows, old_vals = old_exact_selection(scores, k)
    np.testing.assert_array_equal(rows, old_rows)
    np.testing.assert_array_equal(vals, old_vals)


def test_old_selection_with_ties_holds_the_same_scores() -> None:
    """On ties at the k-th place argpartition picks any of them: same scores, and the
    kernel's rows are the lowest of the tied ones."""
    scores = np.zeros((1, 50), np.float32)
    scores[0, [7, 30]] = 2.0
    rows, vals = top_rows(scores, 5)
    old_rows, old_vals = old_exact_selection(scores, 5)
    np.testing.assert_array_equal(vals, old_vals)
    assert rows[0].tolist() == [7, 30, 0, 1, 2]
    assert set(old_rows[0, :2].tolist()) == {7, 30}


def test_exact_topk_uses_ids_and_pads_beyond_the_catalog() -> None:
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    ids, scores = exact_topk(np.array([[1.0, 0.5]], np.float32), vecs, 5, ids=[10, 11, 12])
    assert ids.tolist() == [[12, 10, 11, -1, -1]]
    np.testing.assert_array_equal(scores, [[1.5, 1.0, 0.5, -np.inf, -np.inf]])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.sampled_from(["rising", "falling", "signed zeros", "infinities"]),
)
def test_ordered_rows_zeros_and_infinities_in_the_defined_order(
    seed: int, k: int, shape: str
) -> None:
    """Scores that rise or fall with the column (a heap's worst and best case), -0.0
    against 0.0 (equal: the lower column first), and infinities with NaN."""
    rng = np.random.default_rng(seed)
    n = 300 + k
    base = np.sort(rng.standard_normal(n)).astype(np.float32)
    if shape == "falling":
        base = base[::-1].copy()
    elif shape == "signed zeros":
        base = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0], np.float32), n)
    elif shape == "infinities":
        base = rng.choice(np.array([np.inf, -np.inf, np.nan, 0.0, 2.5], np.float32), n)
    scores = base[None, :]
    rows, vals = top_rows(scores, k)
    ref_rows, ref_vals = stable_reference(scores, k)
    np.testing.assert_array_equal(rows, ref_rows)
    assert vals.tobytes() == ref_vals.tobytes()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 3),
    st.integers(33, 12_000),
    st.sampled_from(["normal", "runs of equal scores", "few levels", "one value"]),
)
def test_catalog_sized_rows_in_the_defined_order(seed: int, b: int, n: int, shape: str) -> None:
    """Rows as long as a real catalog's, where the radix select takes several steps:
    distinct scores, long runs of equal ones (items sharing a content vector), a few
    levels, and one value everywhere (only the column decides)."""
    rng = np.random.default_rng(seed)
    if shape == "normal":
        scores = rng.standard_normal((b, n)).astype(np.float32)
    elif shape == "runs of equal scores":
        scores = rng.standard_normal((b, max(n // 40, 1))).astype(np.float32)
        scores = scores[:, rng.integers(0, scores.shape[1], n)]
    elif shape == "few levels":
        scores = rng.choice(np.array([0.25, 0.5, -1.0, 0.0, np.nan], np.float32), (b, n))
    else:
        scores = np.full((b, n), 0.75, np.float32)
    scores = np.ascontiguousarray(scores)
    for k in {1, 2, min(n, 300), int(rng.integers(1, n + 1)), n}:
        rows, vals = top_rows(scores, k)
        ref_rows, ref_vals = stable_reference(scores, k)
        np.testing.assert_array_equal(rows, ref_rows)
        assert vals.tobytes() == ref_vals.tobytes()
