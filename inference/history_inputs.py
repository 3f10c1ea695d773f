"""Users' recent histories as arrays: the user encoder's inputs and the fold-in's sums.

Pure functions over history entries (anything with ``item_id``, ``type`` and ``ts``) and
their catalog rows, looked up once by the caller. The entries' columns are read by
C-level ``map`` passes (no Python per entry), then one compiled pass per micro-batch
builds the encoder's inputs or the fold-in's sums; the float operations whose bits
matter (``log1p``, ``exp2``) stay numpy's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from numba import njit

_TYPE = attrgetter("type")
_TS = attrgetter("ts")
_F32_MAX = float(np.finfo(np.float32).max)


class Entry(Protocol):
    """One interaction of a history (``streams.core.state_rules.HistoryEntry`` is one)."""

    @property
    def item_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def ts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class HistoryColumns:
    """Every history entry of a micro-batch, users one after another, oldest first.

    ``rows`` is each entry's catalog row (-1: unknown item), ``value`` what its type maps
    to (an encoder type code or a fold-in weight) and ``ts`` its time; user ``i`` owns
    ``lengths[i]`` consecutive entries.
    """

    rows: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    value: npt.NDArray[Any]
    ts: npt.NDArray[np.int64]


def history_columns(
    histories: Sequence[Sequence[Entry]],
    rows: Sequence[npt.NDArray[np.int64]],
    value_of_type: Mapping[str, float],
    default: float,
    dtype: type[np.generic],
) -> HistoryColumns:
    """The entries' rows, mapped types and times as flat arrays (C-level passes).

    ``rows[i]`` holds the catalog row of each of ``histories[i]``'s entries; a type
    missing from ``value_of_type`` maps to ``default``.
    """
    if len(histories) != len(rows) or any(map(int.__ne__, map(len, histories), map(len, rows))):
        raise ValueError("one row per history entry is needed")
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    total = int(lengths.sum())
    flat = rows[0] if len(rows) == 1 else np.concatenate(rows) if len(rows) else lengths
    flat_rows = np.asarray(flat, np.int64)
    entries = chain.from_iterable(histories)
    types = map(_TYPE, entries)
    value = np.fromiter(map(value_of_type.get, types, repeat(default, total)), dtype, total)
    ts = np.fromiter(map(_TS, chain.from_iterable(histories)), np.int64, total)
    return HistoryColumns(rows=flat_rows, lengths=lengths, value=value, ts=ts)


@njit(cache=True, nogil=True)
def _encoder_slots(
    rows: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    ts: np.ndarray,
    n: int,
    item_vectors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each user's last ``n`` known entries, right-aligned; gaps as float64 seconds."""
    b, d = lengths.shape[0], item_vectors.shape[1]
    vecs = np.empty((b, n, d), np.float32)
    types = np.empty((b, n), np.int64)
    gap_s = np.empty((b, n), np.float64)
    mask = np.empty((b, n), np.float32)
    any_known = np.empty(b, np.bool_)
    _fill_encoder_slots(rows, lengths, codes, ts, item_vectors, vecs, types, gap_s, mask, any_known)
    return vecs, types, gap_s, mask, any_known


@njit(cache=True, nogil=True)
def _fill_encoder_slots(
    rows: np.ndarray,
    lengths: np.ndarray,
    codes: np.ndarray,
    ts: np.ndarray,
    item_vectors: np.ndarray,
    vecs: np.ndarray,
    types: np.ndarray,
    gap_s: np.ndarray,
    mask: np.ndarray,
    any_known: np.ndarray,
) -> None:
    """``_encoder_slots`` into arrays of the caller's, zeroed first (``n``: ``vecs.shape[1]``)."""
    b, n, d = vecs.shape
    vecs[:] = 0.0
    types[:] = 0
    gap_s[:] = 0.0
    mask[:] = 0.0
    any_known[:] = False
    end = 0
    for u in range(b):
        start = end
        end = start + lengths[u]
        slot = n - 1
        newest = np.int64(0)
        e = end - 1
        while e >= start and slot >= 0:
            r = rows[e]
            if r >= 0:
                if slot == n - 1:
                    newest = ts[e]
                    any_known[u] = True
                for j in range(d):
                    vecs[u, slot, j] = item_vectors[r, j]
                types[u, slot] = codes[e]
                gap_s[u, slot] = max(newest - ts[e], 0) / 1000.0
                mask[u, slot] = 1.0
                slot -= 1
            e -= 1


def encoder_inputs(
    columns: HistoryColumns, history_len: int, item_vectors: npt.NDArray[np.float32]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(vecs (B, n, d), types (B, n), gaps (B, n), mask (B, n), any (B,))``.

    Each user's last ``n`` known entries, right-aligned (slot ``n - 1`` is the newest);
    ``gaps`` is ``log1p`` of the seconds before the user's newest known entry (numpy's
    ``log1p`` in float64, then float32); ``any`` says which users have a known entry.
    ``columns.value`` holds the encoder's type codes.
    """
    vecs, types, gap_s, mask, any_known = _encoder_slots(
        columns.rows,
        columns.lengths,
        columns.value.astype(np.int64, copy=False),
        columns.ts,
        int(history_len),
        np.ascontiguousarray(item_vectors, np.float32),
    )
    return vecs, types, np.log1p(gap_s).astype(np.float32), mask, any_known


@dataclass(frozen=True, slots=True)
class EncoderBuffers:
    """Arrays that ``encoder_inputs_into`` rewrites on each call, for a fixed batch size.

    ``vecs``, ``types``, ``gaps`` and ``mask`` are the encoder's inputs (a bound ONNX
    run reads them where they are); ``gap_s`` and ``any_known`` are scratch.
    """

    vecs: npt.NDArray[np.float32]
    types: npt.NDArray[np.int64]
    gaps: npt.NDArray[np.float32]
    mask: npt.NDArray[np.float32]
    gap_s: npt.NDArray[np.float64]
    any_known: npt.NDArray[np.bool_]

    @classmethod
    def around(
        cls,
        vecs: npt.NDArray[np.float32],
        types: npt.NDArray[np.int64],
        gaps: npt.NDArray[np.float32],
        mask: npt.NDArray[np.float32],
    ) -> EncoderBuffers:
        """Buffers over the given input arrays ``(B, n, d)`` and ``(B, n)``, C-ordered."""
        b, n, _ = vecs.shape
        for arr, dtype in ((vecs, np.float32), (types, np.int64), (gaps, np.float32)):
            if arr.dtype != dtype or not arr.flags.c_contiguous:
                raise ValueError(f"encoder buffers must be C-ordered {dtype.__name__}")
        if mask.dtype != np.float32 or not mask.flags.c_contiguous:
            raise ValueError("encoder buffers must be C-ordered float32")
        if not types.shape == gaps.shape == mask.shape == (b, n):
            raise ValueError(f"types, gaps and mask must be {(b, n)}")
        return cls(vecs, types, gaps, mask, np.zeros((b, n)), np.zeros(b, np.bool_))


def encoder_inputs_into(
    columns: HistoryColumns, out: EncoderBuffers, item_vectors: npt.NDArray[np.float32]
) -> npt.NDArray[np.bool_]:
    """``encoder_inputs`` written into ``out`` (the same bits); returns ``any`` (scratch).

    ``out``'s batch size must be the columns' and its ``n`` the history length.
    """
    if out.vecs.shape[0] != columns.lengths.shape[0]:
        raise ValueError("the buffers' batch size differs from the columns'")
    _fill_encoder_slots(
        columns.rows,
        columns.lengths,
        columns.value.astype(np.int64, copy=False),
        columns.ts,
        np.ascontiguousarray(item_vectors, np.float32),
        out.vecs,
        out.types,
        out.gap_s,
        out.mask,
        out.any_known,
    )
    np.log1p(out.gap_s, out=out.gap_s)
    np.copyto(out.gaps, out.gap_s, casting="same_kind")
    return out.any_known


@njit(cache=True, nogil=True)
def _fold_in_ages(rows: np.ndarray, lengths: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per entry, its age ``newest - ts`` in ms, floored at 0 (0 for unknown rows), where
    ``newest`` is the user's newest known entry's time; the decay's ``exp2`` takes these."""
    out = np.zeros(rows.shape[0], np.float64)
    end = 0
    for u in range(lengths.shape[0]):
        start = end
        end = start + lengths[u]
        newest = -np.inf
        for e in range(start, end):
            if rows[e] >= 0 and np.float64(ts[e]) > newest:
                newest = np.float64(ts[e])
        for e in range(start, end):
            if rows[e] >= 0:
                dt = newest - np.float64(ts[e])
                out[e] = dt if dt > 0 else 0.0
    return out


@njit(cache=True, nogil=True)
def _fold_in_sums(
    rows: np.ndarray,
    lengths: np.ndarray,
    weight: np.ndarray,
    factor: np.ndarray,
    item_vectors: np.ndarray,
) -> np.ndarray:
    """Per user, ``Σ float64(w_e) · factor_e · float64(v_e)`` over known entries in order,
    then float32 (NaN as 0, clipped to float32's range)."""
    b, d = lengths.shape[0], item_vectors.shape[1]
    acc = np.zeros(d, np.float64)
    out = np.empty((b, d), np.float32)
    lo, hi = np.float64(-_F32_MAX), np.float64(_F32_MAX)
    end = 0
    for u in range(b):
        start = end
        end = start + lengths[u]
        acc[:] = 0.0
        for e in range(start, end):
            r = rows[e]
            if r >= 0:
                w = np.float64(weight[e]) * factor[e]
                for j in range(d):
                    acc[j] += w * np.float64(item_vectors[r, j])
        for j in range(d):
            x = acc[j]
            out[u, j] = 0.0 if x != x else np.float32(min(max(x, lo), hi))
    return out


def fold_in_vectors(
    columns: HistoryColumns, item_vectors: npt.NDArray[np.float32], half_life_s: float
) -> npt.NDArray[np.float32]:
    """``(B, d)`` decayed, weighted sums of each user's known entries' vectors.

    ``inference.fold_in.fold_in_events`` from empty states, bit for bit: each entry
    decays by numpy's ``exp2(-dt / (1000 · half_life_s))`` to its user's newest known
    entry, ``columns.value`` holds the float32 event weights.
    """
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    dt = _fold_in_ages(columns.rows, columns.lengths, columns.ts)
    factor = np.exp2(-dt / (1000.0 * half_life_s))
    return _fold_in_sums(
        columns.rows,
        columns.lengths,
        columns.value.astype(np.float32, copy=False),
        factor,
        np.ascontiguousarray(item_vectors, np.float32),
    )


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first scoring call needs it."""
    one = np.ones(1, np.int64)
    vecs = np.ones((1, 1), np.float32)
    _encoder_slots(one * 0, one, one, one, 1, vecs)
    columns = HistoryColumns(rows=one * 0, lengths=one, value=one, ts=one)
    z = np.zeros((1, 1), np.float32)
    encoder_inputs_into(columns, EncoderBuffers.around(z[None], one[None] * 0, z, z), vecs)
    _fold_in_sums(one * 0, one, np.ones(1, np.float32), np.ones(1), vecs)
    _fold_in_ages(one * 0, one, one)
