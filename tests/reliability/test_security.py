"""Security: a worker on an authenticated TLS Redis, secrets kept out of sight, bounded
per-user state under a flood, and ids that cannot reach another user's keys.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kafka import KafkaProducer
from malformed_input import INJECTION_IDS
from redis import Redis
from reliability_harness import FaultRecord, Watermarks, assert_exactly_once, audit, end_offsets
from self_signed import self_signed_cert
from worker_harness import WorkerProcess, wait_for

from freshet.services.kafka_local import LocalKafka
from freshet.services.ports import free_port
from freshet.services.redis_local import LocalRedis, RedisTLS
from freshet.settings import Secret, Settings
from freshet.simulator.config import SimConfig
from freshet.simulator.stream import simulate
from freshet.wiring import kafka_of, redis_of
from schemas.codec import ID_RE, encode
from schemas.events import EventType, InteractionEvent
from schemas.topics import Topics, event_key, partition_for
from streams.core.state_rules import UserState
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.keyspace import InvalidKeyId, Keyspace
from streams.redis_io.redis_client import sync_redis

PARTITIONS = 4
PASSWORD = "s3cr3t-P4ss/w0rd+n0t-in-logs"
FLOOD_USER = "flood-user"
FLOOD = 3_000


def _flood(now_ms: int) -> list[InteractionEvent]:
    """One user's burst: many distinct items, some purchases, every 7th a resend."""
    out: list[InteractionEvent] = []
    for i in range(FLOOD):
        etype: EventType = "purchase" if i % 5 == 0 else "view"
        out.append(InteractionEvent(f"f-{i}", FLOOD_USER, f"fi{i}", etype, now_ms - FLOOD + i))
        if i % 7 == 0:
            out.append(out[-1])  # a producer's exact duplicate
    return out


@pytest.mark.slow
def test_worker_on_password_and_tls_redis_keeps_exactly_once_and_the_secret(
    kafka: LocalKafka, make_redis: Callable[..., LocalRedis], topic_prefix: str, tmp_path: Path
) -> None:
    cert, key = self_signed_cert(tmp_path)
    server = make_redis(password=PASSWORD, tls=RedisTLS(cert_file=cert, key_file=key, ca_file=cert))
    url = f"rediss://127.0.0.1:{server.tls_port}/0"  # the password travels apart from the URL
    metrics_port = free_port()
    settings = Settings.from_env(
        {},
        kafka_bootstrap=kafka.bootstrap,
        redis_url=url,
        redis_password=PASSWORD,
        redis_ssl_ca_certs=str(cert),
        topic_prefix=topic_prefix,
        home=tmp_path,
        topic_partitions=PARTITIONS,
    )
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings))

    # The plain port refuses without the password; the TLS port needs TLS and the password.
    with pytest.raises(Exception, match=r"(?i)auth"):
        Redis(host="127.0.0.1", port=server.port, socket_timeout=2).set("x", 1)
    wrong = sync_redis(redis_of(settings.with_(redis_password="wrong-" + PASSWORD)))
    with pytest.raises(Exception) as refused:
        wrong.ping()
    assert PASSWORD not in str(refused.value) and PASSWORD not in repr(refused.value)
    client: Redis = sync_redis(redis_of(settings))
    assert client.ping()

    now_ms = int(time.time() * 1000)
    cfg = SimConfig(users=200, items=200, events=3_000, duplicates=0.03)
    stream = list(simulate(cfg, seed=61))
    events = [e for e in stream if isinstance(e, InteractionEvent)] + _flood(now_ms)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    for ev in stream:
        if not isinstance(ev, InteractionEvent):
            producer.send(topics.catalog, key=ev.item_id.encode(), value=encode(ev))
    for ev in events:
        producer.send(topics.events, key=event_key(ev.user_id), value=encode(ev))
    producer.flush()
    producer.close()

    keys = Keyspace(settings.redis_namespace)
    marks = Watermarks(client, keys, PARTITIONS)
    ends = end_offsets(settings.kafka_bootstrap, topics.events, PARTITIONS)
    env = {
        "FRESHET_REDIS_PASSWORD": PASSWORD,
        "FRESHET_REDIS_SSL_CA_CERTS": str(cert),
        "FRESHET_METRICS_PORT": str(metrics_port),
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log", **env)
    t0 = time.monotonic()
    try:
        wait_for(lambda: marks.reached(ends), 180, "every event over TLS", worker)
        took = time.monotonic() - t0
        applied = re.compile(rb'freshet_events_total\{outcome="applied"\} [1-9]')
        scrapes = [b""]

        def counted() -> bool:  # polls the endpoint until it counts the applied events
            scrapes.append(_scrape(metrics_port))
            return applied.search(scrapes[-1]) is not None

        wait_for(counted, 30, "the applied events in the metrics", worker)
        scraped = scrapes[-1]
    finally:
        worker.stop()
    log_text = worker.log_path.read_text(errors="replace")

    result = audit(settings, client, keys)
    assert_exactly_once(result)
    assert result.valid == len(events)

    # (b) The password shows nowhere: log, metrics, settings, clients, errors.
    assert re.search(rb'freshet_events_total\{outcome="applied"\} [1-9]', scraped), scraped[:500]
    assert PASSWORD.encode() not in scraped
    assert PASSWORD not in log_text
    assert "Traceback" not in log_text
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.safe_dict())
    assert PASSWORD not in repr(client) and PASSWORD not in repr(client.connection_pool)
    with pytest.raises(ValueError) as bad:
        Settings.from_env({"FRESHET_REDIS_PASSWORD": PASSWORD, "FRESHET_BATCH_MAX_EVENTS": "many"})
    assert PASSWORD not in str(bad.value)

    # (c) One user's flood stays within the state bounds.
    p = partition_for(event_key(FLOOD_USER), PARTITIONS)
    blob = client.hget(keys.user(p, FLOOD_USER), "s")
    assert blob is not None
    state = UserState.from_obj(orjson.loads(blob))
    assert state.n_events == FLOOD  # duplicates absorbed
    assert len(state.history) == settings.history_len
    assert len(state.seen) == settings.seen_max
    assert len(state.purchased) == min(FLOOD // 5, settings.seen_max)
    assert len(state.recent_event_ids) == settings.dedup_window
    user_bytes = client.memory_usage(keys.user(p, FLOOD_USER)) or 0
    assert user_bytes < 64 * 1024, user_bytes

    FaultRecord(
        fault="security-tls-password",
        audit=result,
        notes=f"worker on Redis with requirepass over TLS (rediss://, CA file, password from "
        f"FRESHET_REDIS_PASSWORD): {result.valid:,} records applied exactly once in {took:.0f} s; "
        f"password absent from log, /metrics, Settings repr and errors; one user flooded with "
        f"{FLOOD:,} events (+{FLOOD // 7 + 1} resends): history {len(state.history)}, seen "
        f"{len(state.seen)}, dedup ids {len(state.recent_event_ids)}, {len(blob):,} B blob, "
        f"{user_bytes:,} B in Redis",
        extra={"flood_blob_bytes": len(blob), "flood_redis_bytes": user_bytes},
    ).write()


def _scrape(port: int) -> bytes:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            return bytes(resp.read())
    except OSError:
        return b""


# --- (d) keys: no id reaches another user's keys -----------------------------------------

KEYS = Keyspace()
_USER_KEY = re.compile(r"fr:g1:\{g1\.p(\d+)\}:u:([^:{}\s]+)")


@pytest.mark.parametrize("bad", INJECTION_IDS)
def test_injection_ids_cannot_become_keys(bad: str) -> None:
    with pytest.raises(InvalidKeyId):
        KEYS.user(0, bad)


@pytest.mark.parametrize("bad", INJECTION_IDS)
def test_injection_ids_cannot_become_keys_in_a_batch_either(bad: str) -> None:
    with pytest.raises(InvalidKeyId):
        KEYS.users(0, ["alice", bad, "bob"])


@seed(6)
@hsettings(max_examples=500, database=None, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(["a", "u-1", "x@y.z", "a\nb", "b\n"]), st.text(max_size=20)))
)
def test_batch_user_keys_are_the_user_keys(user_ids: list[str]) -> None:
    """``users`` (one check over a batch's ids) refuses exactly what ``user`` refuses,
    and builds the same keys otherwise: ids joined with a newline cannot pass as two."""
    try:
        one_by_one = [KEYS.user(3, u) for u in user_ids]
    except InvalidKeyId:
        with pytest.raises(InvalidKeyId):
            KEYS.users(3, user_ids)
        return
    assert KEYS.users(3, user_ids) == one_by_one


@seed(5)
@hsettings(max_examples=500, database=None, deadline=None)
@given(st.text(max_size=140), st.integers(0, 63))
def test_a_user_key_names_exactly_one_user_of_its_partition(user_id: str, partition: int) -> None:
    """Any id either is refused, or yields a key that parses back to that id alone."""
    try:
        key = KEYS.user(partition, user_id)
    except InvalidKeyId:
        assert ID_RE.fullmatch(user_id) is None
        return
    m = _USER_KEY.fullmatch(key)
    assert m is not None, key
    assert (int(m.group(1)), m.group(2)) == (partition, user_id)
    others = {KEYS.watermark(partition), KEYS.trend(partition), KEYS.counts(partition)}
    assert key not in others | {KEYS.partition_meta(partition), KEYS.catalog, KEYS.meta}


def test_secret_hides_itself() -> None:
    s = Secret(PASSWORD)
    assert PASSWORD not in repr(s) and PASSWORD not in str(s) and PASSWORD not in f"{s}"
    settings = Settings().with_(redis_password=PASSWORD)
    assert PASSWORD not in repr(settings)
    assert settings.redis_password.get() == PASSWORD
