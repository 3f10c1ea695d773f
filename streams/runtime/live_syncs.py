"""The live recommender's reads of what other processes write: the trending and
popularity syncs decided on one change-token read (``streams.core.sync_policy``), and
the catalog follower, woken by a blocking read of the catalog log.

``LiveSyncs`` is a part of ``LiveRecommender`` (its base class), kept apart so that the
rules of when to read stand on their own; it uses the recommender's scorer, its scoring
lock (``_housekeeping``) and its catalog reader (``sync_catalog``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from streams.core.catalog import CatalogRecord
from streams.core.copy_on_write import (
    prepare_popularity,
    prepare_trending,
    swap_popularity,
    swap_trending,
)
from streams.core.live_scorer import LiveScorer
from streams.core.sync_policy import SyncPolicy, records_between
from streams.runtime.swallowed_cancel import raise_swallowed_cancel

__all__ = ["EVERY_CHANGE", "LiveSyncs"]

_UNREAD = object()  # no change token passed in: read one
EVERY_CHANGE = SyncPolicy()


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Take a dropped task's outcome (a read failing as its client closes), unlogged."""
    if not task.cancelled():
        task.exception()


class LiveSyncs:
    """The syncs and the catalog follower of ``LiveRecommender`` (set up by its
    ``__init__``; see its arguments ``trending_policy``, ``popularity_policy``,
    ``change_source`` and ``catalog_wait``)."""

    scorer: LiveScorer
    trending_source: Callable[[int], Awaitable[list[tuple[str, float]]]]
    counts_source: Callable[[], Awaitable[dict[str, int]]]
    change_source: Callable[[], Awaitable[Hashable]] | None
    catalog_wait: Callable[[str, float], Awaitable[bool]] | None
    policies: dict[str, SyncPolicy]
    catalog_cursor: str
    catalog_restarts: int
    catalog_reads: int
    catalog_read_whole: bool
    token_moved: bool
    _token: Hashable
    _synced: dict[str, tuple[Hashable, float]]  # sync name -> its last read's token, time
    _catalog_moved: set[str]  # syncs whose last read predates a catalog page
    _catalog_waiting: asyncio.Future[bool] | None
    _late: list[CatalogRecord] | None

    if TYPE_CHECKING:  # the recommender's

        async def sync_catalog(self) -> int: ...

        def _housekeeping(self, duty: str) -> AbstractAsyncContextManager[None]: ...

    async def follow_catalog(self, wait_s: float, pause_s: float) -> None:
        """Apply catalog changes as they are logged, until cancelled (or at once without
        ``catalog_wait``); raises what a read raises.

        A blocking read of the log (``catalog_wait``, up to ``wait_s``) returns when an
        entry comes after the cursor, and ``sync_catalog`` then applies every page: a
        record reaches the scorer a round trip after it is logged, and an idle worker
        makes one call per ``wait_s`` where a poll made one every half second. While
        the first bundle is prepared (nothing is applied) it checks every ``pause_s``.
        ``restart_catalog`` ends a wait early (a new Redis generation's log).
        """
        if self.catalog_wait is None:
            return
        woke = True
        while True:
            if woke or self.catalog_cursor == "0":  # "0": the snapshot is (re)read
                await self.sync_catalog()
            raise_swallowed_cancel()  # a Redis read's: the loop must still end
            if self.scorer.bundle is None and self._late is not None:  # the first load
                await asyncio.sleep(pause_s)
                continue
            self._catalog_waiting = waiting = asyncio.ensure_future(
                self.catalog_wait(self.catalog_cursor, wait_s)
            )
            try:
                await asyncio.wait({waiting})
            finally:
                if not waiting.done():  # our own cancelling: no read left behind
                    waiting.cancel()
                    waiting.add_done_callback(_retrieved)
                self._catalog_waiting = None
            woke = waiting.cancelled() or waiting.result()

    def restart_catalog(self) -> None:
        """Read the catalog afresh from the snapshot (a new Redis generation): the cursor
        goes back to "0" and a blocking wait on the old log ends now; a page of the old
        log being applied meanwhile leaves the cursor at "0" (``catalog_restarts``)."""
        self.catalog_cursor = "0"
        self.catalog_restarts += 1
        self.catalog_read_whole = False
        if self._catalog_waiting is not None:
            self._catalog_waiting.cancel()

    async def sync_trending(self, k: int | None = None, token: Hashable = _UNREAD) -> bool:
        """Re-read the trending items if due (``trending_policy``); returns whether it
        read. ``token``: the change token already read this tick (else it is read)."""
        pool = k or max(self.scorer.config.recommend.trending_pool, 1)
        read = functools.partial(self.trending_source, pool)
        return await self._sync("trending", read, prepare_trending, swap_trending, False, token)

    async def sync_popularity(self, token: Hashable = _UNREAD) -> bool:
        """Re-read the item counts if due (``popularity_policy``); returns whether it read."""
        return await self._sync(
            "popularity", self.counts_source, prepare_popularity, swap_popularity, True, token
        )

    async def sync_changes(self) -> tuple[bool, bool]:
        """The trending and popularity syncs on one read of the change token: a tick's
        one round trip while neither is due. Returns whether each read; ``token_moved``
        then says whether the token differs from the one this method read before."""
        token = None if self.change_source is None else await self.change_source()
        self.token_moved, self._token = token != self._token, token
        trending = await self.sync_trending(token=token)
        return trending, await self.sync_popularity(token=token)

    async def _sync(
        self, name: str, read: Any, prepare: Any, swap: Any, thread: bool, token: Hashable
    ) -> bool:
        """``read()`` if ``name`` is due, ``prepare`` it (in a thread if ``thread``)
        against the catalog and ``swap`` it in; returns whether it read."""
        if token is _UNREAD:
            token = None if self.change_source is None else await self.change_source()
        if not self._due(name, token):
            return False
        data = await read()
        swapped = False
        # Again only if something moved meanwhile: a bundle or the catalog came in, the
        # counts changed, or a growth began and refused the popularity column, which
        # lacked its room (prepared again, it has it).
        while not swapped:
            args = (self.scorer.catalog, data)
            prepared = await asyncio.to_thread(prepare, *args) if thread else prepare(*args)
            async with self._housekeeping(name):
                swapped = swap(self.scorer, prepared)
        self._synced[name] = (token, time.monotonic())
        self._catalog_moved.discard(name)
        return True

    def _due(self, name: str, token: Hashable) -> bool:
        """Whether ``name`` reads at ``token``: always without a change source or after
        a bundle swap; after a catalog page once its policy's age allows (a page does
        not hold back a read the records make due); never while the token stands and
        no page came; otherwise as its policy says of the records applied since its
        last read and that read's age. The token is read before the data: a write
        landing in between is read at a later tick."""
        last = self._synced.get(name)
        if self.change_source is None or last is None:
            return True
        seen, at = last
        policy, age = self.policies[name], time.monotonic() - at
        if name in self._catalog_moved and age >= policy.max_age_s:
            return True
        if seen == token:
            return False
        return policy.due(records_between(seen, token), age)
