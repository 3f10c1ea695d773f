"""The real-time path's background duties, as plain loops a Faust app runs as tasks.

What each costs while nothing changes is what an idle worker costs, so each duty
waits on what it serves rather than polling for it where it can:

- **catalog**: a blocking read of the catalog log (``LiveRecommender.follow_catalog``)
  wakes it when a record is logged; with none, once every ``CATALOG_WAIT_S`` or sooner
  (``wait_log`` blocks under the client's read timeout: 3 s at redis-py's default).
- **changes**: one read of the change token a second decides both the trending and
  the popularity syncs (their ``SyncPolicy``: the records applied since the last read,
  and its age); no other call while neither is due. Once the token stood for a few
  reads (no batch anywhere), it is read every ``CHANGES_IDLE_S`` until it moves.
- **bundle**: a ``stat`` of ``CURRENT`` every ``BUNDLE_EVERY_S``; the file is read
  only when it changed.
- **debounce**: the trailing-edge flush ticks only while a user is owed a list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from streams.core.publish import ListPublisher
from streams.runtime.live_recommender import LiveRecommender
from streams.runtime.swallowed_cancel import raise_swallowed_cancel

__all__ = ["add_live_timers", "error_line", "live_duties"]

log = logging.getLogger("freshet.worker")

CATALOG_WAIT_S = 4.0
"""Longest blocking read of the catalog log: an idle worker's one call per this long. The
store blocks at most a share of its client's read timeout (``wait_log``: 3 s at redis-py's
default 5 s), so a read never runs into that timeout."""
CATALOG_PAUSE_S = 0.5
"""The catalog poll without a blocking read, and the pause after a failed read."""
CHANGES_EVERY_S = 1.0
"""The change token's read while records are applied: the most a due trending or
popularity read waits."""
CHANGES_QUIET_TICKS = 5
CHANGES_IDLE_S = 4.0
"""After ``CHANGES_QUIET_TICKS`` reads with the token standing (no batch anywhere), the
token is read this often until it moves: an idle worker's reads drop to a quarter, and
the first records after a pause are seen this much later (trending reads wait for
``FRESHET_TRENDING_SYNC_S`` or 500 records anyway)."""
BUNDLE_EVERY_S = 2.0


def live_duties(
    live: LiveRecommender,
    publisher: ListPublisher,
    on_published: Callable[[list[int]], None] | None = None,
) -> dict[str, Callable[[], Awaitable[None]]]:
    """The duties by name, each a loop that runs until cancelled and never raises.

    Each is a plain loop that sleeps between runs, not a Faust timer: a Faust timer
    tick costs several times a plain sleep (its drift bookkeeping and stop checks).
    ``on_published`` gets the source record timestamps of each trailing-edge list sent.
    """

    def guarded(name: str, interval: float, fn: Callable[[], Awaitable[Any]]) -> Any:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("%s failed: %s", name, error_line(exc))
                raise_swallowed_cancel()  # a Redis call's, redis-py's wait_for race

        loop.__name__ = loop.__qualname__ = f"live_{name}"
        return loop

    async def flush_debounced() -> None:
        await live.owing()  # no tick while no user is owed a list
        served = await live.flush(publisher, int(time.time() * 1000))
        if served and on_published is not None:
            on_published([u.source_timestamp_ms for u in served])

    async def catalog() -> None:
        if live.catalog_wait is None:  # no blocking read: poll
            await live.sync_catalog()
        else:  # returns only by raising: the loop logs it and starts again
            await live.follow_catalog(CATALOG_WAIT_S, CATALOG_PAUSE_S)

    async def changes() -> None:
        quiet = 0  # token reads in a row that found it standing
        while True:
            await asyncio.sleep(CHANGES_IDLE_S if quiet >= CHANGES_QUIET_TICKS else CHANGES_EVERY_S)
            try:
                await live.sync_changes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("changes failed: %s", error_line(exc))
            raise_swallowed_cancel()
            quiet = 0 if live.token_moved else quiet + 1

    changes.__name__ = changes.__qualname__ = "live_changes"

    async def warm_up() -> None:
        try:
            await live.check_bundle()
            await live.sync_catalog()
            await live.sync_changes()
        except Exception as exc:
            log.warning("warm-up failed: %s", error_line(exc))

    warm_up.__name__ = warm_up.__qualname__ = "live_warm_up"
    return {
        "bundle": guarded("bundle", BUNDLE_EVERY_S, live.check_bundle),
        "catalog": guarded("catalog", CATALOG_PAUSE_S, catalog),
        "changes": changes,
        "debounce": guarded(
            "debounce", max(0.05, live.debounce.window_ms / 4000.0), flush_debounced
        ),
        "warm_up": warm_up,
    }


def add_live_timers(
    app: faust.App,
    live: LiveRecommender,
    publisher: ListPublisher,
    on_published: Callable[[list[int]], None] | None = None,
) -> None:
    """Run ``live_duties`` as tasks of ``app``."""
    for duty in live_duties(live, publisher, on_published).values():
        app.task(duty)


def error_line(exc: BaseException) -> str:
    """An error line for logs: type and message, cut short."""
    return f"{type(exc).__name__}: {str(exc)[:300]}"
