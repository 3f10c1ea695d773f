"""The debouncer's promise, as a property over arbitrary event and timer sequences.

Every event is covered by exactly one list (the first list of its user sent at or
after it, which carries the user's newest state), none is lost (after the last
window closes, each user's newest event has been sent), and a user gets at most one
list per window.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.debounce import Debouncer

USERS = ["a", "b", "c"]
ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.sampled_from(USERS), st.integers(0, 150)),
        st.tuples(st.just("tick"), st.just(""), st.integers(0, 150)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops_strategy, st.integers(0, 200))
def test_one_list_per_burst_none_lost(ops: list[tuple[str, str, int]], window: int) -> None:
    d: Debouncer[tuple[str, int]] = Debouncer(window)
    now = 0
    events: dict[str, list[int]] = {u: [] for u in USERS}  # event = its step number
    sent: dict[str, list[tuple[int, int, int]]] = {u: [] for u in USERS}  # event, step, time

    def record(items: list[tuple[str, int]], step: int) -> None:
        for user, event in items:
            sent[user].append((event, step, now))

    for n, (kind, user, dt) in enumerate(ops):
        now += dt
        if kind == "event":
            events[user].append(n)
            record(d.admit([(user, (user, n))], now), n)
        else:
            record(d.due(now), n)
    now += window
    record(d.due(now), len(ops))  # the last windows close

    for user in USERS:
        lists, mine = sent[user], events[user]
        if not mine:
            assert lists == []
            continue
        assert lists[-1][0] == mine[-1]  # none lost: the newest event went out
        for event, step, _ in lists:
            newest = max(e for e in mine if e <= step)
            assert event == newest  # a list carries the newest state when it goes out
        sent_events = [e for e, _, _ in lists]
        assert sent_events == sorted(set(sent_events))  # no event is covered twice
        times = [t for _, _, t in lists]
        assert all(b - a >= window for a, b in itertools.pairwise(times))


# --- the adaptive policy (the worker's default) ---------------------------------------
BEHIND, CAP = 50, 200
adaptive_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"), st.sampled_from(USERS), st.integers(0, 150), st.integers(0, 400)
        ),
        st.tuples(st.just("tick"), st.just(""), st.integers(0, 150), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(adaptive_ops)
def test_adaptive_none_lost_newest_sent_and_one_list_per_window_in_force(
    ops: list[tuple[str, str, int, int]],
) -> None:
    """Whatever the backlog does: every event covered once by a list with the newest
    state, none lost, and two lists of a user never closer than the window in force
    when the second went out."""
    d: Debouncer[tuple[str, int]] = Debouncer(CAP, behind_ms=BEHIND)
    now = 0
    events: dict[str, list[int]] = {u: [] for u in USERS}
    sent: dict[str, list[tuple[int, int, int]]] = {u: [] for u in USERS}  # event, time, window

    def record(items: list[tuple[str, int]]) -> None:
        for user, event in items:
            sent[user].append((event, now, d.window()))

    for n, (kind, user, dt, lag) in enumerate(ops):
        now += dt
        if kind == "event":
            events[user].append(n)
            record(d.admit([(user, (user, n))], now, lag_ms=lag))
        else:
            record(d.due(now))
    now += CAP
    record(d.due(now))

    for user in USERS:
        lists, mine = sent[user], events[user]
        if not mine:
            assert lists == []
            continue
        assert lists[-1][0] == mine[-1]
        sent_events = [e for e, _, _ in lists]
        assert sent_events == sorted(set(sent_events))
        for (_, t_a, _), (_, t_b, w_b) in itertools.pairwise(lists):
            assert t_b - t_a >= w_b


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(USERS), st.integers(0, 30), st.integers(0, BEHIND)), max_size=60
    )
)
def test_adaptive_while_keeping_up_no_event_waits(ops: list[tuple[str, int, int]]) -> None:
    """At light load (no batch behind) every event's list goes out with its batch."""
    d: Debouncer[int] = Debouncer(CAP, behind_ms=BEHIND)
    now = 0
    for n, (user, dt, lag) in enumerate(ops):
        now += dt
        assert d.admit([(user, n)], now, lag_ms=lag) == [n]
    assert d.pending == {}


def test_adaptive_window_follows_the_backlog_up_to_the_cap() -> None:
    d: Debouncer[str] = Debouncer(CAP, behind_ms=BEHIND)
    assert d.admit([("u", "a")], 0, lag_ms=500) == ["a"]  # first list: at once
    assert d.admit([("u", "b")], 150, lag_ms=500) == []  # window = cap (200)
    assert d.window() == CAP
    assert d.due(199) == [] and d.due(200) == ["b"]
    assert d.admit([("u", "c")], 290, lag_ms=80) == ["c"]  # 90 ms since: window 80 passed
    assert d.admit([("u", "d")], 300, lag_ms=80) == []  # 10 ms since: held
    assert d.admit([("u", "e")], 301, lag_ms=0) == ["e"]  # caught up: no window


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(USERS), st.integers(0, 30), st.integers(0, 4 * BEHIND)),
        max_size=60,
    )
)
def test_adaptive_a_lone_late_batch_defers_nothing(ops: list[tuple[str, int, int]]) -> None:
    """A batch whose oldest event waited long, after one that kept up, is a hiccup (the
    batch before it ran long), not a backlog: its lists go out with it. Fails on the
    rule of one late batch, which held a user refreshed within the wait."""
    d: Debouncer[int] = Debouncer(CAP, behind_ms=BEHIND)
    now, before = 0, 0
    for n, (user, dt, lag) in enumerate(ops):
        now += dt
        if before > BEHIND:  # two late batches in a row would be a backlog: keep one
            lag = min(lag, BEHIND)
        assert d.admit([(user, n)], now, lag_ms=lag) == [n]
        before = lag
    assert d.pending == {}


def test_adaptive_a_backlog_opens_the_window_from_its_second_batch() -> None:
    d: Debouncer[str] = Debouncer(CAP, behind_ms=BEHIND)
    assert d.admit([("u", "a")], 0, lag_ms=5) == ["a"]
    assert d.admit([("u", "b")], 20, lag_ms=120) == ["b"]  # the first late batch
    assert d.admit([("u", "c")], 40, lag_ms=150) == []  # late again: a 120 ms window
    assert d.window() == 120
    assert d.due(139) == [] and d.due(140) == ["c"]
