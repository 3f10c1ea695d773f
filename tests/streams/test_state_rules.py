"""Known answers and invariants of the pure state-update rules."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import EVENT_TYPES, InteractionEvent
from streams.core.state_rules import (
    StateRules,
    UserState,
    apply_event,
    apply_events,
    needs_rebase,
    rebase_factor,
    replay_states,
    trend_increment,
)

T0 = 1_700_000_000_000
RULES = StateRules(history_len=3, seen_max=4, dedup_window=5, trending_half_life_s=3600.0)


def ev(
    i: int, user: str = "u", item: str = "a", etype: str = "view", ts: int = T0
) -> InteractionEvent:
    return InteractionEvent(f"e{i}", user, item, etype, ts)  # type: ignore[arg-type]


def test_known_answer_small_sequence() -> None:
    events = [ev(1, item="a"), ev(2, item="b", etype="purchase"), ev(3, item="a", ts=T0 + 5)]
    state = UserState()
    for e in events:
        state = apply_event(state, e, RULES)
    assert [h.item_id for h in state.history] == ["a", "b", "a"]
    assert state.seen == ("b", "a")  # most recent last, no repeats
    assert state.purchased == ("b",)
    assert state.last_ts == T0 + 5
    assert state.n_events == 3


def test_bounds_hold() -> None:
    state = UserState()
    for i in range(20):
        state = apply_event(state, ev(i, item=f"i{i}"), RULES)
    assert len(state.history) == 3 and len(state.seen) == 4 and len(state.recent_event_ids) == 5
    assert [h.item_id for h in state.history] == ["i17", "i18", "i19"]


def test_duplicate_event_id_is_a_no_op() -> None:
    s1 = apply_event(UserState(), ev(1), RULES)
    assert apply_event(s1, ev(1), RULES) is s1
    out = apply_events({}, [ev(1), ev(2), ev(1)], RULES, trend_ref_ms=T0)
    assert len(out.applied) == 2 and len(out.duplicates) == 1
    assert out.popularity.counts == {"a": 2}


def test_trend_increment_halves_per_half_life() -> None:
    assert trend_increment(2.0, T0, T0, 3600.0) == 2.0
    assert math.isclose(trend_increment(2.0, T0 + 3_600_000, T0, 3600.0), 4.0)
    assert math.isclose(trend_increment(2.0, T0 - 7_200_000, T0, 3600.0), 0.5)
    assert needs_rebase(T0 + 41 * 3_600_000, T0, 3600.0)
    assert not needs_rebase(T0 + 39 * 3_600_000, T0, 3600.0)
    assert math.isclose(rebase_factor(T0, T0 + 3_600_000, 3600.0), 0.5)


def test_rating_weight_scales_with_value() -> None:
    low = InteractionEvent("r1", "u", "a", "rating", T0, value=1.0)
    high = InteractionEvent("r2", "u", "a", "rating", T0, value=5.0)
    assert RULES.weight(high) == 5 * RULES.weight(low)


def test_state_round_trips_through_json_form() -> None:
    state = UserState()
    for i, t in enumerate(EVENT_TYPES):
        state = apply_event(state, ev(i, item=f"i{i}", etype=t, ts=T0 + i), StateRules())
    assert UserState.from_obj(state.to_obj()) == state


def _history_state() -> UserState:
    state = UserState()
    for i, t in enumerate(["purchase", "view", "rating", "purchase"]):
        state = apply_event(state, ev(i, item=f"i{i}", etype=t, ts=T0 + i), StateRules())
    return state


def test_adding_an_event_type_leaves_stored_histories_intact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored before a new type is inserted at the front of the list, read after it."""
    import streams.core.state_rules as rules_module

    state = _history_state()
    stored = orjson.dumps(state.to_obj())
    format1 = orjson.dumps({"h": [["i0", 3, T0], ["i1", 0, T0 + 1]], "n": 2})
    grown = ("wishlist", *EVENT_TYPES)
    monkeypatch.setattr(rules_module, "EVENT_TYPES", grown)
    monkeypatch.setattr(rules_module, "TYPE_CODES", {t: i for i, t in enumerate(grown)})
    assert UserState.from_obj(orjson.loads(stored)) == state
    old = UserState.from_obj(orjson.loads(format1))
    assert [h.type for h in old.history] == ["purchase", "view"]


def test_states_are_stored_with_type_names() -> None:
    obj = _history_state().to_obj()
    assert obj["v"] == 2 and obj["y"] == ["purchase", "view", "rating"]
    assert [h[1] for h in obj["h"]] == [0, 1, 2, 0]  # type: ignore[attr-defined]


events_strategy = st.lists(
    st.builds(
        lambda i, u, it, t, dt: InteractionEvent(f"e{i}", f"u{u}", f"i{it}", t, T0 + dt),
        st.integers(0, 30),
        st.integers(0, 3),
        st.integers(0, 8),
        st.sampled_from(EVENT_TYPES),
        st.integers(0, 10_000_000),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_idempotent_per_event_id(events: list[InteractionEvent]) -> None:
    """Applying a stream twice (a full redelivery) equals applying it once.

    Holds while each user's distinct events fit in the dedup window.
    """
    rules = StateRules(history_len=10, seen_max=10, dedup_window=64)
    once, counts_once = replay_states(events, rules)
    twice, counts_twice = replay_states(events + events, rules)
    assert once == twice and counts_once == counts_twice


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.integers(0, 60))
def test_batching_does_not_change_the_result(events: list[InteractionEvent], cut: int) -> None:
    """Two batches carry state across exactly as one batch does."""
    rules = StateRules(history_len=10, seen_max=10, dedup_window=64)
    whole = apply_events({}, events, rules, T0)
    first = apply_events({}, events[:cut], rules, T0)
    second = apply_events(first.states, events[cut:], rules, T0)
    merged = {**first.states, **second.states}
    assert merged == whole.states
    total = dict(first.popularity.counts)
    for k, v in second.popularity.counts.items():
        total[k] = total.get(k, 0) + v
    assert total == whole.popularity.counts
