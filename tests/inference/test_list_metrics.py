"""Known-answer tests for the single-list metrics."""

from __future__ import annotations

import numpy as np
import pytest

from inference.list_metrics import intra_list_diversity, longtail_share, popularity_head


def test_popularity_head_is_the_80_percent_prefix() -> None:
    counts = np.array([5, 50, 10, 30, 5, 0])  # 50 + 30 = 80 of 100
    np.testing.assert_array_equal(popularity_head(counts), [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(popularity_head(counts, mass=0.81), [0, 1, 1, 1, 0, 0])


def test_popularity_head_of_an_idle_catalog_is_empty() -> None:
    assert not popularity_head(np.zeros(4)).any()
    assert popularity_head(np.array([], dtype=float)).shape == (0,)


def test_intra_list_diversity_known_answers() -> None:
    e = np.eye(3)
    # Orthogonal, distinct categories: every pair fully dissimilar.
    assert intra_list_diversity(e, [0, 1, 2]) == pytest.approx(1.0)
    # Same vector and category: no diversity.
    assert intra_list_diversity(np.ones((3, 2)), [4, 4, 4]) == pytest.approx(0.0)
    # Orthogonal but one shared category: pairs (0,1) 0.5 and two pairs 1 -> 2.5 / 3.
    assert intra_list_diversity(e, [0, 0, 1], category_weight=0.5) == pytest.approx(2.5 / 3)
    assert intra_list_diversity(e[:1]) == 0.0


def test_longtail_share_ignores_padding() -> None:
    head = np.array([True, False, False, True])
    assert longtail_share([0, 1, 2, -1], head) == pytest.approx(2 / 3)
    assert longtail_share([-1], head) == 0.0
