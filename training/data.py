"""The interaction log as int-coded arrays, leak-free splits, and per-event histories.

Everything here is pure: events come in as any iterable of contract messages (a file
reader, a Kafka topic, a simulator), arrays come out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from inference.bundle import PAD_TYPE
from inference.item_features import HashingConfig, hash_item_features
from schemas.event_weights import TASTE_WEIGHTS, taste_weight
from schemas.events import EVENT_TYPES, CatalogEvent, InteractionEvent

TYPE_VOCAB: Final = (PAD_TYPE, *EVENT_TYPES)
"""Event-type vocabulary of the user encoder; code 0 is padding."""

DEFAULT_TYPE_WEIGHTS: Final[Mapping[str, float]] = TASTE_WEIGHTS
"""Weight of an event by type: the trending sums' (``schemas.event_weights``)."""


def event_weight(event: InteractionEvent, weights: Mapping[str, float]) -> float:
    """How much one event says about the user's taste; a rating weighs its value."""
    return taste_weight(event.type, event.value, weights)


@dataclass(frozen=True)
class InteractionLog:
    """Interactions as parallel arrays, sorted by time, with item content rows.

    Attributes:
        user_ids: Code -> user id.
        item_ids: Code -> item id (every item seen in interactions or the catalog).
        users: (E,) int64 user codes.
        items: (E,) int64 item codes.
        types: (E,) int64 codes into ``TYPE_VOCAB`` (1..).
        ts: (E,) int64 event times, epoch ms, non-decreasing.
        weights: (E,) float32 event weights.
        item_features: (I, F) int64 hashed content rows (zeros for unknown content).
        item_first_ts: (I,) int64 first time the item appeared (catalog or interaction).
        item_removed: (I,) bool, the last catalog op for the item was ``remove``.
        hashing: The hashing config the content rows were built with.
    """

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    types: np.ndarray
    ts: np.ndarray
    weights: np.ndarray
    item_features: np.ndarray
    item_first_ts: np.ndarray
    item_removed: np.ndarray
    hashing: HashingConfig

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_events(self) -> int:
        return int(self.users.shape[0])

    def popularity(self, events: np.ndarray | None = None) -> np.ndarray:
        """Weighted interaction count per item over ``events`` (default all): float32 (I,)."""
        sel = slice(None) if events is None else events
        return np.bincount(
            self.items[sel], weights=self.weights[sel], minlength=self.n_items
        ).astype(np.float32)


def build_log(
    events: Iterable[InteractionEvent | CatalogEvent],
    hashing: HashingConfig | None = None,
    weights: Mapping[str, float] = DEFAULT_TYPE_WEIGHTS,
) -> InteractionLog:
    """Code the events into an ``InteractionLog``; a repeated ``event_id`` counts once.

    Catalog content is the latest upsert of each item by event time.
    """
    hashing = hashing or HashingConfig()
    user_code: dict[str, int] = {}
    item_code: dict[str, int] = {}
    seen_events: set[str] = set()
    users: list[int] = []
    items: list[int] = []
    types: list[int] = []
    ts: list[int] = []
    wts: list[float] = []
    first_ts: dict[int, int] = {}
    catalog: dict[int, CatalogEvent] = {}
    type_code = {t: i for i, t in enumerate(TYPE_VOCAB)}
    for ev in events:
        if ev.event_id in seen_events:
            continue
        seen_events.add(ev.event_id)
        code = item_code.setdefault(ev.item_id, len(item_code))
        first_ts[code] = min(first_ts.get(code, ev.ts), ev.ts)
        if isinstance(ev, CatalogEvent):
            prev = catalog.get(code)
            if prev is None or ev.ts >= prev.ts:
                catalog[code] = ev
            continue
        users.append(user_code.setdefault(ev.user_id, len(user_code)))
        items.append(code)
        types.append(type_code[ev.type])
        ts.append(ev.ts)
        wts.append(event_weight(ev, weights))
    order = np.argsort(np.asarray(ts, dtype=np.int64), kind="stable")
    n_items = len(item_code)
    features = np.zeros((n_items, hashing.max_features), dtype=np.int64)
    removed = np.zeros(n_items, dtype=bool)
    for code, cev in catalog.items():
        if cev.op == "remove":
            removed[code] = True
        else:
            features[code] = hash_item_features(cev.categories, cev.attributes, cev.text, hashing)
    return InteractionLog(
        user_ids=list(user_code),
        item_ids=list(item_code),
        users=np.asarray(users, dtype=np.int64)[order],
        items=np.asarray(items, dtype=np.int64)[order],
        types=np.asarray(types, dtype=np.int64)[order],
        ts=np.asarray(ts, dtype=np.int64)[order],
        weights=np.asarray(wts, dtype=np.float32)[order],
        item_features=features,
        item_first_ts=np.array([first_ts[i] for i in range(n_items)], dtype=np.int64),
        item_removed=removed,
        hashing=hashing,
    )


# --- Splits -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Event indices of the train, validation and test parts of a log.

    Attributes:
        protocol: ``time`` or ``loo``.
        train, valid, test: Sorted event indices into the log.
        valid_start_ts, test_start_ts: The cut times of a time split (None for ``loo``).
    """

    protocol: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_start_ts: int | None = None
    test_start_ts: int | None = None


def time_split(log: InteractionLog, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Cut the log at two times; every validation event is later than every train event.

    The cuts fall at the event-count quantiles; events sharing the cut timestamp go to
    the later part, so nothing in train is at or after the first validation time.
    """
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError("valid_frac and test_frac must be in (0, 1) and sum below 1")
    n = log.n_events
    if n < 3:
        raise ValueError(f"need at least 3 events to split, got {n}")
    t_valid = int(log.ts[int(n * (1 - valid_frac - test_frac))])
    t_test = int(log.ts[min(int(n * (1 - test_frac)), n - 1)])
    idx = np.arange(n)
    return Split(
        protocol="time",
        train=idx[log.ts < t_valid],
        valid=idx[(log.ts >= t_valid) & (log.ts < t_test)],
        test=idx[log.ts >= t_test],
        valid_start_ts=t_valid,
        test_start_ts=t_test,
    )


def leave_one_out(log: InteractionLog, min_events: int = 3) -> Split:
    """Each user's last event is test and second-to-last validation, the rest train.

    Users with fewer than ``min_events`` events keep everything in train.
    """
    hist = UserHistories.of(log)
    n_of_user = np.bincount(log.users, minlength=log.n_users)
    count = n_of_user[log.users]
    pos = hist.pos_in_user
    eligible = count >= min_events
    is_test = eligible & (pos == count - 1)
    is_valid = eligible & (pos == count - 2)
    idx = np.arange(log.n_events)
    return Split(
        protocol="loo",
        train=idx[~(is_test | is_valid)],
        valid=idx[is_valid],
        test=idx[is_test],
    )


# --- Histories ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserHistories:
    """Each user's events in time order, so that the past of any event is a slice.

    Attributes:
        order: Event indices sorted by (user, time).
        slot: slot[e] is event e's position in ``order``.
        pos_in_user: How many earlier events the event's user has.
    """

    order: np.ndarray
    slot: np.ndarray
    pos_in_user: np.ndarray

    @classmethod
    def of(cls, log: InteractionLog) -> UserHistories:
        order = np.argsort(log.users, kind="stable")  # the log is time-sorted already
        slot = np.empty_like(order)
        slot[order] = np.arange(order.shape[0])
        counts = np.bincount(log.users, minlength=log.n_users)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = slot - starts[log.users]
        return cls(order=order, slot=slot, pos_in_user=pos)

    def previous(self, events: np.ndarray, n: int) -> np.ndarray:
        """The ``n`` events before each event, oldest first, left-padded with -1: (B, n)."""
        events = np.asarray(events, dtype=np.int64)
        offsets = np.arange(n, 0, -1)  # n .. 1 events back
        slots = self.slot[events][:, None] - offsets[None, :]
        valid = offsets[None, :] <= self.pos_in_user[events][:, None]
        out = np.where(valid, self.order[np.clip(slots, 0, None)], -1)
        return out.astype(np.int64)

    def seen_pairs(self, events: np.ndarray, log: InteractionLog) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs of every item each event's user touched before it."""
        events = np.asarray(events, dtype=np.int64)
        lengths = self.pos_in_user[events]
        rows = np.repeat(np.arange(events.shape[0]), lengths)
        starts = self.slot[events] - lengths
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = log.items[self.order[np.repeat(starts, lengths) + within]]
        return rows, cols


@dataclass(frozen=True)
class HistoryBatch:
    """Padded histories ready for a user encoder, oldest first, left-padded.

    Attributes:
        items: (B, N) item codes, -1 on padding.
        types: (B, N) type codes, 0 on padding.
        gaps: (B, N) float32 ``log1p`` seconds between each event and now.
        mask: (B, N) float32, 1 on real events.
    """

    items: np.ndarray
    types: np.ndarray
    gaps: np.ndarray
    mask: np.ndarray


def history_batch(
    log: InteractionLog, hist: UserHistories, events: np.ndarray, n: int
) -> HistoryBatch:
    """The histories the online side would hold just before each of ``events``.

    'Now' is the time of the most recent history event: the moment the online worker
    recomputes a user's list after that event arrived.
    """
    prev = hist.previous(events, n)
    mask = prev >= 0
    safe = np.clip(prev, 0, None)
    now = log.ts[safe[:, -1]]
    gaps = np.log1p(np.maximum(now[:, None] - log.ts[safe], 0) / 1000.0)
    return HistoryBatch(
        items=np.where(mask, log.items[safe], -1),
        types=np.where(mask, log.types[safe], 0),
        gaps=np.where(mask, gaps, 0.0).astype(np.float32),
        mask=mask.astype(np.float32),
    )


def training_windows(log: InteractionLog, events: np.ndarray, n: int) -> np.ndarray:
    """Each user's ``events`` cut into windows of ``n + 1`` consecutive ones: (W, n + 1).

    Windows are cut back from each user's newest event and left-padded with -1; the last
    ``n`` of a window are next-item targets of the ``n`` before, so every event except
    each user's first is a target exactly once. Users with one event give no window.
    """
    events = np.sort(np.asarray(events, dtype=np.int64))
    by_user = events[np.argsort(log.users[events], kind="stable")]  # (user, time) order
    counts = np.bincount(log.users[by_user], minlength=log.n_users)
    starts = np.cumsum(counts) - counts
    per_user = np.maximum(counts - 1 + n - 1, 0) // n  # ceil((count - 1) / n) windows
    user = np.repeat(np.arange(log.n_users), per_user)
    k = np.arange(int(per_user.sum())) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    ends = counts[user] - 1 - k * n  # position within the user of each window's last event
    within = ends[:, None] + np.arange(-n, 1)[None, :]
    flat = starts[user][:, None] + np.clip(within, 0, None)
    return np.where(within >= 0, by_user[flat], -1)


def window_batch(log: InteractionLog, windows: np.ndarray) -> tuple[HistoryBatch, np.ndarray]:
    """Causal-encoder inputs of windows and the next item at each position (-1: none).

    ``gaps`` count back from each window's newest input, as ``history_batch`` does.
    """
    inputs, after = windows[:, :-1], windows[:, 1:]
    mask = inputs >= 0
    safe = np.clip(inputs, 0, None)
    now = log.ts[safe[:, -1]]
    gaps = np.log1p(np.maximum(now[:, None] - log.ts[safe], 0) / 1000.0)
    hist = HistoryBatch(
        items=np.where(mask, log.items[safe], -1),
        types=np.where(mask, log.types[safe], 0),
        gaps=np.where(mask, gaps, 0.0).astype(np.float32),
        mask=mask.astype(np.float32),
    )
    return hist, np.where(mask, log.items[np.clip(after, 0, None)], -1)
