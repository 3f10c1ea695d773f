"""Prequential (test-then-train) evaluation of online recommenders over an event stream.

Events are replayed in time order. Before each interaction, every model's *current* list
for the user (the one it published after the user's previous micro-batch, or its
cold-start list if it has none yet) is scored against the item that came next; then the
event is applied to the shared state with the worker's own rules
(``streams.core.state_rules.apply_events``) and shown to every model. Lists are refreshed per
micro-batch, as the worker does: a batch closes when ``batch_ms`` of event time have
passed since its first event or it holds ``batch_events`` events. With ``fresh`` the
user's list is instead asked anew just before each scored event (the standard
test-then-train protocol).

An event is eligible when its user has at least one earlier event and has not touched
its item before (a funnel step or a re-rating: no seen-excluding recommender can get
it). A scored list never holds an item the user touched: the loop keeps every user's
full set of touched items (the worker's state keeps only the last ``seen_max``) and
drops them from a model's list before cutting it to ``k``. ``warmup_events`` (its own
knob, not tied to retraining) applies the first interactions without scoring them;
``score_every`` scores only every k-th eligible event; every event is applied.

The loop holds no client: models and the retrain hook are passed in, so the benchmark
(``bench/prequential.py``) and the unit tests drive the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inference.list_metrics import popularity_head
from schemas.events import CatalogEvent, InteractionEvent
from streams.core.ingest import TouchedUser
from streams.core.state_rules import UserState
from training.evaluation import metrics as m
from training.evaluation.stream_state import IntArray, StreamState

__all__ = [
    "Event",
    "IntArray",
    "OnlineModel",
    "PrequentialConfig",
    "PrequentialResult",
    "Retrain",
    "StreamState",
    "run_prequential",
    "score_list",
    "summarise",
    "unseen",
]

Event = InteractionEvent | CatalogEvent


class OnlineModel(Protocol):
    """A recommender driven by the prequential loop."""

    name: str

    def observe(self, event: InteractionEvent, before: UserState) -> None:
        """Learn from one applied event (``before``: the user's state before it)."""
        ...

    def refresh(self, users: Sequence[TouchedUser], now_ms: int) -> dict[str, IntArray]:
        """New lists (item codes, best first) for users touched by the closed batch."""
        ...

    def cold_list(self) -> IntArray:
        """The list served to a user with no list yet (asked only when one is needed)."""
        ...

    def swap_bundle(self, bundle: Any, now_ms: int) -> dict[str, IntArray]:
        """Serve a retrained bundle; returns lists to hold from now on (usually none)."""
        ...


@dataclass(frozen=True)
class PrequentialConfig:
    """Knobs of the loop.

    Attributes:
        k: Cut-off of HR@K/NDCG@K and length of the scored list.
        batch_ms: Event time a micro-batch spans at most (the worker's debounce window).
        batch_events: Events a micro-batch holds at most.
        score_every: Score every k-th eligible event (all events are applied).
        warmup_events: Interactions applied before scoring starts.
        retrain_every: Retrain every this many interactions (0: never).
        fresh: Ask each model for the user's list just before each scored event,
            instead of holding the one from the user's last micro-batch.
        cold_user_events: A user with at most this many earlier events is cold.
        cold_item_interactions: A target with fewer earlier interactions is cold.
        head_every: Recompute the popularity head every this many batches.
        announce_items: Log a catalog record for items first seen in interactions.
    """

    k: int = 10
    batch_ms: int = 200
    batch_events: int = 500
    score_every: int = 1
    warmup_events: int = 0
    retrain_every: int = 0
    fresh: bool = False
    cold_user_events: int = 5
    cold_item_interactions: int = 10
    head_every: int = 20
    announce_items: bool = False


@dataclass
class _Trace:
    ranks: list[int] = field(default_factory=list)
    lists: list[IntArray] = field(default_factory=list)
    tail: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def add(self, t0: float, c0: float) -> None:
        """Count the wall and process CPU time since ``t0`` / ``c0``."""
        self.seconds += time.perf_counter() - t0
        self.cpu_seconds += time.process_time() - c0


@dataclass(frozen=True)
class PrequentialResult:
    """Per-case outcomes of every model on the same scored events.

    Attributes:
        names: Model names, in the order of the other arrays' first axis.
        ranks: (M, C) 0-based rank of the target in each list (``k`` when absent).
        lists: (M, C, k) the scored lists, item codes, -1 padded.
        tail: (M, C) share of each list outside the popularity head at that time.
        cold_user, cold_item: (C,) segment flags of each case.
        seconds: (M,) time each model spent learning and refreshing lists.
        cpu_seconds: (M,) the process CPU time of the same (steadier on a shared host).
        item_ids: Item id of each code.
        counts: Interactions, applied, eligible, scored, duplicates, retrains.
    """

    names: list[str]
    ranks: np.ndarray
    lists: np.ndarray
    tail: np.ndarray
    cold_user: np.ndarray
    cold_item: np.ndarray
    seconds: np.ndarray
    item_ids: list[str]
    counts: dict[str, int]
    k: int
    cpu_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))


Retrain = Callable[[Sequence[Event]], Any]
"""Train on the events so far and return a loaded bundle (or None to keep the old one)."""


def unseen(lst: IntArray, touched: set[int], k: int) -> IntArray:
    """The first ``k`` codes of ``lst`` that are not in ``touched``."""
    if not touched:
        return lst[:k]
    return lst[[int(c) not in touched for c in lst]][:k]


def score_list(lst: IntArray, target: int, k: int) -> int:
    """0-based rank of ``target`` in the first ``k`` items of ``lst``; ``k`` when absent."""
    hit = np.flatnonzero(lst[:k] == target)
    return int(hit[0]) if hit.size else k


def run_prequential(
    events: Iterable[Event],
    models: Sequence[OnlineModel],
    config: PrequentialConfig | None = None,
    *,
    stream: StreamState | None = None,
    retrain: Retrain | None = None,
    progress: Callable[[int], None] | None = None,
) -> PrequentialResult:
    """Replay ``events`` through ``models``, scoring each eligible event before applying it.

    Args:
        events: Interactions and catalog events, in time order.
        models: Online models; they should read shared state from ``stream``.
        config: Batching, sampling, retraining and segment thresholds.
        stream: The shared state the models were built on (default: a fresh one).
        retrain: Called every ``retrain_every`` interactions with every event so far.
        progress: Called with the number of interactions applied, once per batch
            (and with every scored event when ``fresh``).
    """
    cfg = config or PrequentialConfig()
    st = stream or StreamState()
    k = cfg.k
    traces = [_Trace() for _ in models]
    held: list[dict[str, IntArray]] = [{} for _ in models]
    cold_user: list[bool] = []
    cold_item: list[bool] = []
    history: list[Event] = []
    counts = {"interactions": 0, "applied": 0, "duplicates": 0, "eligible": 0, "scored": 0}
    counts["retrains"] = 0
    batch_users: dict[str, InteractionEvent] = {}
    batch_start: int | None = None
    batch_len = 0
    n_batches = 0
    head = np.zeros(0, bool)

    def flush(now_ms: int) -> None:
        nonlocal batch_start, batch_len, n_batches, head
        touched = [
            TouchedUser(u, 0, st.states[u], None, ev, ev.ts) for u, ev in batch_users.items()
        ]
        # With fresh lists every scored user is asked just before the event, so a batch
        # only tells the models the time (syncs); its users are not asked twice.
        for i, model in enumerate(models):
            t0, c0 = time.perf_counter(), time.process_time()
            held[i].update(model.refresh([] if cfg.fresh else touched, now_ms))
            traces[i].add(t0, c0)
        if n_batches % cfg.head_every == 0:
            head = popularity_head(st.counts[: st.n_items])
        n_batches += 1
        batch_users.clear()
        batch_start, batch_len = None, 0
        if progress is not None:
            progress(counts["applied"])

    last_ts = 0
    retrain_due = False
    for event in events:
        history.append(event)
        if isinstance(event, CatalogEvent):
            if batch_len:
                flush(last_ts)
            st.apply_catalog(event)
            continue
        counts["interactions"] += 1
        if retrain_due and retrain is not None:  # due after the previous interaction
            retrain_due = False
            if batch_len:
                flush(last_ts)
            bundle = retrain(history[:-1])
            if bundle is not None:
                counts["retrains"] += 1
                for i, model in enumerate(models):
                    t0, c0 = time.perf_counter(), time.process_time()
                    held[i].update(model.swap_bundle(bundle, last_ts))
                    traces[i].add(t0, c0)
        if batch_start is not None and (
            event.ts - batch_start > cfg.batch_ms or batch_len >= cfg.batch_events
        ):
            flush(last_ts)
        last_ts = max(last_ts, event.ts)
        if cfg.announce_items:
            st.announce(event.item_id, event.ts)
        state = st.states.get(event.user_id) or UserState()
        if event.event_id in state.recent_event_ids:
            counts["duplicates"] += 1
            continue
        target = st.code_of(event.item_id)
        touched = st.touched.get(event.user_id, set())
        scoring = (
            counts["applied"] >= cfg.warmup_events and state.n_events > 0 and target not in touched
        )
        if scoring:
            counts["eligible"] += 1
            scoring = (counts["eligible"] - 1) % cfg.score_every == 0
        if scoring:
            counts["scored"] += 1
            cold_user.append(state.n_events <= cfg.cold_user_events)
            cold_item.append(int(st.counts[target]) < cfg.cold_item_interactions)
            if cfg.fresh:
                asked = [TouchedUser(event.user_id, 0, state, None, None, last_ts)]
                for i, model in enumerate(models):
                    t0, c0 = time.perf_counter(), time.process_time()
                    held[i].update(model.refresh(asked, last_ts))
                    traces[i].add(t0, c0)
            for i, model in enumerate(models):
                lst = held[i].get(event.user_id)
                if lst is None:  # asked only when needed: a model may build it on demand
                    t0, c0 = time.perf_counter(), time.process_time()
                    lst = model.cold_list()
                    traces[i].add(t0, c0)
                lst = unseen(lst, touched, k)
                tr = traces[i]
                tr.ranks.append(score_list(lst, target, k))
                tr.lists.append(np.pad(lst, (0, k - lst.shape[0]), constant_values=-1))
                # items newer than the last head computation are outside it
                in_head = head[lst[lst < head.shape[0]]]
                tr.tail.append(1.0 - in_head.sum() / lst.shape[0] if lst.size else 0.0)
        before = st.apply(event)
        assert before is not None
        counts["applied"] += 1
        for i, model in enumerate(models):
            t0, c0 = time.perf_counter(), time.process_time()
            model.observe(event, before)
            traces[i].add(t0, c0)
        batch_users[event.user_id] = event
        batch_start = event.ts if batch_start is None else batch_start
        batch_len += 1
        retrain_due = (
            retrain is not None
            and cfg.retrain_every > 0
            and counts["applied"] % cfg.retrain_every == 0
        )
    if batch_len:
        flush(last_ts)
    c = counts["scored"]
    return PrequentialResult(
        names=[mo.name for mo in models],
        ranks=np.array([t.ranks for t in traces], np.int64).reshape(len(models), c),
        lists=np.array([t.lists for t in traces], np.int64).reshape(len(models), c, k),
        tail=np.array([t.tail for t in traces], np.float64).reshape(len(models), c),
        cold_user=np.array(cold_user, bool),
        cold_item=np.array(cold_item, bool),
        seconds=np.array([t.seconds for t in traces]),
        cpu_seconds=np.array([t.cpu_seconds for t in traces]),
        item_ids=list(st.ids),
        counts=counts,
        k=k,
    )


def summarise(
    result: PrequentialResult, item_vectors: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """Per model: HR@K, NDCG@K overall and per segment, coverage, long-tail share, ILD.

    ``item_vectors`` (n_items, d), one row per item code, is the space in which intra-list
    diversity is measured (the same for every model); ILD uses the full-length lists only.
    """
    k = result.k
    out: dict[str, dict[str, float]] = {}
    n_items = len(result.item_ids)
    for i, name in enumerate(result.names):
        ranks = result.ranks[i]
        row: dict[str, float] = {
            f"hr@{k}": m.hit_rate_at_k(ranks, k),
            f"ndcg@{k}": m.ndcg_from_ranks(ranks, k),
            "cases": float(ranks.shape[0]),
        }
        for label, sel in (("cold_user", result.cold_user), ("cold_item", result.cold_item)):
            row[f"{label}/hr@{k}"] = m.hit_rate_at_k(ranks[sel], k)
            row[f"{label}/ndcg@{k}"] = m.ndcg_from_ranks(ranks[sel], k)
            row[f"{label}/cases"] = float(sel.sum())
        row["coverage"] = m.catalog_coverage(result.lists[i], n_items)
        row["long_tail_share"] = float(result.tail[i].mean()) if ranks.size else 0.0
        if item_vectors is not None:
            full = result.lists[i][(result.lists[i] >= 0).all(axis=1)]
            row["ild"] = m.intra_list_diversity(full, item_vectors) if full.size else 0.0
        row["seconds"] = float(result.seconds[i])
        row["cpu_seconds"] = float(result.cpu_seconds[i])
        out[name] = row
    return out
