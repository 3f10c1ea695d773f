"""AnnIndex: exact reference, recall of the IVF path, and catalog adds/removals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference.ann_index import AnnIndex, exact_topk


def clustered(n: int, d: int, n_clusters: int, spread: float, seed: int) -> np.ndarray:
    """Unit item vectors scattered around random cluster centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


finite = st.floats(-10, 10, width=32)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 30),
    b=st.integers(1, 4),
    k=st.integers(1, 40),
)
def test_exact_topk_matches_full_sort(data: st.DataObject, n: int, b: int, k: int) -> None:
    d = 3
    vecs = data.draw(arrays(np.float32, (n, d), elements=finite))
    queries = data.draw(arrays(np.float32, (b, d), elements=finite))
    ids, scores = exact_topk(queries, vecs, k)
    assert ids.shape == scores.shape == (b, k)
    full = queries @ vecs.T
    kk = min(k, n)
    for row in range(b):
        expected = np.sort(full[row])[::-1][:kk]
        np.testing.assert_allclose(scores[row, :kk], expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(full[row, ids[row, :kk]], scores[row, :kk], rtol=1e-5, atol=1e-4)
        assert len(set(ids[row, :kk].tolist())) == kk
        assert (ids[row, kk:] == -1).all() and np.isneginf(scores[row, kk:]).all()


@pytest.fixture(scope="module")
def big_catalog() -> tuple[np.ndarray, AnnIndex]:
    vecs = clustered(100_000, 64, n_clusters=256, spread=0.7, seed=1)
    return vecs, AnnIndex.build(vecs, np.arange(vecs.shape[0]), seed=0)


def test_ivf_recall_at_200_on_clustered_100k(big_catalog: tuple[np.ndarray, AnnIndex]) -> None:
    vecs, index = big_catalog
    assert not index.is_exact and index.size == 100_000
    rng = np.random.default_rng(2)
    queries = vecs[rng.integers(0, vecs.shape[0], 200)] + 0.1 * rng.normal(size=(200, 64))
    ann_ids, ann_scores = index.search(queries, 200)
    exact_ids, _ = exact_topk(queries, vecs, 200)
    recall = np.mean(
        [np.intersect1d(a, e).size / 200 for a, e in zip(ann_ids, exact_ids, strict=True)]
    )
    assert recall >= 0.95, recall
    assert np.all(np.diff(ann_scores, axis=1) <= 1e-6)  # best first


@pytest.mark.parametrize("exact_below", [10_000, 500])
def test_added_item_is_found_and_removed_item_is_not(exact_below: int) -> None:
    vecs = clustered(2_000, 16, n_clusters=20, spread=0.3, seed=3)
    index = AnnIndex.build(vecs, np.arange(2_000), exact_below=exact_below)
    assert index.is_exact == (exact_below > 2_000)
    rng = np.random.default_rng(4)
    new_vec = rng.normal(size=16).astype(np.float32) * 3  # larger norm: top by inner product
    index.add([5_000], new_vec[None, :])
    assert index.size == 2_001
    ids, _ = index.search(new_vec[None, :], 10)
    assert ids[0, 0] == 5_000

    index.remove([5_000, 77, 123_456])
    assert index.size == 1_999
    ids, _ = index.search(np.vstack([new_vec, vecs[77]]), 50)
    assert 5_000 not in ids and 77 not in ids


@pytest.mark.parametrize("exact_below", [10_000, 500])
def test_upsert_replaces_the_vector(exact_below: int) -> None:
    vecs = clustered(1_000, 8, n_clusters=10, spread=0.3, seed=5)
    index = AnnIndex.build(vecs, np.arange(1_000), exact_below=exact_below)
    target = -vecs[10] * 5
    index.add([10], target[None, :])
    assert index.size == 1_000
    ids, scores = index.search(target[None, :], 1)
    assert ids[0, 0] == 10
    np.testing.assert_allclose(scores[0, 0], float(target @ target), rtol=1e-4)


def test_index_trains_ivf_once_catalog_reaches_threshold() -> None:
    vecs = clustered(1_500, 8, n_clusters=10, spread=0.3, seed=6)
    index = AnnIndex.build(vecs[:900], np.arange(900), exact_below=1_000)
    assert index.is_exact
    index.add(np.arange(900, 1_500), vecs[900:])
    assert not index.is_exact and index.size == 1_500
    ids, _ = index.search(vecs[1_200][None, :], 5)
    assert 1_200 in ids


def test_search_pads_when_catalog_is_small() -> None:
    index = AnnIndex.build(np.eye(3, dtype=np.float32), np.array([7, 8, 9]))
    ids, scores = index.search(np.ones((2, 3)), 5)
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert set(ids[0, :3].tolist()) == {7, 8, 9}


def test_rejects_bad_input() -> None:
    index = AnnIndex.build(np.eye(3, dtype=np.float32), np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        index.add([3, 3], np.ones((2, 3)))
    with pytest.raises(ValueError):
        index.add([4], np.full((1, 3), np.nan))
    with pytest.raises(ValueError):
        index.search(np.ones((1, 4)), 1)


def test_nprobe_is_tuned_down_on_a_clustered_catalog(
    big_catalog: tuple[np.ndarray, AnnIndex],
) -> None:
    """Well-separated clusters need few lists: fewer than the old fixed nlist // 32."""
    _, index = big_catalog
    assert index.tuned_recall is not None and index.tuned_recall >= 0.97
    assert index.nprobe is not None and index.nprobe < 39


def test_a_repeated_exact_search_is_the_prefix_of_the_last_answer() -> None:
    """The same queries asked again for fewer results get exactly the exact search's
    answer; other queries, or more results, are searched again."""
    from inference.ann_index import RepeatedSearch

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((500, 8)).astype(np.float32)
    vecs[10] = vecs[20]  # a tie: the lower row first, in both answers
    index = AnnIndex.build(vecs, np.arange(500), exact_below=1_000)
    memo = RepeatedSearch(index)
    q = np.vstack([vecs[10], rng.standard_normal(8)]).astype(np.float32)
    wide = memo.search(q, 50)
    for k in (1, 7, 50):
        ids, scores = memo.search(q.copy(), k)
        want_ids, want_scores = index.search(q, k)
        np.testing.assert_array_equal(ids, want_ids)
        assert scores.tobytes() == want_scores.tobytes()
        np.testing.assert_array_equal(ids, wide[0][:, :k])
    assert memo.search(q, 60)[0].shape == (2, 60)
    np.testing.assert_array_equal(memo.search(q[::-1], 5)[0], index.search(q[::-1], 5)[0])


def _same_up_to_boundary_ties(
    ids: np.ndarray, scores: np.ndarray, want_ids: np.ndarray, want_scores: np.ndarray
) -> None:
    """Equal scores everywhere, and equal ids wherever the score beats the last one kept
    (faiss keeps any of the items tied at the cut)."""
    np.testing.assert_array_equal(scores, want_scores)
    inside = scores > scores[:, -1:]
    np.testing.assert_array_equal(ids[inside], want_ids[inside])


def test_an_ivf_search_for_fewer_results_is_the_prefix_of_a_wider_one() -> None:
    """Asking an IVF index for fewer results gives the prefix of a wider answer (up to
    which of the items tied at the cut it keeps), so a sample of the last batch's rows
    gets those rows' prefix from the memo: the chooser's search of the candidates' users."""
    from inference.ann_index import RepeatedSearch

    rng = np.random.default_rng(5)
    base = rng.standard_normal((1_500, 16)).astype(np.float32)
    vecs = np.repeat(base, 2, axis=0)  # every score tied with one other id
    ids = rng.permutation(vecs.shape[0]).astype(np.int64)
    index = AnnIndex.build(vecs, ids, seed=0, exact_below=100)
    assert not index.is_exact
    q = rng.standard_normal((40, 16)).astype(np.float32)
    wide_ids, wide_scores = index.search(q, 120)
    for k in (1, 2, 9, 64, 120):
        got_ids, got_scores = index.search(q, k)
        _same_up_to_boundary_ties(got_ids, got_scores, wide_ids[:, :k], wide_scores[:, :k])
    memo = RepeatedSearch(index)
    memo.search(q, 120)
    pick = np.array([3, 0, 39, 17])
    got_ids, got_scores = memo.search(q[pick].copy(), 50)
    np.testing.assert_array_equal(got_ids, wide_ids[pick, :50])
    np.testing.assert_array_equal(got_scores, wide_scores[pick, :50])
    fresh_ids, fresh_scores = index.search(q[pick], 50)
    _same_up_to_boundary_ties(got_ids, got_scores, fresh_ids, fresh_scores)
    other = np.vstack([q[:2], rng.standard_normal((1, 16)).astype(np.float32)])
    got_ids, got_scores = memo.search(other, 10)  # two rows remembered, one searched
    np.testing.assert_array_equal(got_ids[:2], wide_ids[:2, :10])
    np.testing.assert_array_equal(got_ids[2:], index.search(other[2:], 10)[0])
    assert memo.search(q[:1], 120)[0].shape == (1, 120)  # still the batch remembered


def test_ivf_search_is_faiss_search_with_missing_slots_at_minus_inf() -> None:
    """``search_matrix`` calls faiss's C++ search directly; the answers are those of
    faiss's Python ``search`` with empty slots' scores at -inf (the old form), bit for
    bit: whole batches, one query, a strided float64 query, and results past what the
    probed lists hold (id -1)."""
    rng = np.random.default_rng(11)
    vecs = clustered(3_000, 16, n_clusters=30, spread=0.2, seed=11)
    ids = rng.permutation(10_000)[:3_000].astype(np.int64)
    index = AnnIndex.build(vecs, ids, seed=0, exact_below=100, nprobe=2)
    assert not index.is_exact
    index.remove(ids[::7])
    ivf = index._ivf
    assert ivf is not None

    def old(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, found = ivf.search(np.ascontiguousarray(q, np.float32), k)
        found = found.astype(np.int64, copy=False)
        return found, np.where(found >= 0, scores, -np.inf).astype(np.float32, copy=False)

    queries = rng.standard_normal((9, 16)).astype(np.float32)
    for q, k in ((queries, 10), (queries[:1], 1), (queries[3:4], 2_000), (queries, 600)):
        got_ids, got_scores = index.search_matrix(np.ascontiguousarray(q), k)
        want_ids, want_scores = old(q, k)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_scores.view(np.uint32), want_scores.view(np.uint32))
        assert got_ids.dtype == np.int64 and got_scores.dtype == np.float32
    got_ids, got_scores = index.search_matrix(queries, 2_000)
    assert (got_ids == -1).any()  # the probed lists hold fewer: slots left empty
    assert np.isneginf(got_scores[got_ids == -1]).all()  # faiss writes -FLT_MAX there
    strided = queries.astype(np.float64)[::2]  # not float32, not C-contiguous
    np.testing.assert_array_equal(index.search_matrix(strided, 50)[0], old(strided, 50)[0])
    # a query of another width is refused, not read past its end by faiss's C search
    for bad in (queries[:, :8], queries[0], np.zeros((2, 32), np.float32)):
        with pytest.raises(ValueError, match=r"\(B, 16\)"):
            index.search_matrix(np.ascontiguousarray(bad), 5)
