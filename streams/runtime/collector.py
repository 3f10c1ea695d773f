"""The garbage collector kept off what a served bundle holds.

What a bundle and its catalog hold (100k items: ~50-75k tracked objects, the ANN index's
and the encoder's buffers among them) lives as long as the bundle, yet it is loaded
after ``worker.tune_collector`` froze start-up, so every older pass walked it again: in
the stream bench's worker (``bench/gc_pauses.py``, 100k items, loaded host) the
middle-generation passes while serving took 37-67 ms of CPU each, over those objects.
Once a bundle is served and the catalog's snapshot read (``served_with_catalog``), the
collector is settled: garbage collected, the survivors frozen.

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

__all__ = ["served_with_catalog", "settle", "settle_after_swaps"]

log = logging.getLogger("freshet.worker")

SETTLE_EVERY_S = 2.0
"""How often the served bundle is looked at (one attribute read)."""


def settle() -> tuple[float, int]:
    """Collect what is not frozen, then freeze what is left. Returns the seconds taken
    and how many unreachable objects the pass found."""
    start = time.perf_counter()
    found = gc.collect()
    gc.freeze()
    return time.perf_counter() - start, found


def served_with_catalog(live: Any) -> tuple[Any, int] | None:
    """The bundle ``live`` (a ``LiveRecommender``) scores with and how many whole catalog
    reads it has caught up (``catalog_reads``: the snapshot or the log from the start, or
    an image); None until both a bundle is served and one read is done.

    The first catalog read comes after the first bundle is served: settled on the bundle
    alone, the scorer's ``records`` (a dict of every item's ``CatalogRecord``, 100k of
    them: an empty dict is untracked, so the settle froze nothing of it) and the
    catalog's structures were built after the freeze, and passed through the young and
    middle generations into every later full pass (``bench/gc_pauses.py --name-census
    --thaw`` named it: the 100,000-entry dict of session 16, ``LiveScorer.records``).
    A read counts whether or not the log holds anything (an empty log leaves the cursor
    at "0", and the follower reads from "0" again after every wait: that counts once),
    and a new Redis generation's read counts again: its records are new too.
    """
    scorer = live.scorer
    bundle = scorer.bundle  # None while it scores with no model (popularity, trending)
    if not scorer.ready or bundle is None or live.catalog_reads == 0:
        return None
    return bundle, live.catalog_reads


async def settle_after_swaps(
    served: Callable[[], tuple[Any, int] | None], every_s: float = SETTLE_EVERY_S
) -> None:
    """Settle the collector each time ``served()`` (the bundle being scored with and a
    count of catalog reads, None while none is served) names another bundle or count;
    runs until cancelled."""
    settled: Callable[[], Any | None] = type(None)  # then a weak reference: never keeps it
    settled_reads = -1
    while True:
        await asyncio.sleep(every_s)
        now = served()
        if now is None or (now[0] is settled() and now[1] == settled_reads):
            continue
        settled, settled_reads = weakref.ref(now[0]), now[1]
        del now
        frozen = gc.get_freeze_count()
        took, found = settle()
        log.info(
            "collector settled on a new bundle or catalog read in %.0f ms: %d unreachable "
            "collected, "
            "%d objects frozen (%d in all; cycles among them are kept)",
            1e3 * took,
            found,
            gc.get_freeze_count() - frozen,
            gc.get_freeze_count(),
        )
