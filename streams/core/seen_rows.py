"""The catalog rows of each user's seen items, kept between scoring calls.

A user's seen items (``UserState.seen``, oldest first, at most ``seen_max``) change by
a few items at the newest end between two calls: the oldest drop out, new ones come
last. Looking up all of them again costs a dict lookup per item (about 30 us for 500
seen items); here the rows of the part both tuples share are kept, found by comparing
the tuples (C-level, identity first), and only the new items are looked up. Any other
change (an item seen again moves to the end) looks every item up again.

Pure state over an ``ItemCatalog``, no I/O. Rows never move, so kept rows stay right
while the catalog grows, except an unknown item's -1, which a grown catalog may know:
a user's rows holding one are looked up again once the catalog has grown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from inference.item_catalog import ItemCatalog

IntArray = npt.NDArray[np.int64]

USERS_KEPT = 10_000  # users whose rows are kept (least recently scored dropped first)


class SeenRows:
    """Per user, ``catalog.rows(seen)`` of the last call, updated by what changed.

    Args:
        capacity: Users kept; about 4 KB each at 500 seen items.
    """

    def __init__(self, capacity: int = USERS_KEPT) -> None:
        self.capacity = capacity
        # user -> (seen items, their rows, catalog size at lookup, any row unknown)
        self._held: dict[str, tuple[tuple[str, ...], IntArray, int, bool]] = {}
        self._catalog: ItemCatalog | None = None  # the catalog the kept rows index
        self.lookups = 0  # items looked up in the catalog (a test and a bench read it)

    def clear(self) -> None:
        """Forget every user (a new catalog: rows are numbered afresh)."""
        self._held.clear()
        self._catalog = None

    def rows(self, catalog: ItemCatalog, user_id: str, seen: tuple[str, ...]) -> IntArray:
        """``catalog.rows(seen)``: the same array, from the kept rows where they hold.

        The caller must not write into the result (it is kept for the next call).
        """
        if catalog is not self._catalog:
            self.clear()
            self._catalog = catalog
        held = self._held.pop(user_id, None)
        out = None
        if held is not None:
            old, old_rows, size, unknown = held
            if not (unknown and size != catalog.size):
                out = self._reuse(catalog, old, old_rows, seen)
        if out is None:
            out = self._look_up(catalog, seen)
        self._held[user_id] = (seen, out, catalog.size, bool(out.size) and out.min() < 0)
        if len(self._held) > self.capacity:
            del self._held[next(iter(self._held))]
        return out

    def _reuse(
        self, catalog: ItemCatalog, old: tuple[str, ...], old_rows: IntArray, seen: tuple[str, ...]
    ) -> IntArray | None:
        """``seen``'s rows from ``old``'s when ``seen`` starts with a suffix of ``old``
        (the items dropped out at the oldest end), then items looked up; else None."""
        if seen is old or seen == old:
            return old_rows
        if not seen or not old:
            return None
        try:
            start = old.index(seen[0])  # the oldest item still seen
        except ValueError:
            return None
        kept = len(old) - start
        if kept > len(seen) or seen[:kept] != old[start:]:
            return None
        return np.concatenate([old_rows[start:], self._look_up(catalog, seen[kept:])])

    def _look_up(self, catalog: ItemCatalog, items: Sequence[str]) -> IntArray:
        self.lookups += len(items)
        return catalog.rows(items)
