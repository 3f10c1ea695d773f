"""``freshet evaluate`` through the worker's ``LiveScorer``: its encoder path and its lists.

Two scorers for ``training.evaluation.protocols.evaluate`` share one ``LiveScorer``
serving the bundle over a catalog of the log's items (their content from the log's
catalog events; items the bundle does not know get content vectors, as a catalog event
gives them in the worker):

- ``LiveModelScorer`` ranks every item by inner product with the user vector that
  ``LiveScorer.embed`` makes from the history the worker would hold: the model alone.
- ``LiveListScorer`` asks ``LiveScorer.score`` for the list the worker would publish
  (candidates, co-visitation, blend, MMR and quotas), one case at a time in time order,
  after the training part taught it co-visitation. An item's score is its place in the
  list; items off the list rank last. Popularity and trending are the training part's
  counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from schemas.events import CatalogEvent
from streams.core.catalog import CatalogRecord, apply_catalog_event
from streams.core.ingest import TouchedUser
from streams.core.live_config import LiveConfig
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import HistoryEntry, UserState
from training.data import TYPE_VOCAB, InteractionLog, UserHistories
from training.evaluation.protocols import EvalCases

WARM_CHUNK = 128  # training users taught to the scorer per call


def catalog_records(log: InteractionLog, events: Iterable[object]) -> list[CatalogRecord]:
    """The catalog the worker would hold for the log's items: one record per item.

    An item's catalog events make its record; an item seen only in interactions gets an
    empty one from its first interaction, as ``freshet produce`` announces it.
    """
    records: dict[str, CatalogRecord] = {}
    for ev in events:
        if isinstance(ev, CatalogEvent):
            rec = apply_catalog_event(records.get(ev.item_id), ev)
            if rec is not None:
                records[ev.item_id] = rec
    for code, item in enumerate(log.item_ids):
        if item not in records:
            ts = int(log.item_first_ts[code])
            records[item] = CatalogRecord(item, (), {}, "", ts, ts)
    return list(records.values())


def live_for_log(
    bundle: object,
    log: InteractionLog,
    events: Iterable[object],
    train: np.ndarray,
    config: LiveConfig | None = None,
    *,
    seed: int = 0,
) -> LiveScorer:
    """A ``LiveScorer`` serving ``bundle`` over the log's items, with training counts."""
    live = LiveScorer(config, seed=seed)
    live.apply_catalog(catalog_records(log, events))
    live.swap_bundle(bundle)
    counts = np.bincount(log.items[train], minlength=log.n_items)
    live.set_popularity({log.item_ids[c]: int(counts[c]) for c in np.flatnonzero(counts)})
    top = np.argsort(-counts, kind="stable")[: max(live.config.recommend.trending_pool, 1)]
    live.set_trending([(log.item_ids[c], float(counts[c])) for c in top if counts[c] > 0])
    return live


class _CaseStates:
    """The user state the worker would hold just before each event of a log."""

    def __init__(self, log: InteractionLog, history_len: int) -> None:
        self.log = log
        self.hist = UserHistories.of(log)
        self.history_len = history_len

    def states(
        self, events: np.ndarray, seen: Sequence[np.ndarray] | None = None, *, after: bool = False
    ) -> list[UserState]:
        """Each user's state before each of ``events`` (``after``: with the event applied)."""
        log = self.log
        events = np.asarray(events, np.int64)
        if after:
            prev = np.concatenate(
                [self.hist.previous(events, self.history_len - 1), events[:, None]], axis=1
            )
        else:
            prev = self.hist.previous(events, self.history_len)
        none = np.zeros(0, np.int64)
        out = []
        for i, past in enumerate(prev):
            past = past[past >= 0]
            history = tuple(
                HistoryEntry(log.item_ids[it], TYPE_VOCAB[ty], int(ts))
                for it, ty, ts in zip(
                    log.items[past].tolist(),
                    log.types[past].tolist(),
                    log.ts[past].tolist(),
                    strict=True,
                )
            )
            out.append(
                UserState(
                    history=history,
                    seen=tuple(
                        log.item_ids[c] for c in (none if seen is None else seen[i]).tolist()
                    ),
                    last_ts=history[-1].ts if history else 0,
                    n_events=int(self.hist.pos_in_user[events[i]]) + after,
                )
            )
        return out


def _seen_of(cases: EvalCases) -> list[np.ndarray]:
    order = np.argsort(cases.seen_rows, kind="stable")
    rows, items = cases.seen_rows[order], cases.seen_items[order]
    bounds = np.searchsorted(rows, np.arange(len(cases) + 1))
    return [items[bounds[i] : bounds[i + 1]] for i in range(len(cases))]


class LiveModelScorer:
    """Full ranking by the served model, users embedded as the worker embeds them."""

    def __init__(self, live: LiveScorer, log: InteractionLog, history_len: int) -> None:
        self.name = f"bundle {live.model_version}"
        self.live = live
        self.cases = _CaseStates(log, history_len)
        self.vectors = live.catalog.vectors()[live.catalog.rows(log.item_ids)]

    def score(self, cases: EvalCases) -> np.ndarray:
        vecs, _ = self.live.embed(self.cases.states(cases.events))
        return np.asarray(vecs @ self.vectors.T, np.float32)


class LiveListScorer:
    """The published list of each case, from ``LiveScorer.score``; off-list items rank last."""

    def __init__(
        self, live: LiveScorer, log: InteractionLog, train: np.ndarray, history_len: int
    ) -> None:
        self.name = "freshet lists"
        self.live = live
        self.log = log
        self.cases = _CaseStates(log, history_len)
        self.code = {item: c for c, item in enumerate(log.item_ids)}
        self._teach(np.asarray(train, np.int64))

    def _teach(self, train: np.ndarray) -> None:
        """Each user's state at the end of the training part: co-visitation learns it."""
        log = self.log
        last: dict[int, int] = {}
        for e in train[np.argsort(log.ts[train], kind="stable")].tolist():
            last[int(log.users[e])] = e
        events = np.fromiter(last.values(), np.int64, len(last))
        for lo in range(0, events.size, WARM_CHUNK):
            chunk = events[lo : lo + WARM_CHUNK]
            states = self.cases.states(chunk, after=True)
            users = [
                TouchedUser(log.user_ids[log.users[e]], 0, s, None, None, 0)
                for s, e in zip(states, chunk.tolist(), strict=True)
            ]
            self.live.score(users, int(log.ts[chunk].max()))

    def score(self, cases: EvalCases) -> np.ndarray:
        log = self.log
        out = np.full((len(cases), log.n_items), -np.inf, np.float32)
        states = self.cases.states(cases.events, _seen_of(cases))
        for i in np.argsort(log.ts[cases.events], kind="stable").tolist():
            e = int(cases.events[i])
            user = TouchedUser(log.user_ids[log.users[e]], 0, states[i], None, None, 0)
            now = states[i].last_ts or int(log.ts[e])
            rec = self.live.score([user], now).lists.get(user.user_id)
            codes = [self.code[it.item_id] for it in rec.items] if rec is not None else []
            out[i, codes] = np.arange(len(codes), 0, -1, dtype=np.float32)
        return out
