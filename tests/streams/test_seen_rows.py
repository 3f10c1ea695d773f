"""Kept seen rows against a fresh catalog lookup, through appends, moves, drops and growth."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.item_catalog import ItemCatalog
from streams.core.seen_rows import SeenRows

ITEMS = [f"i{r}" for r in range(12)]


def _catalog(n: int) -> ItemCatalog:
    return ItemCatalog(ITEMS[:n], np.zeros((n, 2), np.float32))


def _seen_after(seen: tuple[str, ...], item: str, bound: int) -> tuple[str, ...]:
    """``UserState.seen``'s rule: the item moves to (or joins) the end, oldest dropped."""
    out = (*(x for x in seen if x != item), item)
    return out[-bound:]


step = st.one_of(
    st.tuples(st.just("see"), st.sampled_from([*ITEMS, "x", "y"]), st.sampled_from(["a", "b"])),
    st.tuples(st.just("grow"), st.integers(0, 4), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step, max_size=40), bound=st.integers(1, 6), start=st.integers(0, 8))
def test_kept_rows_equal_a_fresh_lookup(
    steps: list[tuple[str, object, str]], bound: int, start: int
) -> None:
    catalog = _catalog(start)
    kept = SeenRows(capacity=1)  # two users, room for one: eviction on the way
    seen: dict[str, tuple[str, ...]] = {"a": (), "b": ()}
    for kind, arg, user in steps:
        if kind == "grow":  # items the users saw as unknown may become known
            size = catalog.size
            new = ITEMS[size : size + int(str(arg))]
            if new:
                catalog.append(new)
            continue
        seen[user] = _seen_after(seen[user], str(arg), bound)
        got = kept.rows(catalog, user, seen[user])
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, catalog.rows(list(seen[user])))


def test_only_the_new_items_are_looked_up() -> None:
    """Known answer: after the first call, one new item costs one lookup, a drop none."""
    catalog = _catalog(12)
    kept = SeenRows()
    seen = tuple(ITEMS[:5])
    kept.rows(catalog, "u", seen)
    assert kept.lookups == 5
    kept.rows(catalog, "u", (*seen[1:], "i7"))  # oldest dropped, one new
    assert kept.lookups == 6
    kept.rows(catalog, "u", (*seen[1:], "i7"))  # unchanged
    assert kept.lookups == 6
    kept.rows(catalog, "u", ("i1", "i2", "i4", "i7", "i3"))  # i3 seen again moves: all again
    assert kept.lookups == 6 + 5


def test_a_new_catalog_forgets_the_kept_rows() -> None:
    old, new = _catalog(6), ItemCatalog(ITEMS[::-1], np.zeros((12, 2), np.float32))
    kept = SeenRows()
    seen = ("i1", "i2")
    assert kept.rows(old, "u", seen).tolist() == [1, 2]
    assert kept.rows(new, "u", seen).tolist() == [10, 9]
