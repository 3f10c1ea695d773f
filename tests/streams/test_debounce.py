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

from streams.debounce import Debouncer

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
