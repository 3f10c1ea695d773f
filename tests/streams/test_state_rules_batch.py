"""The batch-first ``apply_events`` against ``apply_event`` folded over the same events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import InteractionEvent
from streams.core.state_rules import (
    HistoryEntry,
    StateRules,
    UserState,
    apply_event,
    apply_events,
    trend_increment,
)

T0 = 1_700_000_000_000
RULES = StateRules(history_len=3, seen_max=2, dedup_window=3, trending_half_life_s=60.0)

event_st = st.builds(
    InteractionEvent,
    event_id=st.sampled_from([f"e{i}" for i in range(8)]),
    user_id=st.sampled_from(["u1", "u2", "u3"]),
    item_id=st.sampled_from(["a", "b", "c", "d"]),
    type=st.sampled_from(["view", "click", "purchase", "rating"]),
    ts=st.integers(T0 - 100_000, T0 + 100_000),
    value=st.sampled_from([None, 1.0, 4.5]),
)
state_st = st.builds(
    UserState,
    history=st.lists(
        st.builds(HistoryEntry, st.sampled_from("abcd"), st.just("view"), st.just(T0)),
        max_size=3,
    ).map(tuple),
    seen=st.lists(st.sampled_from("abcd"), max_size=2, unique=True).map(tuple),
    purchased=st.lists(st.sampled_from("abcd"), max_size=2, unique=True).map(tuple),
    # Up to 5 stored ids against a window of 3: a window setting that shrank.
    recent_event_ids=st.lists(
        st.sampled_from([f"e{i}" for i in range(8)]), max_size=5, unique=True
    ).map(tuple),
    last_ts=st.integers(T0 - 50_000, T0 + 50_000),
    n_events=st.integers(0, 9),
)


def folded(
    states: dict[str, UserState], events: list[InteractionEvent], rules: StateRules
) -> tuple[dict[str, UserState], list[InteractionEvent], list[InteractionEvent]]:
    current: dict[str, UserState] = {}
    applied, dupes = [], []
    for e in events:
        before = current.get(e.user_id) or states.get(e.user_id) or UserState()
        after = apply_event(before, e, rules)
        if after is before:
            dupes.append(e)
        else:
            current[e.user_id] = after
            applied.append(e)
    return current, applied, dupes


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["u1", "u2"]), state_st, max_size=2),
    st.lists(event_st, max_size=40),
)
def test_batch_equals_the_fold_of_single_events(
    states: dict[str, UserState], events: list[InteractionEvent]
) -> None:
    out = apply_events(states, events, RULES, trend_ref_ms=T0)
    want, applied, dupes = folded(states, events, RULES)
    assert out.states == want
    assert list(out.applied) == applied and list(out.duplicates) == dupes
    counts: dict[str, int] = {}
    for e in applied:
        counts[e.item_id] = counts.get(e.item_id, 0) + 1
    assert out.popularity.counts == counts
    assert set(out.popularity.trend) == set(counts)
    # Each item's trend sums its applied events' increments in order, to the last bit
    # (ratings weigh their value; the batch looks the other types' weights up once).
    trend: dict[str, float] = {}
    for e in applied:
        inc = trend_increment(RULES.weight(e), e.ts, T0, RULES.trending_half_life_s)
        trend[e.item_id] = trend.get(e.item_id, 0.0) + inc
    assert out.popularity.trend == trend


def test_an_id_pushed_out_of_the_window_within_the_batch_applies_again() -> None:
    events = [InteractionEvent(f"e{i}", "u", "a", "view", T0 + i) for i in (1, 2, 3, 4, 1)]
    out = apply_events({}, events, RULES, trend_ref_ms=T0)
    assert len(out.applied) == 5 and not out.duplicates  # e1 left the window of 3
    assert out.states["u"].recent_event_ids == ("e3", "e4", "e1")
    assert out.states["u"].n_events == 5
    # Five views of one item: trend sums the five increments.
    want = sum(trend_increment(1.0, T0 + i, T0, 60.0) for i in (1, 2, 3, 4, 1))
    assert abs(out.popularity.trend["a"] - want) < 1e-12 * want


def test_a_repeat_within_the_window_is_a_duplicate() -> None:
    events = [InteractionEvent(f"e{i}", "u", "a", "view", T0) for i in (1, 2, 1)]
    out = apply_events({}, events, RULES, trend_ref_ms=T0)
    assert [e.event_id for e in out.duplicates] == ["e1"]
    assert out.states["u"].n_events == 2
