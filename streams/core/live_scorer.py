"""The real-time scorer: fresh embeddings and lists for touched users, synchronous.

It holds what scoring reads: the served model bundle, the online catalog and its ANN
index, the trending list and the co-visitation table. Per call it encodes the users'
histories in one ONNX call (or folds them in, model-free), searches candidates for all
of them at once, re-ranks (``inference.recommend``) and returns embeddings and lists.

No I/O and no event loop: the worker's async shell (``streams.runtime.live_recommender``)
feeds it from Redis and a bundle folder, while offline evaluation and the benchmarks
call it directly. Everything it depends on is in ``LiveConfig`` and its ``seed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np

from inference.ann_index import AnnIndex, RepeatedSearch
from inference.covisit import (
    CovisitTable,
    follow_pairs,
    recent_rows,
)
from inference.covisit_top import warm_up as covisit_top_warm_up
from inference.covisit_vectors import NewItemVectors
from inference.covisit_vectors import warm_up as covisit_vectors_warm_up
from inference.damping_choice import DampingChooser, remember_candidates
from inference.fold_in import warm_up as fold_in_warm_up
from inference.history_inputs import warm_up as history_warm_up
from inference.item_catalog import ItemCatalog
from inference.item_catalog import warm_up as catalog_warm_up
from inference.recommend import UserList, recommend
from schemas.events import EVENT_TYPES
from schemas.recommendation import Recommendation
from streams.core.catalog import CatalogRecord
from streams.core.ingest import Refresh, TouchedUser
from streams.core.list_message import list_message
from streams.core.live_catalog import (
    apply_records,
    build_index,
    bundle_catalog,
    bundle_index_folder,
    update_index,
)
from streams.core.live_config import LiveConfig, LiveStats
from streams.core.seen_rows import SeenRows
from streams.core.state_rules import UserState
from streams.core.user_vectors import BoundEncoder, bound_encoder, history_rows, user_vectors

log = logging.getLogger("freshet.live")

# A bundle, its encoder type codes, ranker hook and bound encoder run (``bundle_parts``).
BundleParts = tuple[Any, dict[str, int], Any, BoundEncoder | None]

CONTENT_DIM = 64
SCORE_CHUNK = 128  # users scored per recommend() call
COVISIT_COUNTED_MAX = 1_000_000  # users whose counted events a process remembers
COVISIT_RECENT, COVISIT_DECAY = 10, 0.8  # history entries that query co-visitation


class LiveScorer:
    """Scores micro-batches of touched users against the current catalog and bundle.

    Args:
        config: Scoring knobs.
        seed: Base of the exploration draws; the same seed and inputs give the same lists.
    """

    def __init__(self, config: LiveConfig | None = None, *, seed: int = 0) -> None:
        self.config = config or LiveConfig()
        self.seed = seed
        self.bundle: Any | None = None
        self.catalog = ItemCatalog([], np.zeros((0, CONTENT_DIM), np.float32))
        self.records: MutableMapping[str, CatalogRecord] = {}  # or StoredRecords
        self.index: AnnIndex | None = None
        self.trending_rows = np.zeros(0, np.int64)
        self.trending_scores = np.zeros(0, np.float32)
        # What ``set_trending`` was last given, and for which catalog and size.
        self._trending_from: tuple[tuple[ItemCatalog, int], list[tuple[str, float]]] | None = None
        self.stats = LiveStats()
        # "What follows what", learnt from the touched users' histories (see design.md):
        # rebuilt from stored state after a restart, so nothing of it needs persisting.
        self.covisit = CovisitTable(
            self.config.covisit_width,
            self.config.covisit_damping,
            self.config.covisit_half_life_s * 1000.0,
        )
        self._covisit_counted: dict[str, int] = {}  # user -> n_events already paired
        self._calls = 0
        # The encoder's type codes, the ranker hook and the bound batch-of-one encoder
        # run, built once per bundle.
        self._per_bundle: BundleParts | None = None
        # While a bundle swap re-numbers the co-visitation table off the scoring lock
        # (``streams.core.copy_on_write``), the table is frozen: pairs learnt meanwhile
        # wait here, in the numbering they were learnt in, and are added after the swap.
        self.covisit_frozen = False
        self.covisit_backlog: list[tuple[Any, ...]] = []
        # The damping served, chosen by how the stream's next events fall (optional).
        choices = self.config.covisit_damping_choices
        self.damping_chooser = (
            DampingChooser(choices, default=self.config.covisit_damping) if choices else None
        )
        # Vectors of the items the bundle lacks, from their co-visitation neighbours.
        self.new_item_vectors = NewItemVectors(np.zeros(0, bool))
        self.seen_rows = SeenRows()  # the users' seen items' rows, kept between calls
        fold_in_warm_up()  # compiled loops, before a scoring call needs them
        history_warm_up()
        covisit_vectors_warm_up()
        covisit_top_warm_up()
        catalog_warm_up()

    @property
    def model_version(self) -> str | None:
        return None if self.bundle is None else str(self.bundle.version)

    @property
    def ready(self) -> bool:
        """Whether there is a catalog to score against (model-free or not)."""
        return self.catalog.size > 0 and self.index is not None

    # --- bundle ----------------------------------------------------------------------
    def prepare(
        self, bundle: Any, records: Sequence[CatalogRecord] | None = None
    ) -> tuple[ItemCatalog, AnnIndex | None]:
        """The catalog and ANN index around ``bundle``'s items (slow; touches no state)."""
        catalog = bundle_catalog(bundle)
        known = list(self.records.values()) if records is None else records
        apply_records(catalog, known, bundle)
        return catalog, build_index(catalog, bundle_index_folder(bundle))

    def install(
        self,
        bundle: Any,
        catalog: ItemCatalog,
        index: AnnIndex | None,
        late: Sequence[CatalogRecord] = (),
        covisit: CovisitTable | None = None,
        parts: BundleParts | None = None,
    ) -> None:
        """Switch to a prepared bundle, first applying catalog changes that came meanwhile.

        ``covisit``: the co-visitation table already re-numbered for ``catalog`` (off the
        scoring lock, ``streams.core.copy_on_write``); without it, it is re-numbered here.
        ``parts``: ``bundle_parts(bundle)``, built off the lock; without them, the first
        scoring call builds them.
        """
        if parts is not None and parts[0] is bundle:
            self._per_bundle = parts
        if late:
            rows = apply_records(catalog, late, bundle)
            index = update_index(catalog, index, rows)
        # Trending rows point into the old catalog: carry them over by item id.
        old_ids = [self.catalog.ids[r] for r in self.trending_rows]
        carried = catalog.rows(old_ids)
        keep = carried >= 0
        self.trending_rows, self.trending_scores = carried[keep], self.trending_scores[keep]
        if covisit is None:
            covisit = self.covisit.remap(catalog.rows(self.catalog.ids), catalog.size)
        self.covisit = covisit
        self.bundle, self.catalog, self.index = bundle, catalog, index
        self.seen_rows.clear()  # the new catalog numbers its rows afresh
        self.new_item_vectors = NewItemVectors(np.asarray(bundle.item_popularity) > 0)
        if self.damping_chooser is not None:
            self.damping_chooser.clear_pending()
        self.stats.bundle_swaps += 1
        log.info("serving bundle %s on %s", bundle.version, getattr(bundle, "provider", "?"))

    def swap_bundle(self, bundle: Any) -> None:
        """Serve ``bundle`` from the next call on."""
        catalog, index = self.prepare(bundle)
        self.install(bundle, catalog, index)

    # --- catalog, popularity, trending ---------------------------------------------
    def apply_catalog(self, records: Sequence[CatalogRecord]) -> int:
        """Apply catalog records (new, changed, removed items); returns how many."""
        for rec in records:
            self.records[rec.item_id] = rec
        rows = apply_records(self.catalog, records, self.bundle)
        self.new_item_vectors.forget(rows.live)
        self.index = update_index(self.catalog, self.index, rows)
        return len(records)

    def set_trending(self, top: Sequence[tuple[str, float]]) -> None:
        """The trending items, best first, with their scores; unknown items are skipped.

        The same list against the same catalog rows changes nothing (no lookups).
        """
        held = ((self.catalog, self.catalog.size), list(top))
        if held == self._trending_from:
            return
        self._trending_from = held
        rows = self.catalog.rows([i for i, _ in top])
        keep = rows >= 0
        self.trending_rows = rows[keep]
        self.trending_scores = np.asarray([s for _, s in top], np.float32)[keep]

    def set_popularity(self, counts: dict[str, int]) -> None:
        self.catalog.set_popularity(counts)

    # --- scoring ---------------------------------------------------------------------
    def score(self, users: Sequence[TouchedUser], now_ms: int) -> Refresh:
        """Fresh embeddings and lists for ``users`` (pure compute over current holdings).

        The lists carry ``now_ms`` as ``published_ts``; the worker's publisher stamps
        the real publish time once, before it stores and sends them.
        """
        refresh = Refresh()
        if not users or not self.ready:
            return refresh
        assert self.index is not None
        t0 = time.perf_counter()
        # The users' states, ids and event counts, gathered once: each is read by
        # several steps below (a batch of one pays per pass, not per user).
        states = [u.state for u in users]
        user_ids = [u.user_id for u in users]
        n_events = [s.n_events for s in states]
        parts = None if self.bundle is None else self._bundle_parts()
        # Each history entry's catalog row, looked up once: the encoder, co-visitation
        # and the reasons all read them.
        seqs = self.history_rows(states)
        vecs, model_free = self.embed(states, seqs, parts)
        t1 = time.perf_counter()
        table = self.catalog.table(now_ms)
        cold_below = self.config.cold_user_events
        known = np.array([n >= cold_below for n in n_events], bool)
        ranker = None if parts is None else parts[1]
        self._calls += 1
        covisit_on = self.config.recommend.covisit_weight > 0
        chooser = self.damping_chooser if covisit_on else None
        index, n_ann = self.index, self.config.recommend.candidates
        if covisit_on:
            self._learn_covisit(users, seqs, now_ms)
        if chooser is not None:
            chooser.credit(user_ids, n_events, seqs)
            self.covisit.damping = chooser.served()
        # Score in chunks: the candidate tensors are (users, candidates, dim), and
        # candidates grow with each user's seen items, so a whole batch at once can take
        # hundreds of MB; chunks keep memory flat at no cost in speed.
        lists: list[UserList] = []
        for lo in range(0, len(users), SCORE_CHUNK):
            hi = lo + SCORE_CHUNK
            part = users[lo:hi]
            cv, query, sampled, scored = None, None, None, None
            if covisit_on:
                query = recent_rows(seqs[lo:hi], COVISIT_RECENT, COVISIT_DECAY)
                k_cv = self.config.covisit_candidates
                if chooser is not None:
                    sampled = chooser.sample(len(part))
                if chooser is not None and sampled is not None and sampled.all():
                    # every user of the chunk is remembered: all the chooser's dampings
                    # in one pass over the followers, the served one among them
                    each = self.covisit.score_each(*query, k_cv, chooser.choices)
                    by_damping = dict(zip(chooser.choices, each, strict=True))
                    scored = {d: rows for d, (rows, _) in by_damping.items()}
                    cv = by_damping.get(self.covisit.damping)
                if cv is None:
                    cv = self.covisit.score(*query, k_cv)
            # the chooser asks for the same users' nearest items as the candidates did
            searcher = RepeatedSearch(index)
            # seen then purchased items' rows, looked up once: the exclusions and the
            # chooser's seen items (a prefix) both read them
            looked = [self._seen_purchased(u.state, u.user_id) for u in part]
            lists += recommend(
                vecs[lo:hi],
                table,
                searcher,
                self.config.recommend,
                known=known[lo:hi],
                model_free=model_free[lo:hi],
                exclude=[_known(r) for r in looked],
                history=[r[r >= 0] for r in seqs[lo:hi]],
                trending=self.trending_rows,
                trending_scores=self.trending_scores,
                ranker=ranker,
                seed=self.seed * 2**40 + self._calls * 1_000_003 + lo,
                covisit=cv,
            )
            if chooser is not None and cv is not None and query is not None:
                remember_candidates(
                    chooser,
                    self.covisit,
                    query,
                    cv[0],
                    user_ids[lo:hi],
                    n_events[lo:hi],
                    lambda i: _known(looked[i][: len(part[i].state.seen)]),  # noqa: B023
                    self.config.covisit_candidates,
                    lambda pick: searcher.search(vecs[lo:hi][pick], n_ann)[0],  # noqa: B023
                    self.trending_rows[: self.config.recommend.list_size // 2],
                    sampled=sampled,
                    scored=scored,
                )
        t2 = time.perf_counter()
        self.stats.encoder_ms.append((t1 - t0) * 1000)
        self.stats.recommend_ms.append((t2 - t1) * 1000)
        # A user's vector is stored when finite and not all zeros (a cold user's), the
        # batch checked in one pass; ``user_vectors`` gives float32 rows.
        stored = (np.isfinite(vecs).all(axis=1) & (vecs != 0).any(axis=1)).tolist()
        for user, vec, ul, keep in zip(users, vecs, lists, stored, strict=True):
            if keep:
                refresh.embeddings[user.user_id] = vec.tobytes()
            refresh.lists[user.user_id] = self._message(user, ul, now_ms)
        return refresh

    def _learn_covisit(
        self, users: Sequence[TouchedUser], seqs: Sequence[np.ndarray], now_ms: int
    ) -> None:
        """Add the pairs that end in each user's events not yet counted by this scorer."""
        counted = self._covisit_counted
        new = [u.state.n_events - counted.get(u.user_id, 0) for u in users]
        cfg = self.config
        src, dst, w = follow_pairs(
            seqs,
            new,
            cfg.covisit_window,
            backward=cfg.covisit_backward,
            flatness=cfg.covisit_flatness,
        )
        self._add_pairs(src, dst, w, now_ms)
        for u in users:  # re-insert: the dict's order is then least recently touched first
            counted.pop(u.user_id, None)
            counted[u.user_id] = u.state.n_events
        # Bound memory: forget the users touched longest ago. One who comes back is
        # counted from scratch, which re-adds pairs of their history (approximate
        # counts are what the table keeps anyway).
        while len(counted) > COVISIT_COUNTED_MAX:
            del counted[next(iter(counted))]

    def _add_pairs(self, *pairs: Any) -> None:
        """``CovisitTable.add(*pairs)``, or later if the table is frozen (see ``__init__``)."""
        self.covisit_backlog.append(pairs)
        if self.covisit_frozen:
            return
        for waiting in self.covisit_backlog:
            self.covisit.add(*waiting)
            if self.config.covisit_vectors and self.bundle is not None:
                self._place_new_items(waiting[0])
        self.covisit_backlog.clear()

    def _place_new_items(self, changed: np.ndarray) -> None:
        """Re-place the items the bundle learnt from no interaction whose table rows
        ``changed``.

        The catalog's vectors (which the encoder and the model's scores read) follow;
        the ANN index keeps their content vectors until a bundle includes them: they
        reach lists as co-visitation and new-item candidates meanwhile.
        """
        rows, vecs = self.new_item_vectors.place(self.covisit, self.catalog.vectors(), changed)
        if rows.size:
            self.catalog.place_vectors(rows, vecs)

    def _message(self, user: TouchedUser, ul: UserList, published_ms: int) -> Recommendation:
        self.stats.lists += 1
        if ul.strategy == "cold_start":
            self.stats.cold_start += 1
        elif ul.strategy == "model_free":
            self.stats.model_free += 1
        version = self.model_version if ul.strategy == "personalised" else None
        return list_message(user, ul, published_ms, version)

    def _seen_purchased(self, state: UserState, user_id: str | None = None) -> np.ndarray:
        """Rows of ``state``'s seen then purchased items, -1 for unknown ones (so the
        seen items' rows are the first ``len(state.seen)``); a ``user_id``'s seen rows
        are kept between calls (``SeenRows``). Not to be written into."""
        if user_id is None:
            return self.catalog.rows(state.seen + state.purchased)
        seen = self.seen_rows.rows(self.catalog, user_id, state.seen)
        if not state.purchased:
            return seen
        return np.concatenate([seen, self.catalog.rows(state.purchased)])

    def history_rows(self, states: Sequence[UserState]) -> list[np.ndarray]:
        """Per user, the catalog row of each history entry (-1 for unknown items)."""
        return history_rows(self.catalog, states)

    def embed(
        self,
        states: Sequence[UserState],
        seqs: Sequence[np.ndarray] | None = None,
        parts: tuple[dict[str, int], Any, BoundEncoder | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """User vectors (B, D) float32 and which came from the model-free fold-in.

        ``parts``: ``_bundle_parts()``, where the caller already holds them.
        """
        seqs = self.history_rows(states) if seqs is None else seqs
        if parts is None and self.bundle is not None:
            parts = self._bundle_parts()
        codes, _, bound = (None, None, None) if parts is None else parts
        return user_vectors(
            self.catalog, states, seqs, self.config.fold_in_half_life_s, self.bundle, codes, bound
        )

    def _bundle_parts(self) -> tuple[dict[str, int], Any, BoundEncoder | None]:
        """The current bundle's encoder type codes, ranker hook (None: no ranker) and bound
        batch-of-one encoder run (None: the plain run); built here only if the swap did
        not bring them (``bundle_parts``)."""
        if self._per_bundle is None or self._per_bundle[0] is not self.bundle:
            self._per_bundle = bundle_parts(self.bundle)
        return self._per_bundle[1], self._per_bundle[2], self._per_bundle[3]


def bundle_parts(bundle: Any) -> BundleParts:
    """What scoring needs per bundle: ``bundle`` itself, its encoder type codes, ranker
    hook and bound encoder run. The bound run costs a few ORT runs (~2-3 ms): a swap
    builds it off the scoring lock and hands it to ``install``."""
    manifest = bundle.manifest
    ranker = None
    if getattr(manifest, "has_ranker", False):
        from inference.ranker_features import make_ranker

        ranker = make_ranker(
            bundle.rank,
            lambda exc: log.error("ranker failed (%s); kept inner-product order", exc),
        )
    codes: dict[str, int] = {t: manifest.type_id(t) for t in EVENT_TYPES}
    return (bundle, codes, ranker, bound_encoder(bundle))


def _known(rows: np.ndarray) -> np.ndarray:
    """``rows`` without the unknown items' -1."""
    return rows[rows >= 0]
