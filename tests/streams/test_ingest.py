"""The batch processor: dead letters first, exactly-once state, redelivery as a no-op."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import DecodeLimits, Refusal, decode_interaction, encode
from schemas.dead_letter import DeadLetter
from schemas.events import InteractionEvent
from schemas.topics import event_key
from streams.core.ingest import IngestProcessor, SourceRecord, decode_records
from streams.core.state_rules import StateRules, replay_states
from streams.core.state_store import InMemoryStateStore

T0 = 1_700_000_000_000
RULES = StateRules(history_len=20, seen_max=50, dedup_window=128)


def rec(
    offset: int, ev: InteractionEvent | bytes, partition: int = 0, key: bytes | None = None
) -> SourceRecord:
    if isinstance(ev, InteractionEvent):
        return SourceRecord("events", partition, offset, key or event_key(ev.user_id), encode(ev))
    return SourceRecord("events", partition, offset, key, ev)


class Sink:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def __call__(self, letters: list[DeadLetter]) -> None:
        self.letters.extend(letters)


def processor(store: InMemoryStateStore, sink: Sink) -> IngestProcessor:
    return IngestProcessor(
        store, RULES, DecodeLimits(), dead_letter_sink=sink, clock=lambda: T0 / 1000 + 60
    )


def make_events(n: int, users: int = 5) -> list[InteractionEvent]:
    return [
        InteractionEvent(f"e{i}", f"u{i % users}", f"i{(i * 7) % 11}", "view", T0 + i)
        for i in range(n)
    ]


async def test_malformed_go_to_dead_letters_with_original_bytes() -> None:
    store, sink = InMemoryStateStore(), Sink()
    good = make_events(3)
    bad_json = b'{"event_id": '
    wrong_key = rec(4, good[0], key=b"someone-else")
    records = [
        rec(0, good[0]),
        rec(1, bad_json, key=b"u0"),
        rec(2, good[1]),
        rec(3, b"\xff"),
        wrong_key,
    ]
    stats = await processor(store, sink).process(records)
    assert stats.applied == 2 and stats.dead_lettered == 3
    assert [(d.reason, d.source_offset) for d in sink.letters] == [
        ("invalid_json", 1),
        ("invalid_utf8", 3),
        ("key_mismatch", 4),
    ]
    assert sink.letters[0].value == bad_json and sink.letters[0].key == b"u0"
    assert store.watermarks[0] == 4


async def test_redelivered_batch_is_a_no_op() -> None:
    store, sink = InMemoryStateStore(), Sink()
    events = make_events(40)
    records = [rec(i, e) for i, e in enumerate(events)]
    p = processor(store, sink)
    await p.process(records[:25])
    before = dict(store.users), dict(store.item_counts[0])
    stats = await p.process(records[:25])  # crash after write, before commit: same records again
    assert stats.applied == 0 and stats.redelivered == 25
    assert (dict(store.users), dict(store.item_counts[0])) == before
    await p.process(records[20:])  # overlapping redelivery
    states, counts = replay_states(events, RULES)
    assert {uid: r.state for (_, uid), r in store.users.items()} == states
    assert store.item_counts[0] == counts


async def test_producer_duplicates_at_new_offsets_are_dropped() -> None:
    store, sink = InMemoryStateStore(), Sink()
    events = make_events(10)
    records = [rec(i, e) for i, e in enumerate(events)] + [
        rec(10 + i, e) for i, e in enumerate(events[:4])
    ]
    stats = await processor(store, sink).process(records)
    assert stats.applied == 10 and stats.duplicates == 4
    _, counts = replay_states(events, RULES)
    assert store.item_counts[0] == counts


async def test_partitions_keep_their_own_watermarks() -> None:
    store, sink = InMemoryStateStore(), Sink()
    a = InteractionEvent("a1", "ua", "x", "click", T0)
    b = InteractionEvent("b1", "ub", "y", "click", T0)
    await processor(store, sink).process([rec(7, a, partition=0), rec(3, b, partition=1)])
    assert store.watermarks == {0: 7, 1: 3}
    assert (0, "ua") in store.users and (1, "ub") in store.users


@pytest.mark.parametrize("cut", [1, 13, 39])
async def test_any_batching_gives_the_oracle_state(cut: int) -> None:
    store, sink = InMemoryStateStore(), Sink()
    events = make_events(40, users=3)
    records = [rec(i, e) for i, e in enumerate(events)]
    p = processor(store, sink)
    for start in range(0, len(records), cut):
        await p.process(records[start : start + cut])
    states, _ = replay_states(events, RULES)
    assert {uid: r.state for (_, uid), r in store.users.items()} == states


async def test_future_events_refused_by_wall_clock() -> None:
    store, sink = InMemoryStateStore(), Sink()
    future = InteractionEvent("f", "u", "i", "view", T0 + 10 * 86_400_000)
    await processor(store, sink).process([rec(0, future)])
    assert [d.reason for d in sink.letters] == ["timestamp_out_of_range"]
    assert orjson.loads(sink.letters[0].value)["event_id"] == "f"


def decoded_one_by_one(
    records: list[SourceRecord],
) -> tuple[list[tuple[SourceRecord, InteractionEvent]], list[tuple[str, int]]]:
    """The old per-record form of ``decode_records``: each value alone, then its key."""
    good, bad = [], []
    for r in records:
        d = decode_interaction(r.value, DecodeLimits(), None)
        if isinstance(d, Refusal):
            bad.append((d.reason, r.offset))
        elif r.key != event_key(d.user_id):
            bad.append(("key_mismatch", r.offset))
        else:
            good.append((r, d))
    return good, bad


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 9),
            st.sampled_from(["good", "wrong_key", "no_key", "bad_json", "two_line_key"]),
        ),
        max_size=12,
    )
)
def test_decoded_batches_equal_the_record_by_record_decode(
    drawn: list[tuple[int, str]],
) -> None:
    """A batch of good events takes the whole-batch check; a wrong or missing key with no
    refusal beside it must still be dead-lettered, in place, as record by record."""
    records = []
    for offset, (i, kind) in enumerate(drawn):
        event = InteractionEvent(f"e{offset}", f"u{i}", f"i{i}", "view", T0 + i)
        if kind == "good":
            records.append(rec(offset, event))
        elif kind == "wrong_key":
            records.append(rec(offset, event, key=b"u-other"))
        elif kind == "two_line_key":  # the next user's id too: no line of the batch's own
            records.append(rec(offset, event, key=f"u{i}\nu{i}".encode()))
        elif kind == "no_key":
            records.append(SourceRecord("events", 0, offset, None, encode(event)))
        else:
            records.append(rec(offset, b'{"event_id": ', key=b"u0"))
    good, bad = decode_records(records, DecodeLimits(), None)
    want_good, want_bad = decoded_one_by_one(records)
    assert good == want_good
    assert [(d.reason, d.source_offset) for d in bad] == want_bad
