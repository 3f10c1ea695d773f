"""The real-time path of a worker: fresh embeddings and lists for touched users.

Adapter around the pure pipeline (``inference.recommend``): it holds the served model
bundle (hot-swapped when ``CURRENT`` changes, refused and logged if bad), the online
catalog and its ANN index (kept in step by tailing the catalog log in Redis), the
trending list, and the debounce state. Per micro-batch it encodes the touched users'
histories in one ONNX call, searches candidates for all of them at once, re-ranks, and
returns embeddings and lists for the ingest processor to write with the state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from freshet.settings import Settings
from inference.ann_index import AnnIndex
from inference.bundle import BundleError, read_current
from inference.covisit import CovisitTable, follow_pairs, recent_rows
from inference.fold_in import event_weights, fold_in_events
from inference.history_inputs import encoder_inputs, flatten_histories
from inference.item_catalog import ItemCatalog
from inference.recommend import RecommendConfig, UserList, recommend
from schemas.events import EVENT_TYPES
from schemas.recommendation import Recommendation
from streams.catalog import CATALOG_LOG_PAGE, CatalogRecord
from streams.debounce import Debouncer
from streams.ingest import Refresh, TouchedUser
from streams.live_catalog import apply_records, build_index, update_index
from streams.state_rules import TYPE_CODES, UserState

log = logging.getLogger("freshet.live")

CONTENT_DIM = 64
SCORE_CHUNK = 128  # users scored per recommend() call
COVISIT_COUNTED_MAX = 1_000_000  # users whose counted events a process remembers
COVISIT_RECENT, COVISIT_DECAY = 10, 0.8  # history entries that query co-visitation


@dataclass
class LiveStats:
    """Counters of the real-time path (exported as metrics)."""

    lists: int = 0
    cold_start: int = 0
    model_free: int = 0
    deferred: int = 0
    encoder_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    recommend_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    bundle_swaps: int = 0
    bundle_refusals: int = 0

    def take_timings(self) -> tuple[list[float], list[float]]:
        """The recent per-batch timings (ms), emptied."""
        enc, rec = list(self.encoder_ms), list(self.recommend_ms)
        self.encoder_ms.clear()
        self.recommend_ms.clear()
        return enc, rec


class LiveRecommender:
    """Implements ``streams.ingest.Refresher`` for one worker process."""

    def __init__(
        self,
        settings: Settings,
        *,
        trending_source: Callable[[int], Awaitable[list[tuple[str, float]]]],
        counts_source: Callable[[], Awaitable[dict[str, int]]],
        catalog_log: Callable[[str], Awaitable[list[tuple[str, CatalogRecord]]]],
        bundle_loader: Callable[[Path, str, str], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.config = RecommendConfig.from_settings(settings)
        self.trending_source = trending_source
        self.counts_source = counts_source
        self.catalog_log = catalog_log
        self.bundle_loader = bundle_loader or functools.partial(
            _load_bundle, threads=settings.onnx_threads
        )
        self.clock = clock
        self.bundle: Any | None = None
        self.catalog = ItemCatalog([], np.zeros((0, CONTENT_DIM), np.float32))
        self.records: dict[str, CatalogRecord] = {}
        self.index: AnnIndex | None = None
        self.trending_rows = np.zeros(0, np.int64)
        self.trending_scores = np.zeros(0, np.float32)
        self.catalog_cursor = "0"
        self.debounce: Debouncer[TouchedUser] = Debouncer(settings.debounce_ms)
        self.refused_versions: set[str] = set()
        self.stats = LiveStats()
        # "What follows what", learnt from the touched users' histories (see design.md):
        # rebuilt from stored state after a restart, so nothing of it needs persisting.
        self.covisit = CovisitTable(settings.covisit_width)
        self._covisit_counted: dict[str, int] = {}  # user -> n_events already paired
        self._seed = 0
        # Compute runs in a worker thread (numpy, faiss, onnxruntime and the MMR kernel
        # release the GIL for their heavy parts), so the event loop keeps fetching and
        # producing meanwhile and the next micro-batch fills. Measured on the 100k shop:
        # computing on the loop instead halved the batches and the throughput, although
        # a thread's GIL holds make the loop's socket calls wait. The lock keeps catalog
        # and bundle changes from landing in the middle of a computation.
        self._lock = asyncio.Lock()
        self._late: list[CatalogRecord] | None = None  # catalog changes during a swap
        # Users touched while the first bundle loads, before any catalog: nothing to score
        # against yet, so they wait (newest state kept) for the first tick after it.
        self._held: dict[str, TouchedUser] = {}

    # --- model bundle ----------------------------------------------------------------
    @property
    def model_version(self) -> str | None:
        return None if self.bundle is None else str(self.bundle.version)

    async def check_bundle(self) -> bool:
        """Load the CURRENT bundle if it changed; a bad one is refused and logged."""
        bundle_dir = self.settings.bundle_dir
        try:
            version = read_current(bundle_dir)
        except (OSError, BundleError) as exc:
            log.warning("cannot read CURRENT in %s: %s", bundle_dir, exc)
            return False
        if version is None or version == self.model_version or version in self.refused_versions:
            return False
        if self._late is not None:  # a load is under way (start-up task and timer overlap)
            return False
        self._late = []  # from here on, catalog changes are also kept for the new bundle
        try:
            try:
                bundle = await asyncio.to_thread(
                    self.bundle_loader, bundle_dir, version, self.settings.onnx_provider
                )
            except Exception as exc:  # corrupt, incomplete or mismatched: keep serving
                self.refused_versions.add(version)
                self.stats.bundle_refusals += 1
                log.error(
                    "refused bundle %s: %s; still serving %s", version, exc, self.model_version
                )
                return False
            records = list(self.records.values())
            try:
                catalog, index = await asyncio.to_thread(self._prepare, bundle, records)
            except Exception as exc:  # e.g. its content tower fails on our catalog
                self.refused_versions.add(version)
                self.stats.bundle_refusals += 1
                log.error("refused bundle %s while preparing: %s", version, exc)
                return False
            async with self._lock:
                self._install(bundle, catalog, index, self._late)
        finally:
            self._late = None
        return True

    def swap_bundle(self, bundle: Any) -> None:
        """Serve ``bundle`` from the next batch on (synchronous form, for tools and tests)."""
        catalog, index = self._prepare(bundle, list(self.records.values()))
        self._install(bundle, catalog, index, [])

    def _prepare(
        self, bundle: Any, records: list[CatalogRecord]
    ) -> tuple[ItemCatalog, AnnIndex | None]:
        """The catalog and ANN index around ``bundle``'s items; slow, so run off the loop."""
        catalog = ItemCatalog(
            list(bundle.item_ids),
            bundle.item_vectors,
            popularity=np.asarray(bundle.item_popularity, np.float32),
        )
        apply_records(catalog, records, bundle)
        return catalog, build_index(catalog)

    def _install(
        self,
        bundle: Any,
        catalog: ItemCatalog,
        index: AnnIndex | None,
        late: list[CatalogRecord],
    ) -> None:
        """Switch to a prepared bundle, first applying catalog changes that came meanwhile."""
        if late:
            rows = apply_records(catalog, late, bundle)
            index = update_index(catalog, index, rows, late)
        # Trending rows point into the old catalog: carry them over by item id.
        old_ids = [self.catalog.ids[r] for r in self.trending_rows]
        carried = catalog.rows(old_ids)
        keep = carried >= 0
        self.trending_rows, self.trending_scores = carried[keep], self.trending_scores[keep]
        self.covisit = self.covisit.remap(catalog.rows(self.catalog.ids), catalog.size)
        self.bundle, self.catalog, self.index = bundle, catalog, index
        self.stats.bundle_swaps += 1
        log.info("serving bundle %s on %s", bundle.version, getattr(bundle, "provider", "?"))

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
        applied = 0
        while True:
            changes = await self.catalog_log(self.catalog_cursor)
            if not changes:
                return applied
            async with self._lock:
                applied += self._apply_changes(changes)
            if len(changes) < CATALOG_LOG_PAGE:
                return applied

    def _apply_changes(self, changes: list[tuple[str, CatalogRecord]]) -> int:
        self.catalog_cursor = changes[-1][0]
        records = [rec for _, rec in changes]
        for rec in records:
            self.records[rec.item_id] = rec
        if self._late is not None:
            self._late.extend(records)
        rows = apply_records(self.catalog, records, self.bundle)
        self.index = update_index(self.catalog, self.index, rows, records)
        return len(records)

    async def sync_trending(self, k: int | None = None) -> None:
        top = await self.trending_source(k or max(self.config.trending_pool, 1))
        async with self._lock:
            rows = self.catalog.rows([i for i, _ in top])
            keep = rows >= 0
            self.trending_rows = rows[keep]
            self.trending_scores = np.asarray([s for _, s in top], np.float32)[keep]

    async def sync_popularity(self) -> None:
        counts = await self.counts_source()
        async with self._lock:
            self.catalog.set_popularity(counts)

    # --- the per-batch path ----------------------------------------------------------
    async def refresh(self, touched: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """Embeddings and lists for the users due now; the rest wait for their window."""
        due = self.debounce.admit(((t.user_id, t) for t in touched), now_ms)
        self.stats.deferred = len(self.debounce.pending)
        return await self.compute_async(due, now_ms)

    async def compute_async(self, users: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """``compute`` in a worker thread, serialised with catalog and bundle changes.

        While the first bundle loads with no catalog yet, the users are held and owed a
        list from ``due_pending`` once it is in, rather than dropped.
        """
        if not users:
            return Refresh()
        if self._first_load_pending() and self.index is None:
            for user in users:
                self._held[user.user_id] = user
            return Refresh()
        if self._held:  # a newer state supersedes a held one
            for user in users:
                self._held.pop(user.user_id, None)
        async with self._lock:
            return await asyncio.to_thread(self.compute, users, now_ms)

    def due_pending(self, now_ms: int) -> list[TouchedUser]:
        """Users whose debounce window closed, and those held during the first load."""
        due = self.debounce.due(now_ms)
        if self._held and not self._first_load_pending() and self.index is not None:
            named = {u.user_id for u in due}
            due += [u for user_id, u in self._held.items() if user_id not in named]
            self._held = {}
        return due

    def _first_load_pending(self) -> bool:
        return self.bundle is None and self._late is not None

    def compute(self, users: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """Fresh embeddings and lists for ``users`` (pure compute over current holdings)."""
        refresh = Refresh()
        if not users or self.catalog.size == 0 or self.index is None:
            return refresh
        t0 = time.perf_counter()
        # Each history entry's catalog row, looked up once: the encoder, co-visitation
        # and the reasons all read them.
        seqs = self._history_rows([u.state for u in users])
        vecs, model_free = self._embed([u.state for u in users], seqs)
        t1 = time.perf_counter()
        table = self.catalog.table(now_ms)
        known = np.array(
            [u.state.n_events >= self.settings.cold_user_events for u in users], dtype=bool
        )
        ranker = None
        if self.bundle is not None and getattr(self.bundle.manifest, "has_ranker", False):
            from inference.ranker_features import make_ranker

            ranker = make_ranker(
                self.bundle.rank,
                lambda exc: log.error("ranker failed (%s); kept inner-product order", exc),
            )
        self._seed += 1
        covisit_on = self.settings.covisit_weight > 0
        if covisit_on:
            self._learn_covisit(users, seqs)
        # Score in chunks: the candidate tensors are (users, candidates, dim), and
        # candidates grow with each user's seen items, so a whole batch at once can take
        # hundreds of MB; chunks keep memory flat at no cost in speed.
        lists: list[UserList] = []
        for lo in range(0, len(users), SCORE_CHUNK):
            part = users[lo : lo + SCORE_CHUNK]
            cv = (
                self.covisit.score(
                    *recent_rows(seqs[lo : lo + SCORE_CHUNK], COVISIT_RECENT, COVISIT_DECAY),
                    self.settings.covisit_candidates,
                )
                if covisit_on
                else None
            )
            lists += recommend(
                vecs[lo : lo + SCORE_CHUNK],
                table,
                self.index,
                self.config,
                known=known[lo : lo + SCORE_CHUNK],
                model_free=model_free[lo : lo + SCORE_CHUNK],
                exclude=[self._rows(u.state.seen + u.state.purchased) for u in part],
                history=[r[r >= 0] for r in seqs[lo : lo + SCORE_CHUNK]],
                trending=self.trending_rows,
                trending_scores=self.trending_scores,
                ranker=ranker,
                seed=self._seed * 1_000_003 + lo,
                covisit=cv,
            )
        t2 = time.perf_counter()
        self.stats.encoder_ms.append((t1 - t0) * 1000)
        self.stats.recommend_ms.append((t2 - t1) * 1000)
        published = int(self.clock() * 1000)
        for user, vec, ul in zip(users, vecs, lists, strict=True):
            if np.isfinite(vec).all() and np.abs(vec).sum() > 0:
                refresh.embeddings[user.user_id] = vec.astype(np.float32).tobytes()
            refresh.lists[user.user_id] = self._message(user, ul, published)
        return refresh

    def _learn_covisit(self, users: Sequence[TouchedUser], seqs: Sequence[np.ndarray]) -> None:
        """Add the pairs that end in each user's events not yet counted by this process."""
        counted = self._covisit_counted
        new = [u.state.n_events - counted.get(u.user_id, 0) for u in users]
        src, dst, w = follow_pairs(seqs, new, self.settings.covisit_window)
        self.covisit.add(src, dst, w)
        for u in users:  # re-insert: the dict's order is then least recently touched first
            counted.pop(u.user_id, None)
            counted[u.user_id] = u.state.n_events
        # Bound memory: forget the users touched longest ago. One who comes back is
        # counted from scratch, which re-adds pairs of their history (approximate
        # counts are what the table keeps anyway).
        while len(counted) > COVISIT_COUNTED_MAX:
            del counted[next(iter(counted))]

    def _message(self, user: TouchedUser, ul: UserList, published_ms: int) -> Recommendation:
        self.stats.lists += 1
        if ul.strategy == "cold_start":
            self.stats.cold_start += 1
        elif ul.strategy == "model_free":
            self.stats.model_free += 1
        ev = user.last_event
        return Recommendation(
            user_id=user.user_id,
            items=ul.items,
            strategy=ul.strategy,
            model_version=self.model_version if ul.strategy == "personalised" else None,
            source_event_id=ev.event_id if ev else None,
            event_ts=ev.ts if ev else None,
            published_ts=published_ms,
        )

    def _rows(self, item_ids: Sequence[str]) -> np.ndarray:
        rows = self.catalog.rows(list(item_ids))
        return rows[rows >= 0]

    def _history_rows(self, states: Sequence[UserState]) -> list[np.ndarray]:
        """Per user, the catalog row of each history entry (-1 for unknown items)."""
        return [self.catalog.rows([h.item_id for h in s.history]) for s in states]

    def _embed(
        self, states: Sequence[UserState], seqs: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """User vectors (B, D) and which came from the model-free fold-in."""
        seqs = self._history_rows(states) if seqs is None else seqs
        b, d = len(states), self.catalog.dim
        if self.bundle is not None:
            try:
                vecs = self._encode(states, seqs)
                if vecs.shape != (b, d):  # a graph whose output width varies with input
                    raise ValueError(f"encoder gave shape {vecs.shape}, expected {(b, d)}")
                bad = ~np.isfinite(vecs).all(axis=1)
                if not bad.any():
                    return vecs, np.zeros(b, bool)
                log.warning("encoder gave non-finite vectors for %d users; folding in", bad.sum())
                folded = self._fold_in(states, seqs)
                return np.where(bad[:, None], folded, vecs), bad
            except Exception as exc:  # a faulty model must not stop the stream
                log.error("user encoder failed (%s); serving model-free lists", exc)
        folded = self._fold_in(states, seqs)
        return folded.reshape(b, d), np.ones(b, bool)

    def _encode(self, states: Sequence[UserState], seqs: Sequence[np.ndarray]) -> np.ndarray:
        bundle = self.bundle
        assert bundle is not None
        manifest = bundle.manifest
        codes: dict[str, int] = {t: manifest.type_id(t) for t in EVENT_TYPES}
        flat = flatten_histories([s.history for s in states], seqs, lambda t: codes.get(t, 0))
        vecs, types, gaps, mask = encoder_inputs(
            flat, len(states), bundle.history_len, self.catalog.vectors()
        )
        out = np.asarray(bundle.encode_users(vecs, types, gaps, mask), np.float32)
        out[mask.sum(axis=1) == 0] = 0.0
        return out

    def _fold_in(self, states: Sequence[UserState], seqs: Sequence[np.ndarray]) -> np.ndarray:
        """Decayed, event-weighted sum of the history's item vectors (model-free)."""
        b, d = len(states), self.catalog.dim
        flat = flatten_histories([s.history for s in states], seqs, lambda t: TYPE_CODES.get(t, 0))
        if not flat.row.size:
            return np.zeros((b, d), np.float32)
        vecs, _ = fold_in_events(
            np.zeros((b, d), np.float32),
            np.full(b, -np.inf),
            flat.user,
            self.catalog.vectors()[flat.row],
            event_weights([EVENT_TYPES[c] for c in flat.type.tolist()]),
            flat.ts,
            self.settings.trending_half_life_s,
        )
        return np.asarray(vecs, np.float32)


def _load_bundle(bundle_dir: Path, version: str, provider: str, threads: int = 1) -> Any:
    from inference.onnx_session import LoadedBundle

    return LoadedBundle.load(bundle_dir, version, provider, threads)
