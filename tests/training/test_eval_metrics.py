"""Known-answer tests for the evaluation metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.evaluation import metrics as m


def test_ndcg_worked_example() -> None:
    # Relevant {1, 3}; list [1, 2, 3]: DCG = 1/log2(2) + 1/log2(4) = 1.5,
    # IDCG = 1 + 1/log2(3) = 1.6309..., NDCG = 0.91972...
    got = m.ndcg_at_k(np.array([[1, 2, 3]]), [{1, 3}], k=3)
    assert got == pytest.approx(1.5 / (1.0 + 1.0 / math.log2(3)), abs=1e-12)
    assert got == pytest.approx(0.919720, abs=1e-6)


def test_recall_worked_example() -> None:
    rec = np.array([[5, 1, 7], [2, 3, 4]])
    assert m.recall_at_k(rec, [{1, 9}, {4}], k=2) == pytest.approx((0.5 + 0.0) / 2)
    assert m.recall_at_k(rec, [{1, 9}, {4}], k=3) == pytest.approx((0.5 + 1.0) / 2)


def test_rank_metrics_worked_example() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.6], [1.0, 1.0, 1.0, 1.0]])
    ranks = m.target_ranks(scores, np.array([2, 0, 1]))
    # Row 0: 0.5 is second; row 1: 0.4 is third; row 2: ties rank the target last.
    assert ranks.tolist() == [1, 2, 3]
    assert m.hit_rate_at_k(ranks, 2) == pytest.approx(1 / 3)
    assert m.ndcg_from_ranks(ranks, 3) == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert m.mrr(ranks) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)


def test_excluded_target_ranks_last() -> None:
    scores = np.array([[0.3, -np.inf, 0.1]])
    assert m.target_ranks(scores, np.array([1])).tolist() == [2]


def test_head_long_tail_coverage_novelty() -> None:
    pop = np.array([50.0, 30.0, 10.0, 5.0, 5.0])
    head = m.head_items(pop, 0.8)  # 50 + 30 = 80% of 100
    assert head.tolist() == [True, True, False, False, False]
    rec = np.array([[0, 2], [3, 4]])
    assert m.long_tail_share(rec, head) == pytest.approx(0.75)
    assert m.catalog_coverage(rec, 5) == pytest.approx(0.8)
    expect = -np.mean(np.log2(np.array([50, 10, 5, 5]) / 100))
    assert m.novelty(rec, pop) == pytest.approx(expect)


def test_intra_list_diversity() -> None:
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert m.intra_list_diversity(np.array([[0, 1]]), vecs) == pytest.approx(1.0)
    assert m.intra_list_diversity(np.array([[0, 2]]), vecs) == pytest.approx(0.0)


def test_top_k_is_sorted() -> None:
    scores = np.array([[0.2, 0.9, 0.1, 0.5]])
    assert m.top_k(scores, 3).tolist() == [[1, 3, 0]]


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30), st.data())
def test_rank_matches_sorted_position(values: list[float], data: st.DataObject) -> None:
    scores = np.array([values])
    target = data.draw(st.integers(0, len(values) - 1))
    rank = int(m.target_ranks(scores, np.array([target]))[0])
    assert rank == sum(v >= values[target] for v in values) - 1
    assert 0.0 <= m.ndcg_from_ranks(np.array([rank]), 10) <= 1.0
