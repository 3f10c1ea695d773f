"""The catalog's columns grown off the scoring lock (``grown``) and swapped in (``adopt``).

A growth copies every column while the catalog keeps serving; vectors placed and counts
written meanwhile must not be lost when the copies are swapped in, and a growth that
went stale must change nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference import item_catalog
from inference.item_catalog import ItemCatalog

D = 4


def _catalog(n: int = 6) -> ItemCatalog:
    rng = np.random.default_rng(0)
    return ItemCatalog(
        [f"i{r}" for r in range(n)],
        rng.normal(size=(n, D)).astype(np.float32),
        categories=[f"c{r % 2}" for r in range(n)],
        popularity=np.arange(n, dtype=np.float32),
        first_seen_ms=np.arange(n, dtype=np.float64) * 10,
        spare=0,
    )


def _columns(cat: ItemCatalog) -> dict[str, np.ndarray]:
    t = cat.table(1_000)
    return {
        "vectors": t.vectors.copy(),
        "unit": cat._unit[: cat.size].copy(),
        "categories": t.categories.copy(),
        "popularity": t.popularity.copy(),
        "age": t.age_s.copy(),
        "removed": t.removed.copy(),
    }


def test_adopted_columns_serve_the_same_rows_with_room_for_more() -> None:
    cat = _catalog()
    before = _columns(cat)
    assert cat.room == 16  # the least spare a catalog keeps
    growth = cat.grown(cat.size + 100)
    assert cat.room == 16  # preparing changes nothing served
    assert cat.adopt(growth)
    assert cat.room == 100 and growth.capacity == 106
    for name, column in _columns(cat).items():
        np.testing.assert_array_equal(column, before[name], err_msg=name)
    rows = cat.append([f"n{i}" for i in range(100)])  # fits: nothing grows under a hold
    assert rows.tolist() == list(range(6, 106)) and cat.room == 0
    t = cat.table(1_000)
    assert (t.categories[6:] == -1).all() and np.isinf(t.age_s[6:]).all()
    assert not t.vectors[6:].any() and not t.removed.any()


def test_writes_made_while_the_columns_are_copied_survive_the_swap() -> None:
    cat = _catalog()
    growth = cat.grown(cat.size + 10)
    placed = np.full((2, D), 3.0, np.float32)
    cat.place_vectors(np.array([1, 4]), placed)  # a scoring call, during the copy
    cat.set_popularity_rows(np.array([0, 5, -1]), np.array([50, 55, 99], np.float32))
    assert cat.adopt(growth)
    t = cat.table(1_000)
    np.testing.assert_array_equal(t.vectors[[1, 4]], placed)
    np.testing.assert_allclose(cat._unit[[1, 4]], 0.5)  # (3,3,3,3) / 6
    assert t.popularity.tolist() == [50, 1, 2, 3, 4, 55]
    cat.place_vectors(np.array([2]), placed[:1])  # after the swap: the new columns
    assert (cat.table(1_000).vectors[2] == 3.0).all()


def test_a_stale_growth_is_refused_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    cat = _catalog()
    first = cat.grown(cat.size + 10)
    second = cat.grown(cat.size + 20)
    assert not cat.adopt(first)  # replaced by a later growth
    assert cat.room == 16
    monkeypatch.setattr(item_catalog, "GROWTH_REDO_MAX", 3)
    before = _columns(cat)
    cat.set_popularity_rows(np.arange(4), np.full(4, 9, np.float32))  # 4 rows > 3
    assert not cat.adopt(second)  # too much to copy again under the lock
    assert cat.room == 16
    after = _columns(cat)
    assert after["popularity"].tolist() == [9, 9, 9, 9, 4, 5]
    np.testing.assert_array_equal(after["vectors"], before["vectors"])
    third = cat.grown(cat.size + 20)  # prepared again, it goes in
    assert cat.adopt(third) and cat.room == 33 - 6  # half as much again: more than asked
    assert cat.table(1_000).popularity.tolist() == [9, 9, 9, 9, 4, 5]


def test_a_popularity_column_prepared_aside_is_swapped_in_whole() -> None:
    """Counts go in as one prepared column (the per-item assignment off the lock); the
    served column is untouched until the swap, and a stale column is refused."""
    cat = _catalog()
    served = cat.table(1_000).popularity.tolist()
    prepared = cat.popularity_column(np.array([2, -1, 4]), np.array([20, 99, 40], np.float32))
    assert cat.table(1_000).popularity.tolist() == served == [0, 1, 2, 3, 4, 5]
    stale = cat.popularity_column(np.array([0]), np.array([7], np.float32))
    assert cat.set_popularity_column(prepared)
    assert cat.table(1_000).popularity.tolist() == [0, 1, 20, 3, 40, 5]
    assert not cat.set_popularity_column(stale)  # copied before the swap: would undo it
    assert cat.table(1_000).popularity.tolist() == [0, 1, 20, 3, 40, 5]
    before_write = cat.popularity_column(np.array([0]), np.array([7], np.float32))
    cat.set_popularity_rows(np.array([1]), np.array([11], np.float32))  # counts changed
    assert not cat.set_popularity_column(before_write)
    assert cat.table(1_000).popularity.tolist() == [0, 11, 20, 3, 40, 5]


def test_counts_swapped_in_during_a_growth_survive_it() -> None:
    cat = _catalog()
    growth = cat.grown(cat.size + 10)
    assert cat.set_popularity_column(
        cat.popularity_column(np.array([3, 5]), np.array([33, 55], np.float32))
    )
    assert cat.adopt(growth)  # its copy of the column predates the counts
    assert cat.table(1_000).popularity.tolist() == [0, 1, 2, 33, 4, 55]


def test_a_popularity_sync_of_every_row_during_a_growth_lets_it_finish() -> None:
    """A sync counts every item: journalled row by row, it went past ``GROWTH_REDO_MAX``
    and the growth was refused (and prepared again, and refused again at the next sync).
    Prepared while the growth is under way, the column has the growth's room and the
    growth serves it as it is."""
    n = item_catalog.GROWTH_REDO_MAX + 1_000
    cat = ItemCatalog([f"i{r}" for r in range(n)], np.ones((n, D), np.float32), spare=0)
    growth = cat.grown(n + 100)
    counts = np.arange(n, dtype=np.float32) + 7
    prepared = cat.popularity_column(np.arange(n), counts)
    assert cat.set_popularity_column(prepared)
    assert cat.adopt(growth)
    assert cat._popularity is prepared[2]  # adopted, not copied again
    assert cat.room == growth.capacity - n and growth.capacity >= n + 100
    assert cat.table(1_000).popularity.tolist() == counts.tolist()
    rows = cat.append(["n0", "n1"])  # the new rows hold no counts
    assert cat.table(1_000).popularity[rows].tolist() == [0, 0]
    assert cat.set_popularity_column(cat.popularity_column(rows, np.array([3, 4], np.float32)))
    assert cat.table(1_000).popularity[-2:].tolist() == [3, 4]


def test_a_column_copied_before_a_growth_began_is_prepared_again() -> None:
    cat = _catalog()
    early = cat.popularity_column(np.array([1]), np.array([10], np.float32))
    growth = cat.grown(cat.size + 10)
    assert not cat.set_popularity_column(early)  # it lacks the growth's room
    assert cat.table(1_000).popularity.tolist() == [0, 1, 2, 3, 4, 5]
    assert cat.set_popularity_column(
        cat.popularity_column(np.array([1]), np.array([10], np.float32))
    )
    assert cat.adopt(growth)
    assert cat.table(1_000).popularity.tolist() == [0, 10, 2, 3, 4, 5]


def test_a_wide_column_left_by_a_refused_growth_still_grows() -> None:
    """A growth refused after a column with its room went in leaves that column longer
    than the catalog's capacity; growing again keeps its rows."""
    cat = _catalog()
    first = cat.grown(cat.size + 40)
    assert cat.set_popularity_column(cat.popularity_column(np.array([0]), np.ones(1, np.float32)))
    cat.grown(cat.size + 10)  # replaces the first
    assert not cat.adopt(first)
    assert cat._popularity.shape[0] == first.capacity == 46  # wider than the catalog's 22
    cat.append([f"n{i}" for i in range(17)])  # past the room: grows in the call, to 33
    assert cat.room == 33 - 23 and cat._popularity.shape[0] == 33
    assert cat.table(1_000).popularity.tolist() == [1, 1, 2, 3, 4, 5] + [0] * 17
