"""Fault-injection helpers: a paced producer, catch-up clocks and the exactly-once audit.

The audit's oracle is the events topic itself, read back after the run: its valid
records, in each partition's offset order, replayed offline with the same pure rules
the worker uses. Comparing each user's stored ``n_events`` and each item's stored count
with that replay tells how many events were applied twice and how many were lost.

With ``FRESHET_RELIABILITY_REPORT=<dir>`` set, each test writes one JSON record per
fault into ``<dir>`` (``bench/reliability_report.py`` renders them as a table).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from redis import Redis
from worker_harness import WorkerProcess

from freshet.settings import Settings
from freshet.simulator.config import SimConfig
from freshet.simulator.faults import malformed_messages
from freshet.simulator.stream import simulate
from schemas.codec import decode_dead_letter, encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.core.ingest import SourceRecord, decode_records
from streams.core.state_rules import UserState, replay_states
from streams.redis_io.keyspace import Keyspace
from streams.runtime.worker import limits_of, rules_of

REPORT_ENV = "FRESHET_RELIABILITY_REPORT"


@dataclass(frozen=True)
class Workload:
    """What a fault test sends: catalog records first, then events with malformed ones mixed in."""

    catalog: list[tuple[bytes, bytes]]
    events: list[tuple[bytes, bytes]]
    malformed: int


def build_workload(events: int, seed: int, malformed: int = 200, users: int = 600) -> Workload:
    """Simulated events (3 % exact duplicates) with ``malformed`` bad records spread in."""
    cfg = SimConfig(
        users=users,
        items=400,
        events=events,
        duplicates=0.03,
        new_item_rate=2.0,
        new_user_rate=3.0,
    )
    stream = list(simulate(cfg, seed=seed))
    catalog = [(catalog_key(e.item_id), encode(e)) for e in stream if isinstance(e, CatalogEvent)]
    good = [(event_key(e.user_id), encode(e)) for e in stream if isinstance(e, InteractionEvent)]
    faults = malformed_messages(malformed, seed=seed) if malformed else []
    out: list[tuple[bytes, bytes]] = []
    step = max(1, len(good) // max(1, len(faults)))
    for i, pair in enumerate(good):
        out.append(pair)
        if faults and i % step == 0 and i // step < len(faults):
            out.append((b"u-bad", faults[i // step][0]))
    return Workload(catalog=catalog, events=out, malformed=len(faults))


class PacedProducer(threading.Thread):
    """Sends a workload at a steady rate from a thread, at least once.

    A chunk whose sends fail (broker down) is sent again after a pause: the copies carry
    the same event ids, which is the producer-retry duplicate the worker must absorb.
    """

    def __init__(
        self, settings: Settings, workload: Workload, rate: float, chunk: int = 100
    ) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.workload = workload
        self.rate = rate
        self.chunk = chunk
        self.sent = 0
        self.resent_chunks = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
        )
        try:
            self._send_all(producer, self.topics.catalog, self.workload.catalog, pace=False)
            self._send_all(producer, self.topics.events, self.workload.events, pace=True)
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc
        finally:
            producer.close(timeout=5)
            self.finished.set()

    def _send_all(
        self,
        producer: KafkaProducer,
        topic: str,
        pairs: Sequence[tuple[bytes, bytes]],
        *,
        pace: bool,
    ) -> None:
        start = time.monotonic()
        for lo in range(0, len(pairs), self.chunk):
            part = pairs[lo : lo + self.chunk]
            for attempt in range(200):
                try:
                    futures = [producer.send(topic, key=k, value=v) for k, v in part]
                    producer.flush(timeout=30)
                    for f in futures:
                        f.get(timeout=30)
                    break
                except Exception:
                    if attempt == 199:
                        raise
                    self.resent_chunks += 1
                    time.sleep(0.5)
            if topic == self.topics.events:
                self.sent += len(part)
            if pace:
                ahead = (lo + len(part)) / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_partitions(bootstrap: str, topic: str, partitions: int) -> list[SourceRecord]:
    """Every record of ``topic``, partition by partition in offset order."""
    ends = end_offsets(bootstrap, topic, partitions)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    by_p: dict[int, list[SourceRecord]] = {p: [] for p in range(partitions)}
    try:
        deadline = time.monotonic() + 60
        while any(len(by_p[p]) < ends[p] for p in by_p) and time.monotonic() < deadline:
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                for m in msgs:
                    if m.offset < ends[tp.partition]:
                        by_p[tp.partition].append(
                            SourceRecord(topic, tp.partition, m.offset, m.key, m.value or b"")
                        )
    finally:
        consumer.close()
    return [r for p in range(partitions) for r in sorted(by_p[p], key=lambda r: r.offset)]


def offsets_beyond(
    bootstrap: str, topic: str, applied: dict[int, int], timeout: float = 10.0
) -> dict[int, int]:
    """End offsets once every partition holds a record past ``applied`` (or at timeout).

    Waiting for these to be applied after a fault proves the worker took up records
    that were new after the fault, not ones applied before it.
    """
    deadline = time.monotonic() + timeout
    while True:
        ends = end_offsets(bootstrap, topic, len(applied))
        if all(ends[p] - 1 > w for p, w in applied.items()) or time.monotonic() > deadline:
            return ends
        time.sleep(0.1)


class Watermarks:
    """Reads the worker's per-partition offset watermarks from Redis."""

    def __init__(self, client: Redis, keys: Keyspace, partitions: int) -> None:
        self.client = client
        self.keys = keys
        self.partitions = partitions

    def read(self) -> dict[int, int]:
        try:
            vals = [self.client.get(self.keys.watermark(p)) for p in range(self.partitions)]
        except Exception:
            return {p: -1 for p in range(self.partitions)}
        return {p: -1 if v is None else int(v) for p, v in enumerate(vals)}

    def reached(self, ends: dict[int, int]) -> bool:
        """Whether every record below ``ends`` (exclusive end offsets) has been applied."""
        wms = self.read()
        return all(ends[p] == 0 or wms[p] >= ends[p] - 1 for p in range(self.partitions))


def time_to_reach(
    marks: Watermarks,
    ends: dict[int, int],
    timeout: float,
    what: str,
    procs: Sequence[WorkerProcess] = (),
    since: float | None = None,
) -> float:
    """Seconds (from ``since``, default now) until the watermarks reach ``ends``."""
    t0 = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marks.reached(ends):
            return time.monotonic() - t0
        for proc in procs:
            if not proc.alive():
                raise AssertionError(f"worker died while waiting for {what}:\n{proc.tail()}")
        time.sleep(0.1)
    tails = "\n".join(p.tail(40) for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; {marks.read()}\n{tails}")


@dataclass
class Audit:
    """Redis state against the offline replay of the events topic."""

    records_in: int = 0
    valid: int = 0
    expected_applied: int = 0
    applied: int = 0
    user_excess: int = 0
    user_missing: int = 0
    count_excess: int = 0
    count_missing: int = 0
    users_differing: int = 0
    malformed_records: int = 0
    dead_letter_records: int = 0
    dead_lettered: int = 0
    malformed_not_dead_lettered: int = 0

    @property
    def applied_twice(self) -> int:
        return max(self.user_excess, self.count_excess)

    @property
    def lost(self) -> int:
        return max(self.user_missing, self.count_missing)

    def summary(self) -> str:
        return (
            f"records={self.records_in} valid={self.valid} expected={self.expected_applied} "
            f"applied={self.applied} twice={self.applied_twice} lost={self.lost} "
            f"users_differing={self.users_differing} dead_lettered={self.dead_lettered}"
            f"/{self.malformed_records}"
        )


def audit(settings: Settings, client: Redis, keys: Keyspace) -> Audit:
    """Compare every user's state blob and every item count with the offline replay."""
    partitions = settings.topic_partitions
    topics = Topics(settings.topic_prefix)
    records = read_partitions(settings.kafka_bootstrap, topics.events, partitions)
    good, bad = decode_records(records, limits_of(settings), None)
    events = [ev for _, ev in good]
    states, counts = replay_states(events, rules_of(settings))
    out = Audit(records_in=len(records), valid=len(good), malformed_records=len(bad))
    out.expected_applied = sum(s.n_events for s in states.values())

    uids = sorted(states)
    pipe = client.pipeline(transaction=False)
    for uid in uids:
        pipe.hget(keys.user(partition_for(event_key(uid), partitions), uid), "s")
    for uid, blob in zip(uids, pipe.execute(), strict=True):
        expected = states[uid]
        stored = UserState() if blob is None else UserState.from_obj(orjson.loads(blob))
        out.applied += stored.n_events
        out.user_excess += max(0, stored.n_events - expected.n_events)
        out.user_missing += max(0, expected.n_events - stored.n_events)
        out.users_differing += stored != expected

    stored_counts: dict[str, int] = {}
    for p in range(partitions):
        for item, n in client.hgetall(keys.counts(p)).items():
            stored_counts[item.decode()] = stored_counts.get(item.decode(), 0) + int(n)
    for item in stored_counts.keys() | counts.keys():
        diff = stored_counts.get(item, 0) - counts.get(item, 0)
        out.count_excess += max(0, diff)
        out.count_missing += max(0, -diff)

    letters = read_partitions(settings.kafka_bootstrap, topics.dead_letter, partitions)
    sources = {
        (d.source_partition, d.source_offset)
        for d in (decode_dead_letter(r.value) for r in letters)
    }
    out.dead_letter_records = len(letters)
    out.dead_lettered = len(sources)
    out.malformed_not_dead_lettered = sum(
        (d.source_partition, d.source_offset) not in sources for d in bad
    )
    return out


def assert_exactly_once(result: Audit) -> None:
    """State equals the replay: nothing applied twice, nothing lost, every bad record kept."""
    assert result.applied_twice == 0, result.summary()
    assert result.lost == 0, result.summary()
    assert result.users_differing == 0, result.summary()
    assert result.malformed_not_dead_lettered == 0, result.summary()
    assert result.applied == result.expected_applied, result.summary()


@dataclass
class FaultRecord:
    """One row of the reliability table."""

    fault: str
    audit: Audit
    recovery_s: list[float] = field(default_factory=list)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self) -> None:
        """Write ``<fault>.json`` into ``$FRESHET_RELIABILITY_REPORT`` when it is set."""
        target = os.environ.get(REPORT_ENV)
        if not target:
            return
        folder = Path(target)
        folder.mkdir(parents=True, exist_ok=True)
        row = {
            "fault": self.fault,
            **asdict(self.audit),
            "applied_twice": self.audit.applied_twice,
            "lost": self.audit.lost,
            "recovery_s": [round(x, 2) for x in self.recovery_s],
            "notes": self.notes,
            **self.extra,
        }
        (folder / f"{self.fault}.json").write_text(json.dumps(row, indent=2) + "\n")


def seeded_pauses(seed: int, n: int, low: float, high: float) -> list[float]:
    """``n`` pauses drawn uniformly from [low, high), repeatable by seed."""
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def wait_log(proc: WorkerProcess, needle: str, timeout: float) -> float:
    """Seconds until ``needle`` shows in the worker's log (AssertionError on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if needle in proc.log_path.read_text(errors="replace"):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{proc.tail()}")


def redis_client(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
