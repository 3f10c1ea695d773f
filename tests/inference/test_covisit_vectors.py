"""Vectors of items that arrived since the retrain, from their co-occurrences."""

from __future__ import annotations

import numpy as np

from inference.covisit import CovisitTable, follow_pairs
from inference.covisit_vectors import covisit_vectors


def test_a_new_item_visited_with_one_cluster_lands_in_it() -> None:
    """Planted: two trained clusters; the new item (row 20) is visited after cluster B."""
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    vecs = np.concatenate([centres[i // 10] + 0.05 * rng.standard_normal(3) for i in range(20)])
    vecs = np.vstack([vecs.reshape(20, 3), [[0.0, 0.0, 1.0]]]).astype(np.float32)  # content
    known = np.arange(21) < 20
    table = CovisitTable(width=16)
    sessions = [[int(rng.integers(10, 20)), 20] for _ in range(30)]
    sessions += [[int(rng.integers(0, 10)), int(rng.integers(0, 10))] for _ in range(30)]
    table.add(*follow_pairs(sessions, [2] * len(sessions), window=3))
    got = covisit_vectors(table, [20], vecs, known, prior=1.0)[0]
    sims = centres @ got / np.linalg.norm(got)
    assert sims[1] > 0.9 and sims[0] < 0.1  # cluster B, not A, and little content left
    alone = covisit_vectors(table, [20], vecs, known, prior=1e6)[0]
    assert np.allclose(alone, vecs[20], atol=1e-3)  # a heavy prior keeps the content


def test_unknown_neighbours_and_unseen_rows_keep_the_content_vector() -> None:
    """Known answer: only trained neighbours pull, with the prior as one more pair."""
    table = CovisitTable(width=4)
    table.add([3, 3, 3], [0, 1, 2], [2.0, 1.0, 5.0])
    vecs = np.array([[1, 0], [0, 1], [9, 9], [0, 0], [5, 5]], np.float32)
    known = np.array([True, True, False, False, True])
    got = covisit_vectors(table, [3, 4, 7 % 5], vecs, known, prior=1.0)
    assert np.allclose(got[0], [2 / 4, 1 / 4])  # (1·[0,0] + 2·[1,0] + 1·[0,1]) / 4
    assert np.allclose(got[1], vecs[4]) and np.allclose(got[2], vecs[2])  # no neighbours


def test_known_as_a_row_count_and_an_own_prior_give_the_mask_s_answer() -> None:
    """Rows below ``known`` pull; ``own`` replaces the row's vector as the prior."""
    table = CovisitTable(width=4)
    table.add([3, 3, 3], [0, 1, 2], [2.0, 1.0, 5.0])
    vecs = np.array([[1, 0], [0, 1], [9, 9], [7, 7]], np.float32)
    by_mask = covisit_vectors(table, [3], vecs, np.array([True, True, False, False]))
    by_count = covisit_vectors(table, [3], vecs, 2)
    assert np.allclose(by_mask, by_count)
    got = covisit_vectors(table, [3], vecs, 2, prior=1.0, own=[[0.0, 0.0]])
    assert np.allclose(got[0], [2 / 4, 1 / 4])  # (1·[0,0] + 2·[1,0] + 1·[0,1]) / 4
