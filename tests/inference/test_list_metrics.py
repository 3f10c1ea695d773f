"""Known-answer tests for the single-list metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.list_metrics import (
    BINCOUNT_MAX,
    _head_by_sort,
    _head_of_counts,
    _head_of_whole_counts,
    intra_list_diversity,
    longtail_share,
    popularity_head,
)


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


@settings(max_examples=400, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), max_size=300),
    mass=st.floats(0.0, 1.2),
    scale=st.sampled_from([1.0, 3.0]),
)
def test_popularity_head_by_histogram_equals_the_stable_sort(
    counts: list[int], mass: float, scale: float
) -> None:
    """Whole counts take the histogram path; it must give the stable sort's head."""
    c = np.asarray(counts, np.float64) * scale
    total = c.sum()
    expected = (
        _head_by_sort(c, mass * total * (1 - 1e-12)) if total > 0 else np.zeros(c.shape, bool)
    )
    np.testing.assert_array_equal(popularity_head(c, mass), expected)


def test_popularity_head_of_fractional_or_huge_counts_still_sorts() -> None:
    """Decayed (fractional) counts and counts far above the catalog size take the sort."""
    frac = np.array([0.5, 2.25, 2.25, 0.0, 1.0])
    np.testing.assert_array_equal(popularity_head(frac, 0.3), [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(popularity_head(frac, 0.8), [0, 1, 1, 0, 1])
    huge = np.array([1e9, 5.0, 1e9 + 1, 0.0])
    np.testing.assert_array_equal(popularity_head(huge, 0.4), [0, 0, 1, 0])
    np.testing.assert_array_equal(popularity_head(huge, 0.5), [1, 0, 1, 0])


@settings(max_examples=400, deadline=None)
@given(
    counts=st.lists(st.one_of(st.integers(-3, 40).map(float), st.just(float("nan"))), max_size=300),
    mass=st.floats(0.0, 1.2),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_compiled_head_equals_the_numpy_histogram(
    counts: list[float], mass: float, dtype: type
) -> None:
    """The compiled pass (the catalog's float32 counts) against the numpy histogram path
    it stands in for, with NaN and negative counts as 0."""
    raw = np.asarray(counts, dtype)
    c = np.clip(np.nan_to_num(raw.astype(np.float64), nan=0.0), 0.0, None)
    total = c.sum()
    expected = (
        _head_of_counts(c, mass * total * (1 - 1e-12)) if total > 0 else np.zeros(c.shape, bool)
    )
    head, whole = _head_of_whole_counts(raw, mass, BINCOUNT_MAX)
    assert whole
    np.testing.assert_array_equal(head, expected)
    np.testing.assert_array_equal(popularity_head(raw, mass), expected)


def test_compiled_head_leaves_fractional_and_huge_counts_to_numpy() -> None:
    assert not _head_of_whole_counts(np.array([1.5, 2.0]), 0.8, BINCOUNT_MAX)[1]
    assert not _head_of_whole_counts(np.array([1e9, 2.0]), 0.8, BINCOUNT_MAX)[1]
    assert not _head_of_whole_counts(np.array([2.0, np.inf], np.float32), 0.8, BINCOUNT_MAX)[1]
    assert not _head_of_whole_counts(np.array([3.0, 2.5], np.float32), 0.8, BINCOUNT_MAX)[1]
    np.testing.assert_array_equal(popularity_head(np.array([1.5, 2.0, 0.1])), [1, 1, 0])
