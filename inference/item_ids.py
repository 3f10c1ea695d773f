"""The online catalog's id -> row map, grown without copying a large dict in a hold.

Pure state (no I/O). A dict copies itself whole when it outgrows its room: one of 87k
ids took 0.9 ms of CPU, one of 1.4M 28 ms (``ItemCatalog.append`` of 256 ids at the
edge, loaded host), and Python gives no way to reserve the room ahead. So the map is
a ``base`` dict, a few frozen ``pieces`` and a small ``recent`` dict, the only one
written: ids are appended to it, and when it reaches ``RECENT_IDS_MAX`` it becomes the
newest piece by reference (no copy) and a new one starts.

Pieces are merged off the scoring lock (``fold``, in a worker thread: it reads only
dicts no one writes) and swapped in under it (``adopt``: references only). A piece and
all newer ones merge when those hold ``MERGE_RATIO`` times its ids or more, so a merged
id's piece grows 4x each time it is copied, and the pieces go into the base only when
they add up to half the base or more. A dict copy holds the GIL whatever thread makes
it (a fold of 1M + 32k ids held it 29-39 ms), so the base, the costly one, is copied
once per 1.5x growth, and an id in the pieces about log4(base / RECENT_IDS_MAX) times
before: growing 1M -> 2M ids by 256 copies 2.3M entries in 7 folds and leaves at most
6 pieces, where folding the base every 32,768 ids copied 45M in 30 folds.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

RECENT_IDS_MAX = 32_768
"""Ids in ``recent`` at which it is frozen into a piece. Chunks of 256 keep it under
32,768 + 256, short of a dict's copy point at 43,690 entries: the largest copy a hold
makes is at 21,845 (~0.1 ms of CPU)."""

MERGE_RATIO = 3
"""A piece merges with the newer ones when they hold this many times its ids: 1 copies
3.8 entries per id grown at 1M ids, 3 copies 2.3 with up to 6 pieces to look in."""


@dataclass(frozen=True)
class FoldedIds:
    """``parts`` (the base first when ``into_base``, else a run of pieces, oldest
    first) merged into ``ids``."""

    parts: tuple[dict[str, int], ...]
    into_base: bool
    ids: dict[str, int]


def _merged(parts: Sequence[dict[str, int]]) -> dict[str, int]:
    """One dict of ``parts``, copying the largest and inserting the rest."""
    if len(parts) == 1:
        return parts[0]  # nothing to merge: served as it is
    largest = max(range(len(parts)), key=lambda i: len(parts[i]))
    ids = dict(parts[largest])
    for i, part in enumerate(parts):
        if i != largest:
            ids.update(part)
    return ids


class IdMap:
    """Rows of item ids; rows are appended in order, ``ids[r]`` is row ``r``'s id."""

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids  # the catalog's own list: only ever appended to
        self._base: dict[str, int] = dict(zip(ids, range(len(ids)), strict=True))
        self._pieces: tuple[dict[str, int], ...] = ()  # frozen, oldest first
        self._recent: dict[str, int] = {}

    def _all(self) -> tuple[dict[str, int], ...]:
        """Every dict, the likeliest first: base, pieces newest first, recent."""
        return (self._base, *reversed(self._pieces), self._recent)

    def get(self, item_id: str) -> int | None:
        for ids in self._all():
            row = ids.get(item_id)
            if row is not None:
                return row
        return None

    def __contains__(self, item_id: str) -> bool:
        return any(item_id in ids for ids in self._all())

    def view(self) -> Mapping[str, int]:
        """A read-only view over every dict."""
        return ChainMap(*self._all())

    def as_dict(self) -> dict[str, int]:
        return {k: v for ids in (self._base, *self._pieces, self._recent) for k, v in ids.items()}

    def add(self, item_ids: Iterable[str], start: int) -> None:
        """Map ``item_ids``, just appended to the ids from row ``start``, to their rows."""
        self._recent.update(zip(item_ids, range(start, len(self._ids)), strict=True))
        if len(self._recent) >= RECENT_IDS_MAX:  # frozen by reference, not copied
            self._pieces, self._recent = (*self._pieces, self._recent), {}

    def rows(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Rows of ``item_ids``, -1 for unknown ones: the base for the whole batch, the
        other dicts only for the ids it missed (an id is in one dict at most)."""
        n = len(item_ids)  # map over dict.get: half a generator's cost per id
        rows = np.fromiter(map(self._base.get, item_ids, repeat(-1, n)), np.int64, n)
        others = [ids for ids in self._all()[1:] if ids]
        if not others:
            return rows
        missed = np.flatnonzero(rows < 0)
        if missed.size:
            keys = list(map(item_ids.__getitem__, missed.tolist()))
            m = len(keys)
            got = np.fromiter(map(others[0].get, keys, repeat(-1, m)), np.int64, m)
            for ids in others[1:]:
                more = np.fromiter(map(ids.get, keys, repeat(-1, m)), np.int64, m)
                np.maximum(got, more, out=got)
            rows[missed] = got
        return rows

    def _due_parts(self) -> tuple[tuple[dict[str, int], ...], bool] | None:
        """The dicts a fold merges now and whether into the base, None if none due."""
        pieces = self._pieces
        if pieces and sum(map(len, pieces)) * 2 >= len(self._base):
            return (self._base, *pieces), True
        newer = 0  # ids in the pieces newer than pieces[i]
        for i in range(len(pieces) - 1, -1, -1):
            if newer and newer >= MERGE_RATIO * len(pieces[i]):
                return pieces[i:], False
            newer += len(pieces[i])
        return None

    @property
    def due(self) -> bool:
        """Whether pieces are due a merge (with each other or into the base)."""
        return self._due_parts() is not None

    def fold(self) -> FoldedIds:
        """The merge due, for a worker thread: reads only dicts that no one writes. With
        none due, every piece into the base (``adopt(fold())`` then leaves at most the
        base and ``recent``)."""
        due = self._due_parts()
        parts, into_base = due if due is not None else ((self._base, *self._pieces), True)
        return FoldedIds(parts, into_base, _merged(parts))

    def adopt(self, folded: FoldedIds) -> bool:
        """Serve ``folded`` in place of its parts (references only). False, changing
        nothing, if they are no longer all served as they were when it was made."""
        parts, pieces = folded.parts, self._pieces
        if folded.into_base:
            n = len(parts) - 1
            if parts[0] is not self._base or not _same(parts[1:], pieces[:n]):
                return False
            self._base, self._pieces = folded.ids, pieces[n:]
            return True
        for at in range(len(pieces) - len(parts) + 1):  # pieces only come after
            if _same(parts, pieces[at : at + len(parts)]):
                self._pieces = (*pieces[:at], folded.ids, *pieces[at + len(parts) :])
                return True
        return False


def _same(a: Sequence[dict[str, int]], b: Sequence[dict[str, int]]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
