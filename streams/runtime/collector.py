"""The garbage collector kept off what a served bundle holds.

What a bundle and its catalog hold (100k items: ~50-75k tracked objects, the ANN index's
and the encoder's buffers among them) lives as long as the bundle, yet it is loaded
after ``worker.tune_collector`` froze start-up, so every older pass walked it again: in
the stream bench's worker (``bench/gc_pauses.py``, 100k items, loaded host) the
middle-generation passes while serving took 37-67 ms of CPU each, over those objects.
Once a bundle is served, the collector is settled: garbage collected, the survivors
frozen. A later bundle unfreezes first, so that the one it replaced is collected too
(cycles in it would otherwise be kept for the worker's life).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["settle", "settle_after_swaps"]

log = logging.getLogger("freshet.worker")

SETTLE_EVERY_S = 2.0
"""How often the served bundle is looked at (one attribute read)."""


def settle(again: bool) -> float:
    """Collect, then freeze what is left; ``again``: unfreeze first, so that what the
    last settle froze and has died since is collected too. Returns the seconds taken."""
    start = time.perf_counter()
    if again:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - start


async def settle_after_swaps(
    served: Callable[[], Any | None], every_s: float = SETTLE_EVERY_S
) -> None:
    """Settle the collector each time ``served()`` (the bundle being scored with, None
    while none is) names another bundle; runs until cancelled."""
    settled: Any = None
    while True:
        await asyncio.sleep(every_s)
        bundle = served()
        if bundle is None or bundle is settled:
            continue
        again, settled = settled is not None, bundle  # the last one no longer held here
        del bundle
        took = settle(again)
        log.info("collector settled on a new bundle in %.0f ms", 1e3 * took)
