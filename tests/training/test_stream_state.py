"""The loop's in-memory holdings: popularity deltas equal full syncs, cold lists on demand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import InteractionEvent
from streams.core.ingest import TouchedUser
from streams.core.state_rules import UserState
from training.evaluation.prequential import IntArray, PrequentialConfig, run_prequential
from training.evaluation.stream_state import StreamState


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=80),
    syncs=st.lists(st.integers(0, 80), max_size=6),
)
def test_count_deltas_replayed_over_a_stale_copy_give_the_full_counts(
    events: list[tuple[int, int]], syncs: list[int]
) -> None:
    """Syncing only what changed since the last sync leaves the same counts as a full sync."""
    stream = StreamState()
    copy: dict[str, int] = {}
    cursor = 0
    for n, (user, item) in enumerate(events):
        stream.apply(InteractionEvent(f"e{n}", f"u{user}", f"i{item}", "view", 1_000 * n))
        if n in syncs:
            changed, cursor = stream.count_changes(cursor)
            assert all(stream.count_map()[i] == c for i, c in changed.items())
            copy.update(changed)
    changed, cursor = stream.count_changes(cursor)
    copy.update(changed)
    assert copy == stream.count_map()
    assert stream.count_changes(cursor) == ({}, cursor)
    assert stream.count_changes(0)[0] == stream.count_map()


class ColdCounter:
    """Lists only users it was told about; counts how often its cold list is asked."""

    name = "counter"

    def __init__(self, stream: StreamState) -> None:
        self.stream, self.cold_asked = stream, 0

    def observe(self, event: InteractionEvent, before: UserState) -> None:
        return None

    def refresh(self, users: Sequence[TouchedUser], now_ms: int) -> dict[str, IntArray]:
        return {u.user_id: self.stream.codes(["known"]) for u in users if u.user_id != "u0"}

    def cold_list(self) -> IntArray:
        self.cold_asked += 1
        return self.stream.codes(["cold"])

    def swap_bundle(self, bundle: Any, now_ms: int) -> dict[str, IntArray]:
        return {}


def test_the_cold_list_is_asked_only_for_users_without_a_list() -> None:
    """u0 never gets a list of its own, so its scored events, and only they, ask."""
    stream = StreamState()
    model = ColdCounter(stream)
    events = [InteractionEvent(f"e{n}", f"u{n % 3}", f"i{n}", "view", 1_000 * n) for n in range(30)]
    result = run_prequential(events, [model], PrequentialConfig(batch_ms=0), stream=stream)
    scored_u0 = sum(1 for e in events[3:] if e.user_id == "u0")
    assert result.counts["scored"] == 27
    assert model.cold_asked == scored_u0 == 9
    cold = stream.code["cold"]
    assert int((result.lists[0, :, 0] == cold).sum()) == scored_u0
    assert np.all(result.ranks[0] == result.k)  # nothing planted: no hits
