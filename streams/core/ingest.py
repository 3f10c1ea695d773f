"""One micro-batch of source records through decode, dedup, state update and commit.

This is the worker's core, free of Faust: the agent hands it raw records and acks them
after it returns; replay and benchmarks call it the same way. Its order of effects is
what gives exactly-once state:

1. decode every record; refused ones go to the dead-letter sink first (awaited);
2. read the partitions' offset watermarks and the touched users' state (one round trip);
3. drop records at or below the watermark (already applied before a crash) and
   duplicates by event id, apply the rest with the pure rules;
4. let the refresher (scoring, optional) add embeddings and lists for touched users;
5. write each partition's changes, lists and new watermark atomically (one fenced
   script per partition, ``streams.redis_io.redis_state_store``);
6. publish the fresh lists (5 and 6 are ``streams.core.publish.ListPublisher``); the
   caller then acks the records.

A crash anywhere before 5 leaves no trace in state; after 5 the watermark makes the
redelivered records no-ops. Dead letters and lists are at-least-once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol

from schemas.bulk_decode import decode_interactions
from schemas.codec import DecodeLimits, Refusal
from schemas.dead_letter import DeadLetter
from schemas.events import InteractionEvent
from schemas.topics import event_key
from streams.core.publish import ListPublisher, ListSink, Refresh
from streams.core.state_rules import (
    BatchOutcome,
    StateRules,
    UserState,
    apply_events,
    needs_rebase,
    rebase_factor,
)
from streams.core.state_store import PartitionRead, PartitionSnapshot, PartitionWrite, StateStore


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A raw Kafka record as the worker received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class TouchedUser:
    """A user whose state changed (or whose list is due again) in this batch."""

    user_id: str
    partition: int
    state: UserState
    embedding: bytes | None
    last_event: InteractionEvent | None
    source_timestamp_ms: int


class Refresher(Protocol):
    """Computes fresh embeddings and lists for the touched users of a batch."""

    async def refresh(self, touched: Sequence[TouchedUser], now_ms: int) -> Refresh: ...


@dataclass(slots=True)
class BatchStats:
    """Counts of one batch, summed by the worker into its metrics."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    published: int = 0
    users_touched: int = 0  # without a refresher: the users whose state changed
    source_timestamps_ms: list[int] = field(default_factory=list)
    published_source_ts_ms: list[int] = field(default_factory=list)  # one per list sent
    # Seconds this batch spent per stage (``STAGES``): its latency budget.
    stages_s: dict[str, float] = field(default_factory=dict)


STAGES = (
    "take",  # the oldest record waiting in the agent's take for its micro-batch
    "queue",  # the micro-batch waiting for the one before it to finish
    "decode",
    "redis_read",
    "state_rules",
    "score",  # encoder, candidates and re-ranking (their split: the scorer's timings)
    "redis_write",
    "publish",
    "ack",  # acking the records (Faust commits acked offsets every commit interval)
)
"""The stages of a micro-batch, in order, as the worker times them."""

DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]


def refuse(record: SourceRecord, refusal: Refusal, now_ms: int) -> DeadLetter:
    """The dead letter of a refused record: reason, detail and the original bytes."""
    return DeadLetter(
        reason=refusal.reason,
        detail=refusal.detail,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key,
        value=record.value,
        failed_ts=now_ms,
    )


def decode_records(
    records: Sequence[SourceRecord], limits: DecodeLimits, now_ms: int | None
) -> tuple[list[tuple[SourceRecord, InteractionEvent]], list[DeadLetter]]:
    """Decode a batch; events keyed by anything but their user id are refused.

    The key decides the partition, and a user's state lives with its partition, so a
    mis-keyed event would split a user's state; it is dead-lettered instead.
    """
    decoded_all = decode_interactions(list(map(_value, records)), limits, now_ms)
    if set(map(type, decoded_all)) <= {InteractionEvent}:  # no refusal: checked as a whole
        events: list[InteractionEvent] = decoded_all  # type: ignore[assignment]
        if _keyed_by_user(records, events):
            return list(zip(records, events, strict=True)), []
    good: list[tuple[SourceRecord, InteractionEvent]] = []
    bad: list[DeadLetter] = []
    failed_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    for rec, decoded in zip(records, decoded_all, strict=True):
        if isinstance(decoded, Refusal):
            bad.append(refuse(rec, decoded, failed_ms))
        elif rec.key != event_key(decoded.user_id):
            detail = "record key must be the event's user_id (utf-8); it decides the partition"
            bad.append(refuse(rec, Refusal("key_mismatch", detail), failed_ms))
        else:
            good.append((rec, decoded))
    return good, bad


_value = attrgetter("value")
_key = attrgetter("key")
_user_id = attrgetter("user_id")


def _keyed_by_user(records: Sequence[SourceRecord], events: Sequence[InteractionEvent]) -> bool:
    """Whether each record's key is its event's ``event_key``, by one comparison of
    joined lines: a decoded user id holds no newline, so the users' lines match the
    keys' only if no key holds one either and every key equals its user id's bytes.

    >>> recs = [SourceRecord("t", 0, 0, b"u1", b""), SourceRecord("t", 0, 1, b"u2", b"")]
    >>> evs = [InteractionEvent("e", u, "i", "view", 1) for u in ("u1", "u2")]
    >>> _keyed_by_user(recs, evs), _keyed_by_user(recs[::-1], evs)
    (True, False)
    """
    keys = list(map(_key, records))
    if None in keys:
        return False
    return b"\n".join(keys) == "\n".join(map(_user_id, events)).encode()


class IngestProcessor:
    """Applies micro-batches of interaction records to a state store."""

    def __init__(
        self,
        store: StateStore,
        rules: StateRules,
        limits: DecodeLimits,
        *,
        dead_letter_sink: DeadLetterSink,
        list_sink: ListSink | None = None,
        refresher: Refresher | None = None,
        check_future: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rules = rules
        self.limits = limits
        self.dead_letter_sink = dead_letter_sink
        self.publisher = ListPublisher(store, list_sink, clock)
        self.refresher = refresher
        self.check_future = check_future
        self.clock = clock

    async def process(self, records: Sequence[SourceRecord]) -> BatchStats:
        """Apply one batch; returns its counts. Raises only on store/sink failure."""
        now_ms = int(self.clock() * 1000)
        stats = BatchStats(records=len(records))
        stages = stats.stages_s
        mark = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            stages[stage] = stages.get(stage, 0.0) + now - mark
            mark = now

        good, bad = decode_records(records, self.limits, now_ms if self.check_future else None)
        lap("decode")
        if bad:
            await self.dead_letter_sink(bad)
            stats.dead_lettered = len(bad)

        by_partition: dict[int, list[tuple[SourceRecord, InteractionEvent]]] = {}
        last_offset: dict[int, int] = {}
        for rec in records:
            if rec.offset > last_offset.get(rec.partition, -1):
                last_offset[rec.partition] = rec.offset
        for pair in good:
            p = pair[0].partition
            mine = by_partition.get(p)
            if mine is None:
                by_partition[p] = [pair]
            else:
                mine.append(pair)

        reads = [
            PartitionRead(p, tuple(dict.fromkeys(ev.user_id for _, ev in pairs)))
            for p, pairs in by_partition.items()
        ]
        reads += [PartitionRead(p, ()) for p in last_offset if p not in by_partition]
        lap("publish")  # dead letters, if any, are sent above
        snapshots = await self.store.read(reads)
        lap("redis_read")

        writes: list[PartitionWrite] = []
        touched: list[TouchedUser] = []
        for p, snap in snapshots.items():
            pairs = by_partition.get(p, [])
            fresh = [(r, e) for r, e in pairs if r.offset > snap.watermark]
            stats.redelivered += len(pairs) - len(fresh)
            write, outcome = self._partition_write(p, snap, fresh, last_offset[p])
            stats.applied += len(outcome.applied)
            stats.duplicates += len(outcome.duplicates)
            writes.append(write)
            if self.refresher is None:  # nothing reads them: count, do not build
                stats.users_touched += len(outcome.states)
            else:
                touched += _touched_users(p, snap, pairs, outcome)
        if touched:
            stats.users_touched = len(touched)
            stats.source_timestamps_ms = [t.source_timestamp_ms for t in touched]
        lap("state_rules")

        refresh = Refresh()
        if self.refresher is not None and touched:
            refresh = await self.refresher.refresh(touched, now_ms)
        lap("score")
        part_of = {t.user_id: t.partition for t in touched}
        sent = await self.publisher.commit(writes, part_of, refresh, stages)
        if sent and self.publisher.sink is not None:
            stats.published = len(sent)
            stats.published_source_ts_ms = [
                t.source_timestamp_ms for t in touched if t.user_id in refresh.lists
            ]
        return stats

    def _partition_write(
        self,
        partition: int,
        snap: PartitionSnapshot,
        fresh: list[tuple[SourceRecord, InteractionEvent]],
        last_offset: int,
    ) -> tuple[PartitionWrite, BatchOutcome]:
        events = [e for _, e in fresh]
        ref = snap.trend_ref_ms
        factor: float | None = None
        if events:
            newest = max([e.ts for e in events])
            if ref is None:
                # The newest, not the oldest: every exponent is then <= 0, so a batch
                # spanning years (a 1991 event next to today's) cannot overflow 2**x.
                ref = newest
            elif needs_rebase(newest, ref, self.rules.trending_half_life_s):
                factor = rebase_factor(ref, newest, self.rules.trending_half_life_s)
                ref = newest
        ref = 0 if ref is None else ref
        states = {uid: rec.state for uid, rec in snap.users.items()}
        outcome = apply_events(states, events, self.rules, ref)
        write = PartitionWrite(
            partition=partition,
            watermark=max(last_offset, snap.watermark),
            trend_ref_ms=ref,
            states=outcome.states,
            popularity=outcome.popularity,
            rebase_factor=factor,
            expected_watermark=snap.watermark,
        )
        return write, outcome


def _touched_users(
    partition: int,
    snap: PartitionSnapshot,
    pairs: list[tuple[SourceRecord, InteractionEvent]],
    outcome: BatchOutcome,
) -> list[TouchedUser]:
    """Users with new state, plus users of redelivered records (their list may be lost).

    Each names the newest event its state has applied: the last one this batch applied
    for the user, else (nothing applied: redelivered or duplicate records only) the
    record of the state's newest applied event if the batch carries it, else none (the
    scorer then reads it from the state). A re-sent old event that ends the batch is
    not what the list reflects, so it never becomes the list's source.
    """
    applied = {id(ev) for ev in outcome.applied}
    last: dict[str, tuple[SourceRecord, InteractionEvent]] = {}
    newest: dict[str, tuple[SourceRecord, InteractionEvent]] = {}
    for rec, ev in pairs:
        last[ev.user_id] = (rec, ev)
        if id(ev) in applied:
            newest[ev.user_id] = (rec, ev)
    by_id = {ev.event_id: (rec, ev) for rec, ev in pairs}
    out: list[TouchedUser] = []
    for uid, (rec, _) in last.items():
        old = snap.users.get(uid)
        state = outcome.states.get(uid) or (old.state if old else None)
        if state is None:
            continue
        source: InteractionEvent | None = None
        if uid in newest:
            rec, source = newest[uid]
        elif state.recent_event_ids and state.recent_event_ids[-1] in by_id:
            rec, source = by_id[state.recent_event_ids[-1]]
        out.append(
            TouchedUser(
                user_id=uid,
                partition=partition,
                state=state,
                embedding=old.embedding if old else None,
                last_event=source,
                source_timestamp_ms=rec.timestamp_ms,
            )
        )
    return out
