"""The worker's holdings in memory, for offline replays: states, popularity, trending, catalog.

The prequential loop (``training.evaluation.prequential``) applies every event here with
the worker's own rules, and the models read what the worker would read from Redis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schemas.events import CatalogEvent, InteractionEvent
from streams.core.catalog import CatalogRecord, apply_catalog_event
from streams.core.state_rules import (
    StateRules,
    UserState,
    apply_events,
    needs_rebase,
    rebase_factor,
)
from training.evaluation import metrics as m

IntArray = np.ndarray


class StreamState:
    """What the worker keeps, in memory: user states, popularity, trending, catalog.

    Items get dense codes in order of first sight (catalog event or interaction), so
    every model's lists and every metric share one item numbering.
    """

    def __init__(self, rules: StateRules | None = None) -> None:
        self.rules = rules or StateRules()
        self.states: dict[str, UserState] = {}
        self.ids: list[str] = []
        self.code: dict[str, int] = {}
        self.counts = np.zeros(0, np.int64)
        self.trend = np.zeros(0, np.float64)
        self.removed = np.zeros(0, bool)
        self.trend_ref_ms: int | None = None
        self.records: dict[str, CatalogRecord] = {}
        self.catalog_log: list[CatalogRecord] = []
        self.touched: dict[str, set[int]] = {}
        # Codes whose count changed, in order (repeats kept): readers follow it with a
        # cursor and sync only what changed since (``count_changes``).
        self.count_log: list[int] = []

    def touched_codes(self, user_id: str) -> IntArray:
        """Codes of every item the user touched so far (not capped like ``seen``)."""
        return np.fromiter(self.touched.get(user_id, ()), np.int64)

    @property
    def n_items(self) -> int:
        return len(self.ids)

    def code_of(self, item_id: str) -> int:
        """The item's code, assigned on first sight."""
        c = self.code.get(item_id)
        if c is not None:
            return c
        c = len(self.ids)
        self.code[item_id] = c
        self.ids.append(item_id)
        if c >= self.counts.shape[0]:
            cap = max(64, 2 * self.counts.shape[0])
            self.counts = np.resize(self.counts, cap)
            self.counts[c:] = 0
            self.trend = np.resize(self.trend, cap)
            self.trend[c:] = 0.0
            self.removed = np.resize(self.removed, cap)
            self.removed[c:] = False
        return c

    def codes(self, item_ids: Sequence[str]) -> IntArray:
        return np.fromiter((self.code_of(i) for i in item_ids), np.int64, len(item_ids))

    def apply_catalog(self, event: CatalogEvent) -> CatalogRecord | None:
        """Apply a catalog event as the catalog agent does; the record goes to the log."""
        rec = apply_catalog_event(self.records.get(event.item_id), event)
        if rec is None:
            return None
        self._log(rec)
        return rec

    def announce(self, item_id: str, ts: int) -> None:
        """Log an item first seen in an interaction (files without catalog events)."""
        if item_id not in self.records:
            self._log(CatalogRecord(item_id, (), {}, "", ts, ts))

    def _log(self, rec: CatalogRecord) -> None:
        self.records[rec.item_id] = rec
        self.catalog_log.append(rec)
        code = self.code_of(rec.item_id)  # may grow the arrays
        self.removed[code] = rec.removed

    def apply(self, event: InteractionEvent) -> UserState | None:
        """Apply one event with the worker's rules; the state before it, None if a duplicate."""
        before = self.states.get(event.user_id) or UserState()
        hl = self.rules.trending_half_life_s
        if self.trend_ref_ms is None:
            self.trend_ref_ms = event.ts
        elif needs_rebase(event.ts, self.trend_ref_ms, hl):
            self.trend *= rebase_factor(self.trend_ref_ms, event.ts, hl)
            self.trend_ref_ms = event.ts
        outcome = apply_events({event.user_id: before}, [event], self.rules, self.trend_ref_ms)
        if outcome.duplicates:
            return None
        self.states[event.user_id] = outcome.states[event.user_id]
        self.touched.setdefault(event.user_id, set()).add(self.code_of(event.item_id))
        for item, n in outcome.popularity.counts.items():
            code = self.code_of(item)
            self.counts[code] += n
            self.count_log.append(code)
        for item, inc in outcome.popularity.trend.items():
            self.trend[self.code_of(item)] += inc
        return before

    def trending(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` items with the largest decayed sums, as the state store returns them."""
        n = self.n_items
        scores = np.where(self.removed[:n], 0.0, self.trend[:n])
        top = m.top_k(scores[None, :], min(k, n))[0] if n else np.zeros(0, np.int64)
        return [(self.ids[c], float(scores[c])) for c in top if scores[c] > 0]

    def count_map(self) -> dict[str, int]:
        nz = np.flatnonzero(self.counts[: self.n_items])
        return {self.ids[c]: int(self.counts[c]) for c in nz}

    def count_changes(self, since: int) -> tuple[dict[str, int], int]:
        """Current counts of the items logged in ``count_log[since:]``, and the new cursor.

        ``count_changes(0)`` is ``count_map()``; the worker's popularity sync sends the
        same deltas, so a sync costs what changed, not the catalog.
        """
        codes = np.unique(np.asarray(self.count_log[since:], np.int64))
        return {self.ids[c]: int(self.counts[c]) for c in codes.tolist()}, len(self.count_log)
