"""The online catalog's id -> row map, grown without copying a large dict in a hold.

Pure state (no I/O). A dict copies itself whole when it outgrows its room: one of 87k
ids took 0.9 ms of CPU, one of 1.4M 28 ms (``ItemCatalog.append`` of 256 ids at the
edge, loaded host), and Python gives no way to reserve the room ahead. So the map is
two dicts: ``base``, never written once built, and ``recent``, the ids appended since,
small enough that its own copies cost ~0.1 ms. When ``recent`` reaches
``RECENT_IDS_MAX`` the two are folded into a new base off the scoring lock (``fold``, in
a worker thread) and swapped in under it (``adopt``: a reference, and the few ids
appended meanwhile).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

RECENT_IDS_MAX = 32_768
"""Ids in ``recent`` at which a fold is due. Chunks of 256 keep it under 32,768 + 256
between folds, short of a dict's copy point at 43,690 entries: the largest copy a hold
makes is at 21,845 (~0.1 ms of CPU). A fold is one C call holding the GIL (3.6 ms at
100k ids, 25 ms at 1M, off the lock), so folds are kept as rare as that bound allows."""

ADOPT_LATE_MAX = 4096
"""Ids appended between a fold and its adoption that ``adopt`` re-maps in the hold;
past it the fold is refused (made again)."""


@dataclass(frozen=True)
class FoldedIds:
    """The ids of the first ``rows`` rows as one dict, folded from ``base``."""

    base: dict[str, int]
    rows: int
    ids: dict[str, int]


class IdMap:
    """Rows of item ids; rows are appended in order, ``ids[r]`` is row ``r``'s id."""

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids  # the catalog's own list: only ever appended to
        self._base: dict[str, int] = dict(zip(ids, range(len(ids)), strict=True))
        self._base_rows = len(ids)
        self._recent: dict[str, int] = {}

    def get(self, item_id: str) -> int | None:
        row = self._base.get(item_id)
        return self._recent.get(item_id) if row is None else row

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._base or item_id in self._recent

    def view(self) -> Mapping[str, int]:
        """A read-only view over both dicts."""
        return ChainMap(self._recent, self._base)

    def as_dict(self) -> dict[str, int]:
        return {**self._base, **self._recent}

    def add(self, item_ids: Iterable[str], start: int) -> None:
        """Map ``item_ids``, just appended to the ids from row ``start``, to their rows."""
        self._recent.update(zip(item_ids, range(start, len(self._ids)), strict=True))

    def rows(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Rows of ``item_ids``, -1 for unknown ones."""
        n = len(item_ids)  # map over dict.get: half a generator's cost per id
        rows = np.fromiter(map(self._base.get, item_ids, repeat(-1, n)), np.int64, n)
        if self._recent:
            missed = np.flatnonzero(rows < 0)
            if missed.size:
                get = self._recent.get
                rows[missed] = [get(item_ids[i], -1) for i in missed.tolist()]
        return rows

    @property
    def due(self) -> bool:
        """Whether enough ids came since the last fold to fold them again."""
        return len(self._recent) >= RECENT_IDS_MAX

    def fold(self) -> FoldedIds:
        """Every id so far as one dict, for a worker thread: reads only what a hold
        never changes (the base and the ids of rows already taken)."""
        base, start = self._base, self._base_rows
        n = len(self._ids)
        ids = dict(base)
        ids.update(zip(self._ids[start:n], range(start, n), strict=True))
        return FoldedIds(base, n, ids)

    def adopt(self, folded: FoldedIds) -> bool:
        """Serve ``folded`` as the base; the ids appended since it was made start the
        recent map. False, changing nothing, if the base changed since or more than
        ``ADOPT_LATE_MAX`` ids came."""
        n = len(self._ids)
        if folded.base is not self._base or n - folded.rows > ADOPT_LATE_MAX:
            return False
        self._recent = dict(zip(self._ids[folded.rows : n], range(folded.rows, n), strict=True))
        self._base, self._base_rows = folded.ids, folded.rows
        return True
