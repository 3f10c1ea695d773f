"""Users' recent histories as arrays: the user encoder's inputs and the fold-in's events.

Pure functions over history entries (anything with ``item_id``, ``type`` and ``ts``) and
the catalog's id-to-row map; one flat pass over the whole micro-batch, then numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Entry(Protocol):
    """One interaction of a history (``streams.state_rules.HistoryEntry`` is one)."""

    @property
    def item_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def ts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class FlatHistory:
    """History entries on known items as aligned arrays, ``user`` ascending, oldest first.

    ``rank_from_end`` is 0 for each user's newest entry, 1 for the one before, ...
    """

    user: npt.NDArray[np.int64]
    row: npt.NDArray[np.int64]
    type: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    rank_from_end: npt.NDArray[np.int64]


def flatten_histories(
    histories: Iterable[Sequence[Entry]],
    row_of: Callable[[str], int | None],
    type_code: Callable[[str], int],
) -> FlatHistory:
    """Each user's entries whose item ``row_of`` knows, flattened in one pass."""
    user: list[int] = []
    rows: list[int] = []
    codes: list[int] = []
    ts: list[int] = []
    for i, history in enumerate(histories):
        for h in history:
            row = row_of(h.item_id)
            if row is not None:
                user.append(i)
                rows.append(row)
                codes.append(type_code(h.type))
                ts.append(h.ts)
    u = np.asarray(user, np.int64)
    ends = np.searchsorted(u, u, side="right") if u.size else u
    return FlatHistory(
        user=u,
        row=np.asarray(rows, np.int64),
        type=np.asarray(codes, np.int64),
        ts=np.asarray(ts, np.int64),
        rank_from_end=ends - np.arange(u.size) - 1,
    )


def encoder_inputs(
    flat: FlatHistory, users: int, history_len: int, item_vectors: npt.NDArray[np.float32]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(vecs (B, n, d), types (B, n), gaps (B, n), mask (B, n))`` for the user encoder.

    Each user's last ``n`` known entries, right-aligned (slot ``n - 1`` is the newest);
    ``gaps`` is ``log1p`` of the seconds before the user's newest known entry.
    """
    n, d = history_len, item_vectors.shape[1]
    vecs = np.zeros((users, n, d), np.float32)
    types = np.zeros((users, n), np.int64)
    gaps = np.zeros((users, n), np.float32)
    mask = np.zeros((users, n), np.float32)
    keep = flat.rank_from_end < n
    user, slot = flat.user[keep], n - 1 - flat.rank_from_end[keep]
    newest = flat.rank_from_end == 0
    newest_ts = np.zeros(users, np.int64)
    newest_ts[flat.user[newest]] = flat.ts[newest]
    vecs[user, slot] = item_vectors[flat.row[keep]]
    types[user, slot] = flat.type[keep]
    gaps[user, slot] = np.log1p(np.maximum(newest_ts[user] - flat.ts[keep], 0) / 1000.0)
    mask[user, slot] = 1.0
    return vecs, types, gaps, mask
