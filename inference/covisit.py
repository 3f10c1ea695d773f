"""Streaming "what follows what": a bounded item-to-item co-visitation table.

Each item row keeps its ``width`` strongest followers (items a user touched within
``window`` steps after it), maintained with the Space-Saving rule so memory stays
``O(items × width)`` whatever the stream: a new follower takes the weakest slot and
inherits its weight as an error bound. Scores use the guaranteed part (weight − error),
normalised like cosine by each item's occurrence count, so popular items do not crowd
the list. With a half-life, newer pairs weigh more (forward decay: a pair at time ``t``
adds ``w * 2 ** ((t - ref) / half_life)``, and the table is rescaled before the factors
grow large); scores only compare items, so the common scale never matters. Rows are
catalog row numbers. Batch-first, no I/O; the per-call loops are compiled
(``inference.covisit_kernels``).

Follower storage is allocated per row that has followers, not per catalog row: a row
takes a storage slot the first time it gains a follower, so a table over a million
catalog rows costs memory for the rows the stream has touched (at width 200, 3.2 GB
for every row of 1M, which a restart used to allocate and write before serving).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from inference.covisit_kernels import (
    add_pairs,
    pairs_of_visits,
    right_aligned,
    unclaimed,
)
from inference.covisit_top import followed_occurrences, follower_top

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

BACKWARD = 0.5
"""Default weight of a reverse pair (see ``follow_pairs``)."""
FLATNESS = 0.5
"""Default flatness of the distance weights (see ``follow_pairs``)."""
DAMPING = 0.35
"""Default exponent of a candidate's occurrence in the score's denominator."""
RESCALE_AT = 2.0**40
"""Forward decay factor at which the table is rescaled to the newest time."""


def follow_pairs(
    sequences: Sequence[npt.ArrayLike],
    new: Sequence[int],
    window: int,
    *,
    backward: float = BACKWARD,
    flatness: float = FLATNESS,
) -> tuple[IntArray, IntArray, FloatArray]:
    """Pairs (earlier item, later item) ending in the last ``new`` entries.

    Repeats in a row (a view, then a click on the same item) count as one step, so the
    window spans distinct visits rather than funnel steps.

    Args:
        sequences: Per user, item rows oldest first (-1: unknown item, never paired).
        new: Per user, how many trailing entries are new since the last call.
        window: A later visit pairs with up to this many visits before it.
        backward: Weight of the reverse pair (later -> earlier) relative to the forward
            one; 0 keeps the table purely sequential, 1 makes it plain co-occurrence.
        flatness: Distance weight ``1 / distance ** (1 - flatness)``: 0 favours the
            next visit strongly, 1 weighs every visit in the window alike.

    Returns:
        ``(src, dst, weight)``: one pair per (new visit, earlier visit within the
        window), forward first, then the reverse pairs when ``backward`` > 0; an item
        never pairs with itself.
    """
    flat, lengths = _concatenated(sequences)
    if window < 1 or not flat.size:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0, np.float32)
    n_new = np.minimum(np.asarray(new, np.int64).reshape(-1), lengths)
    # Per user, repeats in a row collapse into visits; each new visit pairs with the
    # ``window`` visits before it (a compiled loop: ``covisit_kernels``).
    return pairs_of_visits(
        flat,
        lengths,
        n_new,
        _distance_weights(window, flatness),
        backward > 0,
        np.float32(backward),
    )


@lru_cache(maxsize=16)
def _distance_weights(window: int, flatness: float) -> FloatArray:
    """``1 / distance ** (1 - flatness)`` for distances ``1..window``, shared: not to be
    written (a read-only flag would make the kernel compile a second signature)."""
    return (np.arange(1, window + 1) ** (flatness - 1.0)).astype(np.float32)


def recent_rows(
    sequences: Sequence[npt.ArrayLike], n: int, decay: float
) -> tuple[IntArray, FloatArray]:
    """The last ``n`` entries of each sequence, right-aligned, with weights ``decay**age``.

    Returns ``(rows (B, n), weights (B, n))``; padding is -1 with weight 0.
    """
    flat, lengths = _concatenated(sequences)
    return right_aligned(flat, lengths, n, _age_weights(n, decay))


def _concatenated(sequences: Sequence[npt.ArrayLike]) -> tuple[IntArray, IntArray]:
    """The sequences as one contiguous int64 array (one sequence: not copied) and their
    lengths."""
    arrays = [np.asarray(q, dtype=np.int64).reshape(-1) for q in sequences]
    lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0]), lengths
    return (np.concatenate(arrays) if arrays else np.zeros(0, np.int64)), lengths


@lru_cache(maxsize=16)
def _age_weights(n: int, decay: float) -> FloatArray:
    """``decay ** age`` for ages ``n - 1 .. 0``, numpy's float32 power (not the kernel's:
    the weights stay these bits); shared, not to be written."""
    return (np.float32(decay) ** np.arange(n - 1, -1, -1, dtype=np.float32)).astype(np.float32)


@dataclass
class CovisitTable:
    """Per item row, its ``width`` strongest followers and their weights.

    Attributes:
        width: Followers kept per item.
        slot: ``(n,)`` storage slot of each row; 0, a slot that stays empty, for rows
            without followers (``followers`` reads rows through it).
        nbr: ``(slots, width)`` follower rows, -1 for an empty entry.
        weight: ``(slots, width)`` accumulated pair weights (Space-Saving estimates).
        error: ``(slots, width)`` weight inherited on eviction (overestimate bound).
        occ: ``(n,)`` pair weight each item took part in (normaliser), by row.
        damping: Exponent of a candidate's occurrence in the normaliser: 0.5 is the
            cosine, lower lets popular followers through, 0 ranks by raw weight.
        half_life_ms: Event time over which a pair's weight halves against newer
            pairs; 0 keeps every pair at full weight.
        ref_ms: Event time at which an added pair weighs its plain weight.
    """

    width: int = 32
    damping: float = DAMPING
    half_life_ms: float = 0.0
    ref_ms: float | None = None
    slot: IntArray = field(init=False)
    nbr: IntArray = field(init=False)
    weight: FloatArray = field(init=False)
    error: FloatArray = field(init=False)
    occ: FloatArray = field(init=False)
    used: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, not {self.width}")
        self.slot = np.zeros(0, np.int64)
        self.nbr = np.full((1, self.width), -1, np.int64)  # slot 0: always empty
        self.weight = np.zeros((1, self.width), np.float32)
        self.error = np.zeros((1, self.width), np.float32)
        self.occ = np.zeros(0, np.float32)

    @property
    def size(self) -> int:
        """Rows the table covers (row numbers ``0..size-1``)."""
        return int(self.slot.shape[0])

    @property
    def rows_held(self) -> int:
        """Rows with follower storage."""
        return self.used - 1

    def grow(self, n: int) -> None:
        """Cover rows ``0..n-1`` (capacity doubles); 12 bytes a row, no follower storage."""
        old = self.size
        if n <= old:
            return
        cap = max(n, 2 * old, 64)
        slot = np.full(cap, 0, np.int64)  # written out: see ``reserve``
        occ = np.full(cap, 0.0, np.float32)
        slot[:old], occ[:old] = self.slot, self.occ
        self.slot, self.occ = slot, occ

    def reserve(self, slots: int) -> None:
        """Make follower storage for ``slots`` rows in all (capacity doubles).

        Written out, not np.zeros: calloc'd pages stay unmapped until first written, so
        each row would pay a page fault (huge pages: ms each) inside a scoring call.
        A bundle swap reserves off the scoring lock (``remap``); rows past that reserve
        double it inside ``add``, a copy of what is held, once per doubling.
        """
        old = int(self.nbr.shape[0])
        if slots + 1 <= old:
            return
        cap = max(slots + 1, 2 * old, 64)
        nbr = np.full((cap, self.width), -1, np.int64)
        weight = np.full((cap, self.width), 0.0, np.float32)
        error = np.full((cap, self.width), 0.0, np.float32)
        nbr[:old], weight[:old], error[:old] = self.nbr, self.weight, self.error
        self.nbr, self.weight, self.error = nbr, weight, error

    def claim(self, rows: npt.ArrayLike) -> IntArray:
        """The storage slots of ``rows`` (covered by ``grow``), given to those without."""
        r = np.ascontiguousarray(rows, np.int64).reshape(-1)
        self._claim(r)
        return self.slot[r]

    def _claim(self, r: IntArray) -> None:
        """``claim`` without reading the slots back (``add`` needs none)."""
        new = unclaimed(self.slot, r)  # compiled: np.unique(r[slot[r] == 0])
        if new.size:
            self.reserve(self.rows_held + new.size)
            self.slot[new] = np.arange(self.used, self.used + new.size)
            self.used += int(new.size)

    def followers(self, rows: npt.ArrayLike) -> tuple[IntArray, FloatArray, FloatArray]:
        """``(nbr, weight, error)`` of each of ``rows``, ``(len(rows), width)`` each;
        a row without followers (or past ``size``) reads -1 / 0 / 0."""
        r = np.asarray(rows, np.int64).reshape(-1)
        inside = (r >= 0) & (r < self.size)
        s = np.zeros(r.size, np.int64)
        s[inside] = self.slot[r[inside]]
        return self.nbr[s], self.weight[s], self.error[s]

    def decayed(self, weight: npt.ArrayLike, now_ms: float | None) -> FloatArray:
        """``weight`` as pairs seen at ``now_ms`` weigh, rescaling the table if due."""
        w = np.asarray(weight, np.float32).reshape(-1)
        if self.half_life_ms <= 0 or now_ms is None:
            return w
        if self.ref_ms is None:
            self.ref_ms = float(now_ms)
        factor = 2.0 ** ((float(now_ms) - self.ref_ms) / self.half_life_ms)
        if factor > RESCALE_AT:
            scale = np.float32(1.0 / factor)
            self.weight *= scale
            self.error *= scale
            self.occ *= scale
            self.ref_ms, factor = float(now_ms), 1.0
        return (w * np.float32(factor)).astype(np.float32, copy=False)

    def add(
        self,
        src: npt.ArrayLike,
        dst: npt.ArrayLike,
        weight: npt.ArrayLike,
        now_ms: float | None = None,
    ) -> None:
        """Add a batch of directed pair weights ``src -> dst`` seen at ``now_ms``.

        ``now_ms`` matters only with a half-life (then pairs without it count as at
        the reference time).
        """
        s = np.ascontiguousarray(src, np.int64).reshape(-1)
        d = np.ascontiguousarray(dst, np.int64).reshape(-1)
        w = np.ascontiguousarray(self.decayed(weight, now_ms), np.float32)
        if s.size == 0:
            return
        self.grow(int(max(s.max(), d.max())) + 1)
        self._claim(s)  # storage for every source row before the kernel writes
        add_pairs(
            self.slot, self.nbr, self.weight, self.error, self.occ, s, d, w, np.int64(self.size)
        )

    def remap(self, new_row: npt.ArrayLike, n_new: int) -> CovisitTable:
        """The table under a new row numbering (``new_row[old]``, -1: item gone)."""
        m = np.asarray(new_row, np.int64).reshape(-1)
        out = CovisitTable(self.width, self.damping, self.half_life_ms, self.ref_ms)
        out.grow(n_new)
        old = np.flatnonzero(m[: self.size] >= 0)
        out.occ[m[old]] = self.occ[old]
        held = old[self.slot[old] > 0]
        # Room for twice the rows held, so the rows a stream adds next do not double
        # the storage inside scoring calls at once.
        out.reserve(2 * held.size)
        if held.size == 0:
            return out
        src = self.slot[held]
        to = out.claim(m[held])
        nbr = self.nbr[src]
        mapped = np.where(nbr >= 0, m[np.clip(nbr, 0, m.size - 1)], -1)
        mapped = np.where(nbr < m.size, mapped, -1)
        out.nbr[to] = mapped
        out.weight[to] = np.where(mapped >= 0, self.weight[src], 0.0)
        out.error[to] = np.where(mapped >= 0, self.error[src], 0.0)
        return out

    def score(
        self, history: npt.ArrayLike, history_weight: npt.ArrayLike, k: int
    ) -> tuple[IntArray, FloatArray]:
        """Each user's ``k`` best followers of their history, and their scores.

        Args:
            history: ``(B, H)`` item rows, -1 padded.
            history_weight: ``(B, H)`` weight of each history item (e.g. recency).
            k: Candidates wanted per user.

        Returns:
            ``(rows (B, k), scores (B, k))``, best first, -1 / 0 padded. A row's score is
            ``Σ_h w_h · (weight − error)(h → row) / (sqrt(occ_h) · occ_row ** damping)``.
        """
        return self.score_each(history, history_weight, k, (self.damping,))[0]

    def score_each(
        self,
        history: npt.ArrayLike,
        history_weight: npt.ArrayLike,
        k: int,
        dampings: Sequence[float],
    ) -> list[tuple[IntArray, FloatArray]]:
        """``score`` under each of ``dampings`` (the table's own is not used), in one pass.

        The followers are read and grouped once for all of them; each damping's rows and
        scores are what ``score`` gives with the table's damping set to it (the top-``k``
        selection works row by row, so stacking the dampings' rows changes nothing).
        """
        h = np.asarray(history, np.int64)
        hw = np.asarray(history_weight, np.float32)
        b, n_d = h.shape[0], len(dampings)
        if not (b and k and self.size and h.size and n_d):
            rows = np.full((n_d * b, k), -1, np.int64)
            scores = np.zeros((n_d * b, k), np.float32)
            return [(rows[d * b : (d + 1) * b], scores[d * b : (d + 1) * b]) for d in range(n_d)]
        # Distinct sums have one order: compiled, summed and ranked in one call
        # (``inference.covisit_top``). Rows with tied sums keep numpy's argpartition tie
        # order (it works row by row, so on those rows alone, handed back with their sums).
        h, hw, damped = self._score_inputs(h, hw, dampings)
        rows, scores, tied, item, total = follower_top(
            self.slot, self.nbr, self.weight, self.error, self.occ, h, hw, damped, k
        )
        if tied.size:
            kk = min(k, total.shape[1])
            top = np.argpartition(-total, kk - 1, axis=1)[:, :kk]
            order = np.argsort(-np.take_along_axis(total, top, 1), 1)
            top = np.take_along_axis(top, order, 1)
            best = np.take_along_axis(total, top, axis=1)
            found = np.isfinite(best) & (best > 0)
            rows[tied, :kk] = np.where(found, np.take_along_axis(item, top, axis=1), -1)
            scores[tied, :kk] = np.where(found, best, 0.0)
        return [(rows[d * b : (d + 1) * b], scores[d * b : (d + 1) * b]) for d in range(n_d)]

    def _score_inputs(
        self,
        history: npt.ArrayLike,
        history_weight: npt.ArrayLike,
        dampings: Sequence[float] | None,
    ) -> tuple[IntArray, FloatArray, FloatArray]:
        """The compiled sums' history, its weights and the followers' damped
        occurrences ``(D, B, H, W)``; the damping's power is numpy's, per damping over
        the same array as a single damping's."""
        h = np.ascontiguousarray(history, np.int64)
        occ = followed_occurrences(self.slot, self.nbr, self.occ, h)  # floored at 1e-12
        each = (self.damping,) if dampings is None else dampings
        # np.stack's rows, written into one array (its Python helpers cost cold per call)
        damped = np.empty((len(each), *occ.shape), occ.dtype)
        for i, d in enumerate(each):
            damped[i] = occ ** np.float32(d)
        return h, np.ascontiguousarray(history_weight, np.float32), damped
