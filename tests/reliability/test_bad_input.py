"""Bad input at scale, through the real broker into a running ``freshet worker``.

Ten thousand malformed events (drawn by hypothesis under a fixed seed, each with the
reason it must get by construction) are interleaved with valid ones. Afterwards every
malformed record must sit in the dead-letter topic with its reason and its original
key and bytes, every valid one must be applied (Redis equals the offline replay), no
key outside the keyspace may exist, and the worker's resident memory must stay
bounded. The same holds for catalog events. Files sent by ``freshet produce`` report
each bad line by number and send every good one.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from malformed_input import (
    Fault,
    draw_corpus,
    malformed_catalog,
    malformed_interaction,
)
from redis import Redis
from reliability_harness import (
    Audit,
    FaultRecord,
    Watermarks,
    end_offsets,
    read_partitions,
    redis_client,
    time_to_reach,
)
from typer.testing import CliRunner
from worker_harness import WorkerProcess, wait_for

from freshet.cli import app as cli_app
from freshet.settings import Settings
from freshet.simulator.config import SimConfig
from freshet.simulator.faults import malformed_messages
from freshet.simulator.stream import simulate
from freshet.wiring import kafka_of
from schemas.codec import Refusal, decode_catalog, decode_dead_letter, decode_interaction, encode
from schemas.dead_letter import DeadLetter
from schemas.events import CatalogEvent, EventType, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.core.catalog import CatalogRecord, apply_catalog_event
from streams.core.state_rules import UserState, replay_states
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.keyspace import Keyspace
from streams.runtime.worker import rules_of

pytestmark = [pytest.mark.services, pytest.mark.slow]

PARTITIONS = 4
N_MALFORMED = 10_000
N_MALFORMED_CATALOG = 2_000
#: Growth of the worker's resident memory allowed from the warmed-up baseline to the
#: peak while the bulk of the bad input streams through (measured: +26 MiB). The
#: refused values come to ~56 MiB and their dead letters to ~75 MiB, so a worker that
#: kept either per refused record would break it; one micro-batch (500 records) and
#: Faust's stream buffer are all it should hold.
RSS_GROWTH_BOUND_MIB = 64
ENV = {"FRESHET_REALTIME": "false"}


@dataclass(frozen=True)
class Sent:
    """A record as produced, with where it landed and the reason it must get (None: valid)."""

    key: bytes | None
    value: bytes
    reason: str | None
    partition: int
    offset: int


def _send(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes, str | None, int]]
) -> list[Sent]:
    """Produce in order (one request in flight), returning each record's offset."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_in_flight_requests_per_connection=1,
        max_request_size=1_100_000,
    )
    try:
        futures = [producer.send(topic, key=k, value=v, partition=p) for k, v, _, p in records]
        producer.flush(timeout=120)
        metas = [f.get(timeout=60) for f in futures]
    finally:
        producer.close(timeout=10)
    return [
        Sent(k, v, reason, meta.partition, meta.offset)
        for (k, v, reason, _), meta in zip(records, metas, strict=True)
    ]


def _placed(
    key: bytes | None, value: bytes, reason: str | None, rng: random.Random
) -> tuple[bytes | None, bytes, str | None, int]:
    # Keyed records go where Kafka's default partitioner would put them; a null key
    # gets a seeded partition.
    p = partition_for(key, PARTITIONS) if key is not None else rng.randrange(PARTITIONS)
    return key, value, reason, p


def _interleave(valid: list, bad: list, rng: random.Random) -> list:
    """``bad`` spread at seeded random places among ``valid``, whose order is kept."""
    slots = sorted(rng.sample(range(len(valid) + len(bad)), len(bad)))
    out, vi, bi = [], 0, 0
    for pos in range(len(valid) + len(bad)):
        if bi < len(slots) and slots[bi] == pos:
            out.append(bad[bi])
            bi += 1
        else:
            out.append(valid[vi])
            vi += 1
    return out


class RssSampler(threading.Thread):
    """Samples a process's VmRSS (KiB) from /proc every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every = every
        self.samples: list[int] = []
        self._stop_flag = threading.Event()

    @staticmethod
    def read(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                self.samples.append(self.read(self.pid))
            except (OSError, AssertionError):
                return
            self._stop_flag.wait(self.every)

    def stop(self) -> list[int]:
        self._stop_flag.set()
        self.join(timeout=5)
        return self.samples


def _letters_by_source(settings: Settings) -> dict[tuple[str, int, int], list[DeadLetter]]:
    topics = Topics(settings.topic_prefix)
    out: dict[tuple[str, int, int], list[DeadLetter]] = {}
    for rec in read_partitions(settings.kafka_bootstrap, topics.dead_letter, PARTITIONS):
        d = decode_dead_letter(rec.value)
        out.setdefault((d.source_topic, d.source_partition, d.source_offset), []).append(d)
    return out


def _check_letters(
    sent: Sequence[Sent], topic: str, letters: dict[tuple[str, int, int], list[DeadLetter]]
) -> tuple[int, list[str]]:
    """How many refused records are dead-lettered exactly as due; problems, if any."""
    ok = 0
    problems: list[str] = []
    for s in sent:
        got = letters.get((topic, s.partition, s.offset), [])
        if s.reason is None:
            if got:
                problems.append(
                    f"valid record {s.partition}/{s.offset} dead-lettered: {got[0].reason}"
                )
            continue
        if not got:
            problems.append(
                f"{s.partition}/{s.offset} ({s.reason}) not dead-lettered: {s.value[:80]!r}"
            )
            continue
        wrong = [d for d in got if (d.reason, d.key, d.value) != (s.reason, s.key, s.value)]
        if wrong:
            d = wrong[0]
            problems.append(
                f"{s.partition}/{s.offset}: want {s.reason}, got {d.reason} ({d.detail[:80]}); "
                f"bytes equal: {d.value == s.value}, key equal: {d.key == s.key}"
            )
            continue
        ok += 1
    return ok, problems


_KEY_RE = re.compile(
    r"fr:(meta|gen|pause|g1:(catalog|catalog:log|itemvec|"
    r"\{g1\.p(\d+)\}:(wm|trend|cnt|meta|u:([A-Za-z0-9_.@+=/-]{1,128}))))"
)


def _foreign_keys(client: Redis, users: set[str]) -> list[str]:
    """Keys that are not in the keyspace, or user keys of users that were never valid."""
    out = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        m = _KEY_RE.fullmatch(key)
        if m is None or (m.group(5) is not None and m.group(5) not in users):
            out.append(key)
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _valid(decoded: object) -> Any:
    assert not isinstance(decoded, Refusal), decoded
    return decoded


def _valid_odd_events(now_ms: int) -> list[InteractionEvent]:
    """Valid events that look suspicious: odd but allowed id characters, far-past and
    near-future timestamps inside the accepted window, extreme ratings."""
    users = ["u/1", "u.=@+", "..", "-", "+", "fr", "g1.p0", "u=1/2", "a@b.c", "_"]
    out: list[InteractionEvent] = []
    for i in range(300):
        uid = users[i % len(users)]
        ts = (631_152_000_000 + i * 86_400_000) if i % 3 == 0 else now_ms + (i % 50) * 60_000
        etype: EventType = "rating" if i % 4 == 0 else "view"
        value = [1e308, -1e308, 0.0, 5.0][i % 4] if etype == "rating" else None
        out.append(InteractionEvent(f"odd-{i}", uid, f"i{i % 40}", etype, ts, value))
    return out


def test_ten_thousand_malformed_events_are_dead_lettered_and_valid_ones_applied(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings))
    rng = random.Random(2024)
    now_ms = int(time.time() * 1000)

    cfg = SimConfig(users=300, items=300, events=6_000, duplicates=0.03, new_user_rate=3.0)
    stream = list(simulate(cfg, seed=41))
    catalog = [e for e in stream if isinstance(e, CatalogEvent)]
    valid = [e for e in stream if isinstance(e, InteractionEvent)] + _valid_odd_events(now_ms)
    t0 = time.monotonic()
    drawn = draw_corpus(malformed_interaction(), N_MALFORMED, seed_value=2024)[:N_MALFORMED]
    draw_s = time.monotonic() - t0
    faults: list[Fault] = drawn + [
        (b"u-bad", raw, reason) for raw, reason in malformed_messages(seed=5)
    ]
    assert len(faults) >= N_MALFORMED

    good = [(event_key(e.user_id), encode(e), None) for e in valid]
    records = [_placed(k, v, r, rng) for k, v, r in _interleave(good, faults, rng)]
    warm_n = len(records) // 10

    client = redis_client(settings.redis_url)
    keys = Keyspace(settings.redis_namespace)
    marks = Watermarks(client, keys, PARTITIONS)
    _send(
        settings.kafka_bootstrap,
        topics.catalog,
        [
            (
                catalog_key(e.item_id),
                encode(e),
                None,
                partition_for(catalog_key(e.item_id), PARTITIONS),
            )
            for e in catalog
        ],
    )

    worker = WorkerProcess(settings, tmp_path / "worker.log", **ENV)
    try:
        sent = _send(settings.kafka_bootstrap, topics.events, records[:warm_n])
        time_to_reach(
            marks,
            end_offsets(settings.kafka_bootstrap, topics.events, PARTITIONS),
            120,
            "the warm-up records",
            [worker],
        )
        baseline_kib = RssSampler.read(worker.proc.pid)
        # Every 50 ms: with batch delivery the bulk is applied in about 2 s, and 0.2 s
        # gave 8 samples in CI, too few for a peak.
        sampler = RssSampler(worker.proc.pid, every=0.05)
        sampler.start()
        t_bulk = time.monotonic()
        sent += _send(settings.kafka_bootstrap, topics.events, records[warm_n:])
        ends = end_offsets(settings.kafka_bootstrap, topics.events, PARTITIONS)
        time_to_reach(marks, ends, 240, "every record", [worker])
        bulk_s = time.monotonic() - t_bulk
        samples = sampler.stop()
        log_text = worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()

    # Every malformed record is dead-lettered with its reason, key and original bytes;
    # no valid one is.
    letters = _letters_by_source(settings)
    ok, problems = _check_letters(sent, topics.events, letters)
    assert not problems, f"{len(problems)} problems, first: {problems[:5]}"
    assert ok == len(faults)

    # Every valid record is applied: Redis equals the replay of the valid records in
    # each partition's offset order.
    in_order = sorted((s for s in sent if s.reason is None), key=lambda s: (s.partition, s.offset))
    events = [_valid(decode_interaction(s.value)) for s in in_order]
    states, counts = replay_states(events, rules_of(settings))
    pipe = client.pipeline(transaction=False)
    uids = sorted(states)
    for uid in uids:
        pipe.hget(keys.user(partition_for(event_key(uid), PARTITIONS), uid), "s")
    differing = sum(
        blob is None or UserState.from_obj(orjson.loads(blob)) != states[uid]
        for uid, blob in zip(uids, pipe.execute(), strict=True)
    )
    stored_counts: Counter[str] = Counter()
    for p in range(PARTITIONS):
        for item, n in client.hgetall(keys.counts(p)).items():
            stored_counts[_text(item)] += int(n)
    assert differing == 0
    assert dict(stored_counts) == counts

    # No id got a key of its own outside the keyspace (key injection).
    assert _foreign_keys(client, set(states)) == []

    # Memory stayed bounded while the bad input streamed through.
    peak_kib = max(samples)
    growth_mib = (peak_kib - baseline_kib) / 1024
    assert len(samples) > 10
    assert growth_mib < RSS_GROWTH_BOUND_MIB, (baseline_kib, peak_kib)
    assert "Traceback" not in log_text

    audit = Audit(
        records_in=len(sent),
        valid=len(events),
        expected_applied=sum(s.n_events for s in states.values()),
        applied=sum(s.n_events for s in states.values()) if differing == 0 else 0,
        malformed_records=len(faults),
        dead_letter_records=sum(len(v) for v in letters.values()),
        dead_lettered=ok,
    )
    FaultRecord(
        fault="bad-input-events",
        audit=audit,
        notes=(
            f"{len(faults):,} malformed events ({len(Counter(r for _, _, r in faults))} reasons, "
            f"{sum(len(v) for _, v, _ in faults) / 2**20:.0f} MiB, up to 1 MB each) among "
            f"{len(events):,} valid; worker RSS {baseline_kib / 1024:.0f} MiB warm, peak "
            f"{peak_kib / 1024:.0f} MiB (bound: +{RSS_GROWTH_BOUND_MIB} MiB); bulk applied in "
            f"{bulk_s:.0f} s"
        ),
        extra={
            "reasons": dict(sorted(Counter(r for _, _, r in faults).items())),
            "rss_baseline_mib": round(baseline_kib / 1024, 1),
            "rss_peak_mib": round(peak_kib / 1024, 1),
            "rss_last_mib": round(samples[-1] / 1024, 1),
            "bulk_s": round(bulk_s, 1),
            "draw_s": round(draw_s, 1),
        },
    ).write()


def test_malformed_catalog_events_are_dead_lettered_and_valid_ones_stored(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings))
    rng = random.Random(77)
    cfg = SimConfig(users=50, items=1_500, events=200, new_item_rate=5.0)
    catalog = [e for e in simulate(cfg, seed=43) if isinstance(e, CatalogEvent)]
    faults = draw_corpus(malformed_catalog(), N_MALFORMED_CATALOG, seed_value=77)[
        :N_MALFORMED_CATALOG
    ]
    good = [(catalog_key(e.item_id), encode(e), None) for e in catalog]
    records = [_placed(k, v, r, rng) for k, v, r in _interleave(good, faults, rng)]

    client = redis_client(settings.redis_url)
    keys = Keyspace(settings.redis_namespace)
    worker = WorkerProcess(settings, tmp_path / "worker.log", **ENV)
    try:
        t0 = time.monotonic()
        sent = _send(settings.kafka_bootstrap, topics.catalog, records)
        expected: dict[str, CatalogRecord] = {}
        for s in sorted(
            (s for s in sent if s.reason is None), key=lambda s: (s.partition, s.offset)
        ):
            ev = _valid(decode_catalog(s.value))
            new = apply_catalog_event(expected.get(ev.item_id), ev)
            if new is not None:
                expected[ev.item_id] = new

        def done() -> bool:
            letters = end_offsets(settings.kafka_bootstrap, topics.dead_letter, PARTITIONS)
            return client.hlen(keys.catalog) >= len(expected) and sum(letters.values()) >= len(
                faults
            )

        wait_for(done, 180, "the catalog and its dead letters", worker)
        took = time.monotonic() - t0
    finally:
        worker.stop()

    ok, problems = _check_letters(sent, topics.catalog, _letters_by_source(settings))
    assert not problems, f"{len(problems)} problems, first: {problems[:5]}"
    assert ok == len(faults)
    stored = {_text(k): CatalogRecord.from_json(v) for k, v in client.hgetall(keys.catalog).items()}
    assert stored == expected
    FaultRecord(
        fault="bad-input-catalog",
        audit=Audit(
            records_in=len(sent),
            valid=len(catalog),
            malformed_records=len(faults),
            dead_lettered=ok,
        ),
        notes=f"{len(faults):,} malformed catalog events among {len(catalog):,} valid; "
        f"{len(expected):,} items stored as replayed; {took:.0f} s",
        extra={"reasons": dict(sorted(Counter(r for _, _, r in faults).items()))},
    ).write()


# --- files through freshet produce -----------------------------------------------------


def _cli_env(settings: Settings) -> dict[str, str]:
    return {
        "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
        "FRESHET_TOPIC_PARTITIONS": str(PARTITIONS),
        "FRESHET_HOME": str(settings.home),
        "COLUMNS": "240",
    }


def _reported_lines(output: str) -> dict[int, str]:
    """``line -> reason`` from the refused-lines table of the summary."""
    out = {}
    for m in re.finditer(r"│\s*(\d+)\s*│\s*([a-z0-9_]+)\s*│", output):
        out[int(m.group(1))] = m.group(2)
    return out


def _topic_values(settings: Settings, topic: str) -> list[bytes]:
    return [r.value for r in read_partitions(settings.kafka_bootstrap, topic, PARTITIONS)]


def test_produce_reports_each_bad_jsonl_line_and_sends_every_good_one(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    topics = Topics(settings.topic_prefix)
    cfg = SimConfig(users=40, items=60, events=300, new_item_rate=2.0)
    good = list(simulate(cfg, seed=9))
    # The summary names at most 20 refused lines, so 18 bad lines each get their row.
    bad = [
        (v, r)
        for k, v, r in draw_corpus(malformed_interaction(), 50, seed_value=9)
        if b"\n" not in v and v.strip() and r not in {"key_mismatch", "oversized"}
    ][:18]
    lines: list[bytes] = []
    bad_at: dict[int, str] = {}
    step = len(good) // len(bad)
    for i, ev in enumerate(good):
        lines.append(encode(ev))
        if i % step == 0 and len(bad_at) < len(bad):
            raw, reason = bad[len(bad_at)]
            lines.append(raw)
            bad_at[len(lines)] = reason
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = CliRunner().invoke(cli_app, ["produce", str(path)], env=_cli_env(settings))
    assert result.exit_code == 0, result.output
    assert _reported_lines(result.output) == bad_at
    sent_events = _topic_values(settings, topics.events)
    sent_catalog = _topic_values(settings, topics.catalog)
    assert sorted(sent_events) == sorted(encode(e) for e in good if isinstance(e, InteractionEvent))
    assert sorted(sent_catalog) == sorted(encode(e) for e in good if isinstance(e, CatalogEvent))


def test_produce_reports_each_bad_csv_row_and_sends_every_good_one(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    topics = Topics(settings.topic_prefix)
    rows = ["userId,movieId,rating,timestamp"]
    bad_at: dict[int, str] = {}
    bad_rows: list[tuple[str, str]] = [
        ("u1:s,10,4,978300760", "invalid_id"),
        ("{p0},10,4,978300760", "invalid_id"),
        ("*,10,4,978300760", "invalid_id"),
        ("u1,10,NaN,978300760", "wrong_type"),
        ("u1,10,inf,978300760", "wrong_type"),
        ("u1,10,4,yesterday", "wrong_type"),
        ("u1,10,4,1e999", "wrong_type"),
        ("u1,10,4,-5", "out_of_range"),
        ("u1,10,4,100", "timestamp_out_of_range"),
        ("u1,10", "missing_field"),
        ("u1,,4,978300760", "invalid_id"),
        ("u" * 200 + ",10,4,978300760", "invalid_id"),
    ]
    good = 0
    for i in range(200):
        rows.append(f"u{i % 17},{i % 23},{1 + i % 5},{978_300_760 + i}")
        good += 1
        if i % 14 == 0 and i // 14 < len(bad_rows):
            text, reason = bad_rows[i // 14]
            rows.append(text)
            bad_at[len(rows)] = reason
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(rows) + "\n")
    raw_utf8 = path.read_bytes() + b"u1,10,4,97830\xff0760\n"
    path.write_bytes(raw_utf8)
    bad_at[len(rows) + 1] = "invalid_utf8"

    result = CliRunner().invoke(cli_app, ["produce", str(path)], env=_cli_env(settings))
    assert result.exit_code == 0, result.output
    assert _reported_lines(result.output) == bad_at
    sent = [orjson.loads(v) for v in _topic_values(settings, topics.events)]
    assert len(sent) == good
    assert {e["event_id"] for e in sent} == {
        f"ratings-{n}" for n in range(2, len(rows) + 1) if n not in bad_at
    }
