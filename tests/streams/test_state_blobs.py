"""``StateBlobs``: the remembered decode of stored states is the decode itself.

States come from the pure rules over drawn events; every blob the memo hands back, or
decodes from bytes it remembers, must equal ``UserState.from_obj`` of those bytes, and
the memo must stay within its byte budget.
"""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import EVENT_TYPES, InteractionEvent
from streams.core.state_blobs import StateBlobs, state_blob
from streams.core.state_rules import HistoryEntry, StateRules, UserState, apply_events

T0 = 1_700_000_000_000

events = st.lists(
    st.builds(
        InteractionEvent,
        st.text("abcdef0123", min_size=1, max_size=6),
        st.sampled_from(["u1", "u2", "u3"]),
        st.sampled_from([f"i{i}" for i in range(12)]),
        st.sampled_from(EVENT_TYPES),
        st.integers(T0, T0 + 10_000_000),
    ),
    max_size=40,
)


def fresh(blob: bytes) -> UserState:
    return UserState.from_obj(orjson.loads(blob))


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 5))
def test_remembered_states_are_the_decoded_states(evs: list[InteractionEvent], cut: int) -> None:
    rules = StateRules(history_len=8, seen_max=6, dedup_window=16)
    blobs = StateBlobs()
    states: dict[str, UserState] = {}
    for i in range(0, len(evs), cut):  # batches, each stored and read back as a worker does
        out = apply_events(states, evs[i : i + cut], rules, T0)
        for uid, state in out.states.items():
            blob = blobs.encode(state)
            assert blob == orjson.dumps(state.to_obj())
            states[uid] = blobs.decode(bytes(blob))  # a copy: bytes as Redis returns them
            assert states[uid] == state == fresh(blob)
    other = StateBlobs()  # a worker that never saw these blobs decodes them afresh
    distinct: set[bytes] = set()  # two users with equal states share one blob: parsed once
    for state in states.values():
        blob = orjson.dumps(state.to_obj())
        distinct.add(blob)
        assert other.decode(blob) == blobs.decode(blob) == fresh(blob)
    assert other.misses == len(distinct) and other.hits == len(states) - len(distinct)


def test_a_changed_blob_is_decoded_afresh_and_the_budget_holds() -> None:
    blobs = StateBlobs(budget_bytes=2_000)
    first = UserState(seen=("a",), n_events=1)
    raw = blobs.encode(first)
    changed = raw.replace(b'"n":1', b'"n":7')  # another writer's bytes for the user
    assert blobs.decode(changed).n_events == 7 and blobs.decode(raw) is first
    for n in range(200):
        blobs.encode(UserState(seen=(f"item-{n}",), n_events=n))
    assert blobs._bytes <= 2_000 and sum(map(len, blobs._known)) == blobs._bytes
    assert raw not in blobs._known  # the oldest went first
    assert blobs.decode(raw) == first  # and decodes again from its bytes


strings = st.text(min_size=0, max_size=8)
drawn_states = st.builds(
    UserState,
    history=st.lists(
        st.builds(HistoryEntry, strings, st.sampled_from(EVENT_TYPES), st.integers(0, 2**62)),
        max_size=12,
    ).map(tuple),
    seen=st.lists(strings, max_size=6).map(tuple),
    purchased=st.lists(strings, max_size=6).map(tuple),
    recent_event_ids=st.lists(strings, max_size=6).map(tuple),
    last_ts=st.integers(0, 2**62),
    n_events=st.integers(0, 2**31),
)


@settings(max_examples=300, deadline=None)
@given(drawn_states)
def test_the_blob_is_the_json_of_the_state_form(state: UserState) -> None:
    """``state_blob`` writes the bytes ``orjson.dumps(state.to_obj())`` wrote, for any
    state: one event type or several, empty fields, any text."""
    assert state_blob(state) == orjson.dumps(state.to_obj())
    assert fresh(state_blob(state)) == state
