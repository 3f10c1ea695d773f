"""Pure update rules for per-user state and item popularity.

The worker, replay, tests and benchmarks all call these functions, so a state built
live and a state recomputed offline from the same events are the same by construction.
No I/O here: callers load states, call ``apply_events``, and persist what comes back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from schemas.event_weights import TASTE_WEIGHTS, taste_weight
from schemas.events import EVENT_TYPES, EventType, InteractionEvent

#: How much each interaction type says about a user's taste (``schemas.event_weights``).
DEFAULT_TYPE_WEIGHTS: Mapping[str, float] = TASTE_WEIGHTS

TYPE_CODES: Mapping[str, int] = MappingProxyType({t: i for i, t in enumerate(EVENT_TYPES)})

#: Stored-state format 1 kept each history entry's type as its position in this tuple.
#: Frozen: format-1 states still in Redis are read with it whatever ``EVENT_TYPES``
#: becomes. Format 2 (``STATE_FORMAT``) stores the names each state uses.
FORMAT1_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating")
STATE_FORMAT = 2


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One interaction in a user's recent history."""

    item_id: str
    type: EventType
    ts: int


_new = object.__new__
_slots: Mapping[str, Any] = vars(HistoryEntry)  # its fields' slot descriptors
_set_item = _slots["item_id"].__set__
_set_type = _slots["type"].__set__
_set_ts = _slots["ts"].__set__


def _entry(item_id: str, type_: EventType, ts: int) -> HistoryEntry:
    """``HistoryEntry(item_id, type_, ts)`` at half the cost: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``; here the slots are set
    directly. Every stored state read decodes up to ``history_len`` of these.

    >>> _entry("i1", "view", 5) == HistoryEntry("i1", "view", 5)
    True
    """
    entry = _new(HistoryEntry)
    _set_item(entry, item_id)
    _set_type(entry, type_)
    _set_ts(entry, ts)
    return entry


@dataclass(frozen=True, slots=True)
class UserState:
    """What freshet keeps per user, bounded in size.

    Attributes:
        history: Recent interactions, oldest first, at most ``history_len``.
        seen: Items interacted with, oldest first, at most ``seen_max``.
        purchased: Purchased items, oldest first, at most ``seen_max``.
        recent_event_ids: The last ``dedup_window`` applied event ids, oldest first.
        last_ts: Event time of the newest applied event (last activity).
        n_events: Applied events in total.
    """

    history: tuple[HistoryEntry, ...] = ()
    seen: tuple[str, ...] = ()
    purchased: tuple[str, ...] = ()
    recent_event_ids: tuple[str, ...] = ()
    last_ts: int = 0
    n_events: int = 0

    def to_obj(self) -> dict[str, object]:
        """A compact JSON-ready form (see ``from_obj``).

        History types are stored by name: each state lists the names it uses once
        (``y``) and its entries point into that list, so adding an event type anywhere
        in ``EVENT_TYPES`` leaves stored histories intact.
        """
        names = list(dict.fromkeys(e.type for e in self.history))
        code = {t: i for i, t in enumerate(names)}
        return {
            "v": STATE_FORMAT,
            "y": names,
            "h": [[e.item_id, code[e.type], e.ts] for e in self.history],
            "s": list(self.seen),
            "p": list(self.purchased),
            "d": list(self.recent_event_ids),
            "t": self.last_ts,
            "n": self.n_events,
        }

    @classmethod
    def from_obj(cls, obj: Mapping[str, object]) -> UserState:
        """Inverse of ``to_obj``; reads format 1 (types by position) too.

        >>> UserState.from_obj({"h": [["i1", 3, 5]], "n": 1}).history[0].type  # format 1
        'purchase'
        >>> UserState.from_obj({"v": 2, "y": ["click"], "h": [["i1", 0, 5]]}).history[0].type
        'click'
        """
        hist = obj.get("h", [])
        assert isinstance(hist, list)
        version = obj.get("v", 1)
        names = obj.get("y", []) if isinstance(version, int) and version >= 2 else FORMAT1_TYPES
        assert isinstance(names, list | tuple)
        return _state(
            tuple([_entry(str(i), names[int(c)], int(ts)) for i, c, ts in hist]),
            tuple(obj.get("s", ())),  # type: ignore[arg-type]
            tuple(obj.get("p", ())),  # type: ignore[arg-type]
            tuple(obj.get("d", ())),  # type: ignore[arg-type]
            int(obj.get("t", 0)),  # type: ignore[call-overload]
            int(obj.get("n", 0)),  # type: ignore[call-overload]
        )


_state_slots: Mapping[str, Any] = vars(UserState)
_state_setters = tuple(
    _state_slots[name].__set__
    for name in ("history", "seen", "purchased", "recent_event_ids", "last_ts", "n_events")
)


def _state(
    history: tuple[HistoryEntry, ...],
    seen: tuple[str, ...],
    purchased: tuple[str, ...],
    recent_event_ids: tuple[str, ...],
    last_ts: int,
    n_events: int,
) -> UserState:
    """``UserState(...)`` with every field given, at a third of the cost (as ``_entry``):
    every stored state read and every state a batch changes is built here.

    >>> _state((), ("i1",), (), ("e1",), 5, 1) == UserState(seen=("i1",), recent_event_ids=("e1",),
    ...     last_ts=5, n_events=1)
    True
    """
    state = _new(UserState)
    set_h, set_s, set_p, set_d, set_t, set_n = _state_setters
    set_h(state, history)
    set_s(state, seen)
    set_p(state, purchased)
    set_d(state, recent_event_ids)
    set_t(state, last_ts)
    set_n(state, n_events)
    return state


@dataclass(frozen=True, slots=True)
class StateRules:
    """Bounds and weights of the state update.

    ``ratings_as_interactions``: every rating counts as a plain interaction (the rating
    rule of ``schemas.event_weights``), whatever its value.
    """

    history_len: int = 50
    seen_max: int = 500
    dedup_window: int = 256
    trending_half_life_s: float = 6 * 3600.0
    type_weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_TYPE_WEIGHTS)
    ratings_as_interactions: bool = False

    def weight(self, event: InteractionEvent) -> float:
        """Taste weight of one event; a rating weighs its value, 0..5 (the rating rule)."""
        return taste_weight(
            event.type, event.value, self.type_weights, self.ratings_as_interactions
        )


@dataclass(frozen=True, slots=True)
class PopularityDelta:
    """Increments to one partition's item popularity from one batch.

    ``trend`` holds decayed weights scaled to the partition's reference time: an event
    of weight w at time t adds ``w * 2**((t - ref_ms) / half_life)``. Ranking by the
    stored sums equals ranking by the decayed score at any instant, and no item is
    ever rewritten just because time passed.
    """

    counts: dict[str, int]
    trend: dict[str, float]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did to state."""

    states: dict[str, UserState]
    applied: tuple[InteractionEvent, ...]
    duplicates: tuple[InteractionEvent, ...]
    popularity: PopularityDelta


def _bounded_append(seq: tuple[str, ...], value: str, limit: int) -> tuple[str, ...]:
    if value in seq:
        seq = tuple(v for v in seq if v != value)
    seq = (*seq, value)
    return seq[-limit:] if len(seq) > limit else seq


def apply_event(state: UserState, event: InteractionEvent, rules: StateRules) -> UserState:
    """The state after one event; unchanged if the event id was already applied.

    >>> e = InteractionEvent("e1", "u1", "i1", "purchase", 1_000)
    >>> s = apply_event(UserState(), e, StateRules())
    >>> s.seen, s.purchased, s.n_events, s.last_ts
    (('i1',), ('i1',), 1, 1000)
    >>> apply_event(s, e, StateRules()) is s  # the same event again: no change
    True
    """
    if event.event_id in state.recent_event_ids:
        return state
    history = (*state.history, HistoryEntry(event.item_id, event.type, event.ts))
    if len(history) > rules.history_len:
        history = history[-rules.history_len :]
    ids = (*state.recent_event_ids, event.event_id)
    if len(ids) > rules.dedup_window:
        ids = ids[-rules.dedup_window :]
    purchased = state.purchased
    if event.type == "purchase":
        purchased = _bounded_append(purchased, event.item_id, rules.seen_max)
    return UserState(
        history=history,
        seen=_bounded_append(state.seen, event.item_id, rules.seen_max),
        purchased=purchased,
        recent_event_ids=ids,
        last_ts=max(state.last_ts, event.ts),
        n_events=state.n_events + 1,
    )


def trend_increment(weight: float, ts_ms: int, ref_ms: int, half_life_s: float) -> float:
    """The stored trending increment of one event relative to the reference time."""
    return weight * math.pow(2.0, (ts_ms - ref_ms) / (half_life_s * 1000.0))


def needs_rebase(ts_ms: int, ref_ms: int, half_life_s: float, max_halvings: float = 40.0) -> bool:
    """Whether stored trend sums should be rescaled to a newer reference time."""
    return (ts_ms - ref_ms) / (half_life_s * 1000.0) > max_halvings


def rebase_factor(old_ref_ms: int, new_ref_ms: int, half_life_s: float) -> float:
    """Multiply stored trend sums by this when moving the reference time forward."""
    return math.pow(2.0, -(new_ref_ms - old_ref_ms) / (half_life_s * 1000.0))


class _UserBatch:
    """One user's state while a batch is applied: the stored state plus what the batch
    adds, joined once when the state is frozen again.

    ``apply_event`` copies the history, the seen and purchased items and the dedup
    window into new tuples for every event; here an event appends to short lists, and
    the tuples are built once per user and batch. The result is the same state
    (``apply_event`` folded over the events): keeping the newest ``limit`` items ordered
    by last use gives the same list whether the oldest are dropped at each step or at
    the end.
    """

    __slots__ = ("base", "history", "ids", "last_ts", "n", "purchased", "seen")

    def __init__(self, state: UserState) -> None:
        self.base = state
        self.history: list[HistoryEntry] = []
        self.ids: list[str] = []
        self.seen: dict[str, None] = {}  # items of the batch, ordered by last use
        self.purchased: dict[str, None] = {}
        self.last_ts = state.last_ts
        self.n = 0

    def seen_recently(self, eid: str, window: int) -> bool:
        """Whether ``eid`` is among the last ``window`` applied ids (before the batch's
        first event: among the stored ones, as ``apply_event`` checks them)."""
        ids, base = self.ids, self.base.recent_event_ids
        if not ids:
            return eid in base
        older = window - len(ids)
        if older < 0:
            return eid in ids[-window:]
        if eid in ids:
            return True
        # The newest ``older`` stored ids, scanned in place (a slice would copy them).
        return older > 0 and eid in base and base.index(eid) >= len(base) - older

    def add(self, event: InteractionEvent, window: int) -> bool:
        """Apply one event; False if it is a duplicate (``seen_recently``)."""
        eid, ids = event.event_id, self.ids
        if eid in self.base.recent_event_ids if not ids else self.seen_recently(eid, window):
            return False
        ids.append(eid)
        item = event.item_id
        self.history.append(_entry(item, event.type, event.ts))
        self.seen.pop(item, None)
        self.seen[item] = None
        if event.type == "purchase":
            self.purchased.pop(item, None)
            self.purchased[item] = None
        if event.ts > self.last_ts:
            self.last_ts = event.ts
        self.n += 1
        return True

    def state(self, rules: StateRules) -> UserState:
        base = self.base
        return _state(
            _last((*base.history, *self.history), rules.history_len),
            _moved_to_end(base.seen, self.seen, rules.seen_max),
            _moved_to_end(base.purchased, self.purchased, rules.seen_max),
            _last((*base.recent_event_ids, *self.ids), rules.dedup_window),
            self.last_ts,
            base.n_events + self.n,
        )


_EMPTY = UserState()  # a user with no stored state (immutable, so one is shared)


def _last(seq: tuple[Any, ...], limit: int) -> tuple[Any, ...]:
    return seq[-limit:] if len(seq) > limit else seq


def _moved_to_end(stored: tuple[str, ...], used: dict[str, None], limit: int) -> tuple[str, ...]:
    """``stored`` with the ``used`` items moved to its end in their order, newest
    ``limit`` kept."""
    if not used:
        return stored
    if not used.keys().isdisjoint(stored):
        stored = tuple([item for item in stored if item not in used])
    return _last((*stored, *used), limit)


def apply_events(
    states: Mapping[str, UserState],
    events: Iterable[InteractionEvent],
    rules: StateRules,
    trend_ref_ms: int,
) -> BatchOutcome:
    """Apply a batch of valid events in order.

    Each user's state is built once for the batch (``_UserBatch``), not once per event;
    the outcome equals ``apply_event`` folded over the events.

    Args:
        states: Current state of every user in the batch (missing users start empty).
        events: Decoded events, in partition order.
        rules: Bounds and weights.
        trend_ref_ms: Reference time of the partition's trending sums.

    Returns:
        New states for the users that changed, the applied and duplicate events, and
        the popularity increments of the applied ones.
    """
    users: dict[str, _UserBatch] = {}
    applied: list[InteractionEvent] = []
    duplicates: list[InteractionEvent] = []
    counts: dict[str, int] = {}
    trend: dict[str, float] = {}
    window = rules.dedup_window
    scale = rules.trending_half_life_s * 1000.0  # as ``trend_increment`` divides
    # A type's weight, looked up once per batch; a rating's depends on its value.
    weights: dict[str, float] = {
        t: rules.type_weights.get(t, 1.0) for t in EVENT_TYPES if t != "rating"
    }
    pow_, empty = math.pow, _EMPTY
    for event in events:
        user = users.get(event.user_id)
        if user is None:
            user = users[event.user_id] = _UserBatch(states.get(event.user_id) or empty)
        if not user.add(event, window):
            duplicates.append(event)
            continue
        applied.append(event)
        item = event.item_id
        counts[item] = counts.get(item, 0) + 1
        weight = weights.get(event.type)
        if weight is None:
            weight = rules.weight(event)
        # ``trend_increment``, inline: the same expression, so the same float.
        inc = weight * pow_(2.0, (event.ts - trend_ref_ms) / scale)
        trend[item] = trend.get(item, 0.0) + inc
    current = {uid: u.state(rules) for uid, u in users.items() if u.n}
    return BatchOutcome(current, tuple(applied), tuple(duplicates), PopularityDelta(counts, trend))


def replay_states(
    events: Sequence[InteractionEvent], rules: StateRules
) -> tuple[dict[str, UserState], dict[str, int]]:
    """Recompute every user's state and item counts from scratch (the offline oracle)."""
    ref = max(e.ts for e in events) if events else 0  # no 2**x overflow (see ingest)
    outcome = apply_events({}, events, rules, trend_ref_ms=ref)
    return outcome.states, outcome.popularity.counts
