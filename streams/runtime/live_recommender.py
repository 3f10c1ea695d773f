"""The real-time path's async shell around the synchronous ``LiveScorer``.

It keeps only the duties that wait on something: watching the bundle folder and
loading a new bundle off the event loop (refused and logged if bad), following the
catalog log and the trending and popularity sums in Redis, debouncing, holding users
that cannot be scored yet, and hopping to a worker thread for the scoring itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from inference.bundle import BundleError, read_current
from streams.core.catalog import CATALOG_LOG_PAGE, CatalogRecord, CatalogSnapshot
from streams.core.catalog_image import ImageParts, all_records, capture
from streams.core.copy_on_write import (
    catch_up,
    prepare_catalog,
    prepare_covisit,
    prepare_index,
    prepare_popularity,
    prepare_trending,
    renumber_backlog,
    swap_bundle,
    swap_index,
    swap_popularity,
    swap_trending,
    write_chunk,
)
from streams.core.debounce import Debouncer
from streams.core.ingest import Refresh, TouchedUser
from streams.core.live_config import LiveStats
from streams.core.live_scorer import LiveScorer
from streams.core.publish import ListPublisher
from streams.runtime.catalog_images import CatalogImages

__all__ = ["LiveRecommender", "LiveStats"]

log = logging.getLogger("freshet.live")

_UNCHANGED = object()
HELD_MAX = 1_000_000  # users a worker that cannot score yet keeps owing a list


class LiveRecommender:
    """Implements ``streams.core.ingest.Refresher`` for one worker process.

    Args:
        scorer: The synchronous scorer it feeds and calls.
        bundle_dir: Folder whose ``CURRENT`` names the bundle to serve.
        bundle_loader: ``(folder, version) -> bundle``, called in a worker thread.
        debounce_ms: Per-user window of list refreshes (0: every batch); with
            ``debounce_behind_ms`` the cap of the adaptive window (``streams.core.debounce``).
        debounce_behind_ms: Adaptive debounce: no window until a batch's oldest event
            has waited this long. ``None``: the fixed window, always.
        trending_source, counts_source, catalog_log: Readers of the shared state.
        change_source: A cheap token that changes whenever trending or counts may have
            (``RedisStateStore.change_token``); with it, the trending and popularity
            syncs read nothing while the token stands still, so an idle worker idles.
        catalog_snapshot: The stored records, read in large pages when the worker has
            read no catalog yet (at start, or in a new Redis generation) instead of the
            whole log entry by entry; the log is followed from there.
        image_dir: Where this worker keeps its catalog image (``streams.core.catalog_image``):
            read at the first bundle load instead of the stored records when it fits,
            written once caught up with the log, at most every ``image_every_s``.
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
        catalog_snapshot: CatalogSnapshot | None = None,
        image_dir: Path | None = None,
        image_every_s: float = 300.0,
    ) -> None:
        self.scorer = scorer
        self.bundle_dir = bundle_dir
        self.bundle_loader = bundle_loader
        self.trending_source = trending_source
        self.counts_source = counts_source
        self.catalog_log = catalog_log
        self.change_source = change_source
        self.catalog_snapshot = catalog_snapshot
        self.images = (
            CatalogImages(image_dir, catalog_snapshot, image_every_s)
            if image_dir is not None and catalog_snapshot is not None
            else None
        )
        self._synced: dict[str, Hashable] = {}  # sync name -> token it last read at
        self.catalog_cursor = "0"
        self.debounce: Debouncer[TouchedUser] = Debouncer(debounce_ms, behind_ms=debounce_behind_ms)
        self.refused_versions: set[str] = set()
        # Compute runs in a worker thread (numpy, faiss, onnxruntime and the MMR kernel
        # release the GIL for their heavy parts), so the event loop keeps fetching and
        # producing meanwhile and the next micro-batch fills. Measured on the 100k shop:
        # computing on the loop instead halved the batches and the throughput, although
        # a thread's GIL holds make the loop's socket calls wait. The lock keeps catalog
        # and bundle changes from landing in the middle of a computation.
        self._lock = asyncio.Lock()
        self._catalog_reader = asyncio.Lock()
        self._late: list[CatalogRecord] | None = None  # catalog changes during a swap
        # Housekeeping prepares its result off the lock and swaps it in
        # (``streams.core.copy_on_write``); the lock is held only for the swap.
        self._index_debt: list[Any] = []  # catalog changes written, not yet indexed
        self._page_lock = asyncio.Lock()  # one catalog page written at a time
        # Users touched while nothing can be scored (no catalog yet, or the first bundle
        # loading): they wait, newest state kept, for the first tick after that.
        self._held: dict[str, TouchedUser] = {}

    @property
    def stats(self) -> LiveStats:
        return self.scorer.stats

    @property
    def model_version(self) -> str | None:
        return self.scorer.model_version

    # --- model bundle ----------------------------------------------------------------
    async def check_bundle(self) -> bool:
        """Load the CURRENT bundle if it changed; a bad one is refused and logged."""
        try:
            version = read_current(self.bundle_dir)
        except (OSError, BundleError) as exc:
            log.warning("cannot read CURRENT in %s: %s", self.bundle_dir, exc)
            return False
        if version is None or version == self.model_version or version in self.refused_versions:
            return False
        if self._late is not None:  # a load is under way (start-up task and timer overlap)
            return False
        self._late = []  # from here on, catalog changes are also kept for the new bundle
        try:
            try:
                bundle = await asyncio.to_thread(self.bundle_loader, self.bundle_dir, version)
            except Exception as exc:  # corrupt, incomplete or mismatched: keep serving
                self._refuse(version)
                log.error(
                    "refused bundle %s: %s; still serving %s", version, exc, self.model_version
                )
                return False
            restored = None
            if (
                self.images is not None
                and self.scorer.bundle is None
                and self.catalog_cursor == "0"
            ):
                restored = await self.images.read(bundle, version)  # the first load only
            try:
                if restored is not None:
                    catalog, index = restored.catalog, restored.ann
                else:
                    records = await asyncio.to_thread(all_records, self.scorer.records)
                    catalog, index = await asyncio.to_thread(self.scorer.prepare, bundle, records)
            except Exception as exc:  # e.g. its content tower fails on our catalog
                self._refuse(version)
                log.error("refused bundle %s while preparing: %s", version, exc)
                return False
            await self._swap_in(bundle, catalog, index, self._late)
            if restored is not None and self.images is not None:  # no await since the swap
                self.scorer.records, self.catalog_cursor = restored.records, restored.cursor
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
                retired = (scorer.bundle, scorer.catalog, scorer.index, scorer.covisit)
                async with self._housekeeping("bundle"):
                    if len(late) == done:
                        swap_bundle(scorer, bundle, catalog, index, remap, renumbered)
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

    def _refuse(self, version: str) -> None:
        self.refused_versions.add(version)
        self.scorer.stats.bundle_refusals += 1

    # --- catalog, popularity, trending ---------------------------------------------
    async def sync_catalog(self) -> int:
        """Apply catalog changes logged since the last call; returns how many.

        Reads page after page while pages come back full, so a worker that starts
        behind a large catalog catches up at once rather than a page per tick. While
        the first bundle is being prepared it applies nothing: that bundle's catalog is
        built from every record known when its load began, and the rest are read
        after it is installed, so no record is turned into a content vector and indexed
        twice (at a million items that double work held start-up back for many minutes).
        """
        if self._first_load_pending():
            return 0
        async with self._catalog_reader:  # the start-up task and the timer both call
            return await self._sync_catalog()

    async def _sync_catalog(self) -> int:
        applied = 0
        if self.catalog_cursor == "0" and self.catalog_snapshot is not None:
            applied += await self._read_snapshot(self.catalog_snapshot)
        while True:
            changes = await self.catalog_log(self.catalog_cursor)
            if changes:
                applied += await self._write_page(changes)
                self._synced.clear()  # new items may have trending sums and counts already
            if len(changes) < CATALOG_LOG_PAGE:  # caught up
                if self.images is not None and self.images.due(
                    self.scorer.catalog, self.catalog_cursor
                ):
                    self.images.start_save(self._image_parts)
                return applied

    async def _read_snapshot(self, snapshot: CatalogSnapshot) -> int:
        """Apply every stored record, then follow the log from where it stood before."""
        head = await snapshot.log_head()
        applied = 0
        async for page in snapshot.scan():
            applied += await self._write_page([(None, rec) for rec in page])
        self.catalog_cursor = head
        self._synced.clear()
        return applied

    async def _write_page(self, changes: Sequence[tuple[str | None, CatalogRecord]]) -> int:
        """Apply log entries: content vectors off the lock, then chunk by chunk under
        short holds (the cursor moves with each chunk; entries without a log id, from
        the stored records, leave it), then the index on a copy.

        A chunk finds the catalog swapped (a bundle came in since the preparation): the
        rest of the page is prepared again against the new catalog.
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
                    async with self._housekeeping("catalog"):
                        change = write_chunk(scorer, page, i)
                        if change is None:
                            break
                        done += len(part)
                        self.catalog_cursor = changes[done - 1][0] or self.catalog_cursor
                        if self._late is not None:
                            self._late.extend(part)
                        self._index_debt.append(change)
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

    async def sync_trending(self, k: int | None = None) -> bool:
        """Re-read the trending items if they may have changed; returns whether it read."""
        token = await self._changed("trending")
        if token is _UNCHANGED:
            return False
        top = await self.trending_source(k or max(self.scorer.config.recommend.trending_pool, 1))
        swapped = False
        while not swapped:  # again only if a bundle came in meanwhile
            trending = prepare_trending(self.scorer.catalog, top)
            async with self._housekeeping("trending"):
                swapped = swap_trending(self.scorer, trending)
        self._synced["trending"] = token
        return True

    async def sync_popularity(self) -> bool:
        """Re-read the item counts if they may have changed; returns whether it read."""
        token = await self._changed("popularity")
        if token is _UNCHANGED:
            return False
        counts = await self.counts_source()
        swapped = False
        while not swapped:  # again only if a bundle came in meanwhile
            prepared = await asyncio.to_thread(prepare_popularity, self.scorer.catalog, counts)
            async with self._housekeeping("popularity"):
                swapped = swap_popularity(self.scorer, prepared)
        self._synced["popularity"] = token
        return True

    @contextlib.asynccontextmanager
    async def _housekeeping(self, duty: str) -> AsyncIterator[None]:
        """The scoring lock, for housekeeping: how long ``duty`` held it is recorded
        (``LiveStats.lock_hold_ms``), since scoring waits for all of it."""
        async with self._lock:
            start = time.perf_counter()
            try:
                yield
            finally:
                self.scorer.stats.lock_hold_ms.append((duty, (time.perf_counter() - start) * 1e3))

    async def _changed(self, name: str) -> Hashable:
        """The change token now, or ``_UNCHANGED`` if ``name`` last synced at this one.

        The token is read before the data, so a write landing in between is read again
        at the next tick rather than missed.
        """
        if self.change_source is None:
            return None
        token = await self.change_source()
        return _UNCHANGED if self._synced.get(name, _UNCHANGED) == token else token

    # --- the per-batch path ----------------------------------------------------------
    async def refresh(self, touched: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """Embeddings and lists for the users due now; the rest wait for their window.

        How far behind the batch is (for the adaptive window) is the wait of its oldest
        event since its record's Kafka timestamp.
        """
        stamps = [t.source_timestamp_ms for t in touched if t.source_timestamp_ms > 0]
        lag_ms = max(0, now_ms - min(stamps)) if stamps else 0
        due = self.debounce.admit(((t.user_id, t) for t in touched), now_ms, lag_ms)
        self.scorer.stats.deferred = len(self.debounce.pending)
        return await self.compute_async(due, now_ms)

    async def compute_async(self, users: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """The scorer in a worker thread, serialised with catalog and bundle changes.

        While nothing can be scored (no catalog yet, whether a bundle is loading or the
        worker serves model-free), the users are held and owed a list from
        ``due_pending`` once it can, rather than dropped.
        """
        if not users:
            return Refresh()
        if not self.scorer.ready:
            for user in users:
                self._held.pop(user.user_id, None)  # re-inserted: newest last
                self._held[user.user_id] = user
            while len(self._held) > HELD_MAX:
                del self._held[next(iter(self._held))]
            return Refresh()
        if self._held:  # a newer state supersedes a held one
            for user in users:
                self._held.pop(user.user_id, None)
        async with self._lock:
            return await asyncio.to_thread(self.scorer.score, users, now_ms)

    def due_pending(self, now_ms: int) -> list[TouchedUser]:
        """Users whose debounce window closed, and those held until the scorer was ready."""
        due = self.debounce.due(now_ms)
        if self._held and self.scorer.ready:
            named = {u.user_id for u in due}
            due += [u for user_id, u in self._held.items() if user_id not in named]
            self._held = {}
        return due

    def _first_load_pending(self) -> bool:
        return self.scorer.bundle is None and self._late is not None

    async def flush(self, publisher: ListPublisher, now_ms: int) -> list[TouchedUser]:
        """Score and publish the users now due (trailing edges, held users); returns those
        that got a list."""
        due = self.due_pending(now_ms)
        if not due:
            return []
        refresh = await self.compute_async(due, now_ms)
        await publisher.commit([], {u.user_id: u.partition for u in due}, refresh)
        return [u for u in due if u.user_id in refresh.lists]


def load_onnx_bundle(bundle_dir: Path, version: str, provider: str, threads: int = 1) -> Any:
    """The served bundle of ``version`` on ONNX Runtime."""
    from inference.onnx_session import LoadedBundle

    return LoadedBundle.load(bundle_dir, version, provider, threads)
