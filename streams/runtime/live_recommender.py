"""The real-time path's async shell around the synchronous ``LiveScorer``.

It keeps only the duties that wait on something: watching the bundle folder and
loading a new bundle off the event loop (refused and logged if bad), following the
catalog log and the trending and popularity sums in Redis, debouncing, holding users
that cannot be scored yet, and scoring (in a worker thread, but for the smallest batches).
When trending and counts are re-read, and the catalog follower, are in its base class
(``streams.runtime.live_syncs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from inference.bundle import CURRENT, BundleError, read_current
from streams.core.catalog import CATALOG_LOG_PAGE, CatalogRecord, CatalogSnapshot
from streams.core.catalog_image import ImageParts, all_records, capture
from streams.core.copy_on_write import (
    catch_up,
    keep_records,
    prepare_catalog,
    prepare_covisit,
    prepare_index,
    renumber_backlog,
    swap_bundle,
    swap_index,
    write_chunk,
)
from streams.core.debounce import Debouncer
from streams.core.held_users import HeldUsers
from streams.core.ingest import Refresh, TouchedUser
from streams.core.live_config import LiveStats
from streams.core.live_scorer import LiveScorer, bundle_parts
from streams.core.publish import ListPublisher
from streams.core.sync_policy import SyncPolicy
from streams.runtime.catalog_images import CatalogImages
from streams.runtime.live_syncs import _UNREAD, EVERY_CHANGE, LiveSyncs

__all__ = ["LiveRecommender", "LiveStats"]

log = logging.getLogger("freshet.live")

SETTLED_NS = 1_000_000_000
"""A ``CURRENT`` file changed this long before it was read is trusted by its stat after:
a rewrite within one tick of the file system's clock could leave the same stat."""
INLINE_USERS = 2
INLINE_IDLE_S = 0.05
"""Batches of at most ``INLINE_USERS`` users, ``INLINE_IDLE_S`` or more after the last
scoring, are scored on the loop: a thread hop (the pool's wake-up, the GIL passed twice,
the loop's self-pipe) costs CPU, and at light load nothing waits. Others go to a thread,
so the loop keeps fetching (all on the loop halved the 100k shop's saturated throughput)."""


class LiveRecommender(LiveSyncs):
    """Implements ``streams.core.ingest.Refresher`` for one worker process.

    Args:
        scorer: The synchronous scorer it feeds and calls.
        bundle_dir: Folder whose ``CURRENT`` names the bundle to serve.
        bundle_loader: ``(folder, version) -> bundle``, called in a worker thread.
        debounce_ms: Per-user window of list refreshes (0: every batch); with
            ``debounce_behind_ms`` the cap of the adaptive window (``streams.core.debounce``).
        debounce_behind_ms: Adaptive debounce: no window until a batch's oldest event
            has waited this long. ``None``: the fixed window, always.
        debounce_lanes: The batch agent's lanes (partition modulo this): the adaptive
            debounce compares a batch's wait with its own lane's last batch.
        trending_source, counts_source, catalog_log: Readers of the shared state.
        change_source: A cheap token that changes whenever trending or counts may have
            (``RedisStateStore.change_token``): the syncs read nothing while it stands,
            and once it moves they read as ``trending_policy`` and ``popularity_policy``
            say (``streams.core.sync_policy``; the default: at every change).
        catalog_wait: ``(cursor, seconds) -> bool``: waits up to that long for a log
            entry after ``cursor`` (a blocking read, ``RedisCatalogStore.wait_log``);
            ``follow_catalog`` then applies changes as they come instead of polling.
        catalog_snapshot: The stored records, read in large pages when the worker has
            read no catalog yet (at start, or in a new Redis generation); then the log.
        image_dir: Where this worker keeps its catalog image (``streams.core.catalog_image``),
            read at the first bundle load, written when caught up (``image_every_s``).
    """

    def __init__(
        self,
        scorer: LiveScorer,
        *,
        bundle_dir: Path,
        bundle_loader: Callable[[Path, str], Any],
        debounce_ms: int,
        trending_source: Callable[[int], Awaitable[list[tuple[str, float]]]],
        counts_source: Callable[[], Awaitable[dict[str, int]]],
        catalog_log: Callable[[str], Awaitable[list[tuple[str, CatalogRecord]]]],
        change_source: Callable[[], Awaitable[Hashable]] | None = None,
        debounce_behind_ms: int | None = None,
        debounce_lanes: int = 1,
        catalog_snapshot: CatalogSnapshot | None = None,
        image_dir: Path | None = None,
        image_every_s: float = 300.0,
        trending_policy: SyncPolicy = EVERY_CHANGE,
        popularity_policy: SyncPolicy = EVERY_CHANGE,
        catalog_wait: Callable[[str, float], Awaitable[bool]] | None = None,
    ) -> None:
        self.scorer = scorer
        self.bundle_dir = bundle_dir
        self.bundle_loader = bundle_loader
        self.trending_source = trending_source
        self.counts_source = counts_source
        self.catalog_log = catalog_log
        self.change_source = change_source
        self.catalog_snapshot = catalog_snapshot
        self.catalog_wait = catalog_wait
        self.policies = {"trending": trending_policy, "popularity": popularity_policy}
        self.inline_users, self.inline_idle_s = INLINE_USERS, INLINE_IDLE_S
        self._scored_at = 0.0  # monotonic end of the last scoring
        self.images: CatalogImages | None = None
        if image_dir is not None and catalog_snapshot is not None:
            self.images = CatalogImages(image_dir, catalog_snapshot, image_every_s)
        # sync name -> the token it last read at, and when (monotonic)
        self._synced: dict[str, tuple[Hashable, float]] = {}
        self._catalog_moved: set[str] = set()  # syncs whose last read predates a page
        self._token: Hashable = _UNREAD  # the change token ``sync_changes`` read last
        self.token_moved = True
        self._current_stat: tuple[int, ...] | None = None  # CURRENT as last read, settled
        self._catalog_waiting: asyncio.Future[bool] | None = None
        self.catalog_cursor = "0"
        self.catalog_restarts = 0  # restart_catalog's calls: a page read before one keeps off
        self.catalog_reads = 0  # generations read whole and caught up (or from an image)
        self.catalog_read_whole = False  # this generation's: reset by restart_catalog
        self.debounce: Debouncer[TouchedUser] = Debouncer(debounce_ms, behind_ms=debounce_behind_ms)
        self.debounce_lanes = max(1, debounce_lanes)
        self.refused_versions: set[str] = set()
        self._lock = asyncio.Lock()  # no catalog or bundle change lands mid-computation
        self._catalog_reader = asyncio.Lock()
        self._late: list[CatalogRecord] | None = None  # catalog changes during a swap
        self._index_debt: list[Any] = []  # catalog changes written, not yet indexed
        self._page_lock = asyncio.Lock()  # one catalog page written at a time
        self._held: HeldUsers[TouchedUser] = HeldUsers()  # owed a list once it can score
        self._owing = asyncio.Event()  # set when a user becomes pending or held

    @property
    def stats(self) -> LiveStats:
        return self.scorer.stats

    @property
    def model_version(self) -> str | None:
        return self.scorer.model_version

    # --- model bundle ----------------------------------------------------------------
    async def check_bundle(self) -> bool:
        """Load the CURRENT bundle if it changed; a bad one is refused and logged.

        ``CURRENT`` is read only when its stat changed since the last read that left
        nothing to do (it is replaced by rename: a new inode and change time): the
        timer's check is then a ``stat`` instead of an open, a read and a close.
        """
        stat = self._stat_current()
        if stat is not None and stat == self._current_stat:
            return False
        try:
            version = read_current(self.bundle_dir)
        except (OSError, BundleError) as exc:
            log.warning("cannot read CURRENT in %s: %s", self.bundle_dir, exc)
            return False
        if version is None or version == self.model_version or version in self.refused_versions:
            self._settle(stat)
            return False
        if self._late is not None:  # a load is under way (start-up task and timer overlap)
            return False
        loaded = await self._load(version)
        self._settle(stat)  # served or refused: nothing to do while it stands
        return loaded

    def _settle(self, stat: tuple[int, ...] | None) -> None:
        """Skip reading ``CURRENT`` while its stat stays ``stat`` (taken before the read
        whose version is now served or refused), if it was changed long enough ago."""
        if stat is not None and time.time_ns() - stat[-1] >= SETTLED_NS:
            self._current_stat = stat

    async def _load(self, version: str) -> bool:
        """Load, prepare and swap in ``version``; False if it is refused."""
        self._late = []  # from here on, catalog changes are also kept for the new bundle
        try:
            try:
                bundle = await asyncio.to_thread(self.bundle_loader, self.bundle_dir, version)
            except Exception as exc:  # corrupt, incomplete or mismatched: keep serving
                return self._refuse(version, f": {exc}")
            restored, first = None, self.scorer.bundle is None and self.catalog_cursor == "0"
            if first and self.images is not None:
                restored = await self.images.read(bundle, version)  # the first load only
            try:
                if restored is not None:
                    catalog, index = restored.catalog, restored.ann
                else:
                    records = await asyncio.to_thread(all_records, self.scorer.records)
                    catalog, index = await asyncio.to_thread(self.scorer.prepare, bundle, records)
            except Exception as exc:  # e.g. its content tower fails on our catalog
                return self._refuse(version, f" while preparing: {exc}")
            await self._swap_in(bundle, catalog, index, self._late)
            if restored is not None and self.images is not None:  # no await since the swap
                self.scorer.records, self.catalog_cursor = restored.records, restored.cursor
                self.catalog_reads += 1
                self.catalog_read_whole = True
                self.images.served(catalog, restored.cursor)
            self._synced.clear()  # the new catalog takes trending and counts afresh
        finally:
            self._late = None
        return True

    async def _swap_in(
        self, bundle: Any, catalog: Any, index: Any, late: list[CatalogRecord]
    ) -> None:
        """Serve a prepared bundle. Off the lock: the co-visitation table is re-numbered
        (frozen meanwhile) and the records that came during the load are applied; the
        swap itself waits until none is left to apply."""
        async with self._housekeeping("bundle"):
            self.scorer.covisit_frozen = True
        try:
            remap = await asyncio.to_thread(prepare_covisit, self.scorer, catalog)
            parts = await asyncio.to_thread(bundle_parts, bundle)  # bound encoder: ORT runs
            done, swapped = 0, False
            while True:
                if len(late) > done:
                    new, done = late[done:], len(late)
                    index = await asyncio.to_thread(catch_up, catalog, index, bundle, new)
                    continue
                scorer = self.scorer
                renumbered = await asyncio.to_thread(renumber_backlog, scorer, remap, catalog)
                # What the swap replaces is freed after the lock: the old co-visitation
                # table alone is hundreds of MB at 100k items, and freeing it inside
                # the hold cost ~1.5 ms of CPU (bench/housekeeping_bench.py).
                retired = (
                    scorer.bundle,
                    scorer.catalog,
                    scorer.index,
                    scorer.covisit,
                    scorer.seen_rows,
                    scorer.new_item_vectors,  # these two are replaced, not cleared
                )
                async with self._housekeeping("bundle"):
                    if len(late) == done:
                        swap_bundle(scorer, bundle, catalog, index, remap, renumbered, parts)
                        self._index_debt.clear()  # the new index holds every record
                        swapped = True
                del retired
                if swapped:
                    return
        finally:
            self.scorer.covisit_frozen = False

    async def _image_parts(self) -> ImageParts | None:
        """The catalog copied for an image while no page is written (None: mid-load)."""
        scorer = self.scorer
        async with self._page_lock:
            if scorer.bundle is None or self._late is not None:
                return None
            rows = len(scorer.bundle.item_ids)
            return capture(
                scorer.catalog, rows, scorer.bundle.version, self.catalog_cursor, scorer.records
            )

    def _stat_current(self) -> tuple[int, ...] | None:
        """``CURRENT``'s device, inode, size, modification and change times (None: no
        such file, or it cannot be read: the read that follows says why)."""
        try:
            st = os.stat(self.bundle_dir / CURRENT)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _refuse(self, version: str, why: str) -> bool:
        self.refused_versions.add(version)
        self.scorer.stats.bundle_refusals += 1
        log.error("refused bundle %s%s; still serving %s", version, why, self.model_version)
        return False

    # --- catalog (its follower and the syncs: streams.runtime.live_syncs) ----------
    async def sync_catalog(self) -> int:
        """Apply catalog changes logged since the last call; returns how many.

        Reads pages while they come back full (a worker behind catches up at once). While
        the first bundle is prepared it applies nothing: that bundle's catalog is built
        from every record known when its load began, the rest are read once it is in, so
        no record is embedded and indexed twice (at 1M items that held start-up back).
        """
        if self.scorer.bundle is None and self._late is not None:  # the first load
            return 0
        async with self._catalog_reader:  # the start-up task and the timer both call
            return await self._sync_catalog()

    async def _sync_catalog(self) -> int:
        # A restart (a new Redis generation) from here on, even during a read, keeps the
        # cursor at "0" and ends the call: the new generation's snapshot is read next.
        # Taken at a page's write instead, a restart during the log or snapshot read
        # let that page move the cursor onto a log id, and the snapshot was skipped.
        applied, restarts, whole = 0, self.catalog_restarts, self.catalog_cursor == "0"
        if whole and self.catalog_snapshot is not None:
            applied += await self._read_snapshot(self.catalog_snapshot, restarts)
            if self.catalog_restarts != restarts:
                return applied
        while True:
            changes = await self.catalog_log(self.catalog_cursor)
            if changes:
                applied += await self._write_page(changes, restarts)
            if self.catalog_restarts != restarts:
                return applied
            if changes:
                # New items may have trending sums and counts already: read them once
                # the syncs' policies allow a read for age (at once with none).
                self._catalog_moved.update(self._synced)
            if len(changes) < CATALOG_LOG_PAGE:  # caught up
                if whole and not self.catalog_read_whole:  # an empty log stays at "0"
                    self.catalog_reads += 1
                    self.catalog_read_whole = True
                images = self.images
                if images is not None and images.due(self.scorer.catalog, self.catalog_cursor):
                    images.start_save(self._image_parts)
                return applied

    async def _read_snapshot(self, snapshot: CatalogSnapshot, restarts: int) -> int:
        """Apply every stored record, then follow the log from where it stood before
        (unless a restart came after ``restarts``)."""
        head = await snapshot.log_head()
        applied = 0
        async for page in snapshot.scan():
            applied += await self._write_page([(None, rec) for rec in page], restarts)
        if self.catalog_restarts == restarts:  # else the new generation's is read next
            self.catalog_cursor = head
        self._synced.clear()
        return applied

    async def _write_page(
        self, changes: Sequence[tuple[str | None, CatalogRecord]], restarts: int
    ) -> int:
        """Apply log entries: content vectors off the lock, then chunk by chunk under
        short holds (the cursor moves with each chunk, unless a restart came after
        ``restarts``; entries without a log id, from the stored records, leave it), then
        the index on a copy. A chunk that finds the catalog swapped (a bundle came in)
        has the rest prepared again against the new one.
        """
        records = [rec for _, rec in changes]
        done = 0
        async with self._page_lock:
            while done < len(records):
                scorer = self.scorer
                page = await asyncio.to_thread(
                    prepare_catalog, scorer.catalog, scorer.bundle, records[done:]
                )
                for i, part in enumerate(page.chunks):
                    if page.catalog.ids_due:  # the id map's large dict grows off the lock
                        folded = await asyncio.to_thread(page.catalog.folded_ids)
                        async with self._housekeeping("catalog"):
                            page.catalog.adopt_ids(folded)  # refused: before the next chunk
                    async with self._housekeeping("catalog"):
                        change = write_chunk(scorer, page, i)
                        if change is not None:
                            done += len(part)
                            if self.catalog_restarts == restarts:  # else "0" stands
                                cursor = changes[done - 1][0] or self.catalog_cursor
                                self.catalog_cursor = cursor
                            if self._late is not None:
                                self._late.extend(part)
                            self._index_debt.append(change)
                    if change is None:
                        break
                    keep_records(scorer, part)  # no await since the hold: one step
                    # The loop takes its turn between chunks: without it a page's
                    # holds ran back to back in one step, and a batch could not even
                    # queue for the lock in between.
                    await asyncio.sleep(0)
            await self._follow_index()
        return len(records)

    async def _follow_index(self) -> None:
        """Bring the ANN index up to the catalog: a copy updated in a thread, swapped in."""
        while self._index_debt:
            scorer, debt = self.scorer, list(self._index_debt)
            update = await asyncio.to_thread(prepare_index, scorer.catalog, scorer.index, debt)
            async with self._housekeeping("catalog"):
                if swap_index(scorer, update):
                    del self._index_debt[: update.applied]

    @contextlib.asynccontextmanager
    async def _housekeeping(self, duty: str) -> AsyncIterator[None]:
        """The scoring lock, held by housekeeping only to swap (``copy_on_write``); how
        long ``duty`` held it is recorded (``LiveStats.lock_hold_ms``).

        The collector waits while it is held (the body never awaits): a collection due
        at an allocation in the hold runs at the first one after it, off the lock. A
        young pass walks up to ``YOUNG_COLLECTION_EVERY`` objects and an older one ten
        times as many, which would cost a hold whose own work is a chunk's.
        """
        collecting = False  # read under the lock: another hold may have it off
        try:
            async with self._lock:
                collecting = gc.isenabled()
                gc.disable()
                start = time.perf_counter()
                try:
                    yield
                finally:
                    held = (time.perf_counter() - start) * 1e3
                    self.scorer.stats.lock_hold_ms.append((duty, held))
        finally:
            if collecting:
                gc.enable()

    # --- the per-batch path ----------------------------------------------------------
    async def refresh(self, touched: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """Embeddings and lists for the users due now; the rest wait for their window.

        How far behind the batch is (for the adaptive window) is the wait of its oldest
        event since its record's Kafka timestamp. Users whose window has closed (all, once
        caught up) ride the batch rather than wait for the timer's tick and own scoring.
        """
        stamps = [t.source_timestamp_ms for t in touched if t.source_timestamp_ms > 0]
        lag_ms = max(0, now_ms - min(stamps)) if stamps else 0
        lane = touched[0].partition % self.debounce_lanes if touched else 0  # one lane's batch
        due = self.debounce.admit(((t.user_id, t) for t in touched), now_ms, lag_ms, lane)
        released = self.debounce.due(now_ms) if self.debounce.pending else []
        self.scorer.stats.deferred = len(self.debounce.pending)
        if self.debounce.pending:
            self._owing.set()
        refresh = await self.compute_async(due + released, now_ms)
        refresh.partitions.update((u.user_id, u.partition) for u in released)
        return refresh

    async def compute_async(self, users: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """The scorer, serialised with catalog and bundle changes, on the loop for a small
        batch at light load, else in a worker thread (``INLINE_IDLE_S``).

        While nothing can be scored (no catalog yet, whether a bundle is loading or the
        worker serves model-free), the users are held and owed a list from
        ``due_pending`` once it can, rather than dropped.
        """
        if not users:
            return Refresh()
        if not self.scorer.ready:
            self._held.hold((u.user_id, u) for u in users)
            self._owing.set()
            return Refresh()
        if self._held:  # a newer state supersedes a held one
            self._held.release(u.user_id for u in users)
        async with self._lock:
            idle = time.monotonic() - self._scored_at >= self.inline_idle_s
            if idle and len(users) <= self.inline_users:
                refresh = self.scorer.score(users, now_ms)
            else:
                refresh = await asyncio.to_thread(self.scorer.score, users, now_ms)
            self._scored_at = time.monotonic()
            return refresh

    def due_pending(self, now_ms: int) -> list[TouchedUser]:
        """Users whose debounce window closed, and those held until the scorer was ready."""
        due = self.debounce.due(now_ms)
        if self._held and self.scorer.ready:
            due += self._held.take(named={u.user_id for u in due})
        return due

    async def owing(self) -> None:
        """Returns once a user is owed a list (pending in a window, or held): the
        trailing-edge timer waits here rather than tick while nothing is owed."""
        while not (self.debounce.pending or self._held):
            self._owing.clear()
            await self._owing.wait()

    async def flush(self, publisher: ListPublisher, now_ms: int) -> list[TouchedUser]:
        """Score and publish the users now due (trailing edges, held); returns the served."""
        due = self.due_pending(now_ms)
        if not due:
            return []
        refresh = await self.compute_async(due, now_ms)
        await publisher.commit([], {u.user_id: u.partition for u in due}, refresh)
        return [u for u in due if u.user_id in refresh.lists]
