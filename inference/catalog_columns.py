"""The online catalog's column storage: zeroed columns on plain pages, and growth.

Pure numpy, no I/O. ``ItemCatalog`` keeps its per-row columns here: allocated zeroed
(large ones on an anonymous mapping), and grown by copying into wider ones, which a
worker does off the scoring lock (``ItemCatalog.grown`` and ``adopt``).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SMALL_PAGES_FROM = 1 << 22  # bytes: numpy advises huge pages from 4 MiB
COLUMNS = ("_vectors", "_unit", "_category", "_popularity", "_first_seen", "_removed")
FILLS = {"_category": -1, "_first_seen": np.nan}  # what a new row holds (else 0)
GROWTH_REDO_MAX = 4096
"""Rows written during a growth's copy that ``adopt`` copies again; past it, adopting
refuses (prepare it again), so its cost under the scoring lock is bounded."""


@dataclass(frozen=True)
class Growth:
    """A catalog's columns copied with more room (``ItemCatalog.grown``), and the rows
    written to the catalog since the copy began (``journal``), which ``adopt`` copies
    again."""

    capacity: int
    columns: dict[str, npt.NDArray[Any]]
    journal: list[tuple[tuple[str, ...], npt.NDArray[np.int64]]]


def zeroed(shape: tuple[int, ...], dtype: Any) -> npt.NDArray[Any]:
    """A zeroed array; a large one on an anonymous mapping the kernel fills on first touch.

    numpy advises transparent huge pages for large arrays. In a fresh process on a host
    whose memory is fragmented (other processes' page cache), the kernel then compacts
    memory at the first touch of each 2 MiB: a restarting worker's 1M-item catalog
    paid 2.9-4.7 s of CPU filling its vector columns that way, against 1.2-1.4 s on 4 KiB
    pages (alternated, same host, load 8). An anonymous mapping is never so advised, and
    rows beyond those written (the spare capacity) cost nothing.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes < SMALL_PAGES_FROM:
        return np.zeros(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape)


def widened(old: npt.NDArray[Any], cap: int, name: str) -> npt.NDArray[Any]:
    """``old`` copied into a column of ``cap`` rows, the rows past it as new rows hold.

    ``old`` may be longer (a popularity column prepared with a growth's room,
    ``ItemCatalog.popularity_column``): its rows past ``cap`` are unused, so not kept.
    """
    new = zeroed((cap, *old.shape[1:]), old.dtype)
    keep = min(old.shape[0], cap)
    fill = FILLS.get(name, 0)
    if fill:
        new[keep:] = fill
    new[:keep] = old[:keep]
    return new
