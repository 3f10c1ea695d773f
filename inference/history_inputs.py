"""Users' recent histories as arrays: the user encoder's inputs and the fold-in's events.

Pure functions over history entries (anything with ``item_id``, ``type`` and ``ts``) and
their catalog rows, looked up once by the caller; one flat pass over the whole
micro-batch, then numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Entry(Protocol):
    """One interaction of a history (``streams.core.state_rules.HistoryEntry`` is one)."""

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
    histories: Sequence[Sequence[Entry]],
    rows: Sequence[npt.NDArray[np.int64]],
    type_code: Callable[[str], int],
) -> FlatHistory:
    """Each user's entries on known items (``rows[i][j] >= 0``), flattened.

    ``rows[i]`` holds the catalog row of each of ``histories[i]``'s entries, -1 for an
    unknown item: the caller looks the rows up once and shares them.
    """
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    if len(histories) != len(rows) or any(
        len(h) != n for h, n in zip(histories, lengths.tolist(), strict=True)
    ):
        raise ValueError("one row per history entry is needed")
    flat_rows = np.concatenate(rows) if len(rows) else np.zeros(0, np.int64)
    known = flat_rows >= 0
    u = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)[known]
    codes = np.fromiter((type_code(h.type) for hist in histories for h in hist), np.int64)
    ts = np.fromiter((h.ts for hist in histories for h in hist), np.int64)
    ends = np.searchsorted(u, u, side="right") if u.size else u
    return FlatHistory(
        user=u,
        row=flat_rows[known].astype(np.int64),
        type=codes[known],
        ts=ts[known],
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
