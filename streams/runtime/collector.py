"""The garbage collector kept off what a served bundle holds, and out of the batches.

What a bundle and its catalog hold (100k items: ~50-75k tracked objects, the ANN index's
and the encoder's buffers among them) lives as long as the bundle, yet it is loaded
after ``worker.tune_collector`` froze start-up, so every older pass walked it again: in
the stream bench's worker (``bench/gc_pauses.py``, 100k items, loaded host) the
middle-generation passes while serving took 37-67 ms of CPU each, over those objects.
Once a bundle is served and the catalog's snapshot read (``served_with_catalog``), the
collector is settled: garbage collected, the survivors frozen.

Between batches, the collection that is due runs in the gap (``collect_in_gap``, called
when the events lane finds nothing waiting), so that a young pass triggered by an
allocation seldom lands inside a batch.

A later bundle's settle does not unfreeze: a replaced bundle and what only it holds
(``LoadedBundle``, its ORT sessions, the bound encoder, the catalog and ANN index) are
freed by reference counting alone once the scorer lets go of them
(``tests/streams/test_collector.py`` checks it on a trained bundle with the collector
off), so the frozen heap needs no pass. Unfreezing would put start-up's heap (~350k
objects in the worker) back under a full pass run on the event loop at every retrain.
The settle's pass walks only what was made since the last one. What it freezes that
dies later without a cycle is freed as usual; cycles among objects alive at a settle
(an in-flight batch's futures, a traceback) are kept: bounded by what is alive at the
moment of a swap.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["GAP_YOUNG_MIN", "collect_in_gap", "served_with_catalog", "settle", "settle_after_swaps"]

log = logging.getLogger("freshet.worker")

SETTLE_EVERY_S = 2.0
"""How often the served bundle is looked at (one attribute read)."""


GAP_YOUNG_MIN = 2_000
"""Net allocations of containers past which a gap between batches runs the collection
that is due (the threshold, ``worker.YOUNG_COLLECTION_EVERY``, is the backstop when no
gap comes: a backlog)."""


def collect_in_gap(least: int = GAP_YOUNG_MIN) -> int:
    """Run the collection that is due now that the loop waits for records (no batch in
    progress); returns its generation, -1 if none ran (fewer than ``least`` net
    allocations since the last pass, or the collector is off).

    A young pass costs what the young generation holds: in the stream bench's worker
    (``bench/gc_pauses.py --young-census``) the users' new states (``UserState``, its
    tuples, ``HistoryEntry``) and the records in flight, 3-5k tuples with 24-53k
    referents, 9-18 ms of CPU at the 10,000 net allocations of the threshold (a
    long-lived user's ``seen`` and ``recent_event_ids`` tuples, up to 500 and 256
    strings, are walked three times before the pass untracks them). Triggered by an
    allocation, the pass lands inside a batch and delays every event of it and of the
    queue; run here, between batches and at a fifth of that size, it delays only what
    arrives during it (``bench/gc_gap_bench.py``).

    The generation is chosen as CPython chooses it at the threshold (the oldest whose
    count passed its threshold), without its guard on full passes (a full pass waits
    until a quarter of the old generation is new): with passes here the threshold is
    seldom reached, so this is where the middle and old generations are collected.
    ``worker.tune_collector`` sets the middle generation's threshold so that middle and
    full passes come as often, counted in allocations, as at the young threshold.
    """
    counts = gc.get_count()
    if counts[0] < least or not gc.isenabled():
        return -1
    thresholds = gc.get_threshold()
    generation = 2 if counts[2] > thresholds[2] else 1 if counts[1] > thresholds[1] else 0
    gc.collect(generation)
    return generation


def settle() -> tuple[float, int]:
    """Collect what is not frozen, then freeze what is left. Returns the seconds taken
    and how many unreachable objects the pass found."""
    start = time.perf_counter()
    found = gc.collect()
    gc.freeze()
    return time.perf_counter() - start, found


def served_with_catalog(live: Any) -> Any | None:
    """The bundle ``live`` (a ``LiveRecommender``) scores with, once its catalog's
    snapshot has been read as well (the cursor left ``"0"``); None until then.

    The first catalog read comes after the first bundle is served: settled on the bundle
    alone, the scorer's ``records`` (a dict of every item's ``CatalogRecord``, 100k of
    them: an empty dict is untracked, so the settle froze nothing of it) and the
    catalog's structures were built after the freeze, and passed through the young and
    middle generations into every later full pass (``bench/gc_pauses.py --name-census
    --thaw`` named it: the 100,000-entry dict of session 16, ``LiveScorer.records``).
    """
    scorer = live.scorer
    if not scorer.ready or live.catalog_cursor == "0":
        return None
    return scorer.bundle


async def settle_after_swaps(
    served: Callable[[], Any | None], every_s: float = SETTLE_EVERY_S
) -> None:
    """Settle the collector each time ``served()`` (the bundle being scored with, None
    while none is) names another bundle; runs until cancelled."""
    settled: Callable[[], Any | None] = type(None)  # then a weak reference: never keeps it
    while True:
        await asyncio.sleep(every_s)
        bundle = served()
        if bundle is None or bundle is settled():
            continue
        settled = weakref.ref(bundle)
        del bundle
        frozen = gc.get_freeze_count()
        took, found = settle()
        log.info(
            "collector settled on a new bundle in %.0f ms: %d unreachable collected, "
            "%d objects frozen (%d in all; cycles among them are kept)",
            1e3 * took,
            found,
            gc.get_freeze_count() - frozen,
            gc.get_freeze_count(),
        )
