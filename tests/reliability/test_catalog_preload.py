"""The bulk catalog load at start, on the real broker and Redis.

Killed (``kill -9``) midway and started again it leaves the same stored records as
applying every catalog event in order once, commits the workers' group at the end of
the topic so the agent starts there, and stops (leaving the rest to the agent) when
the group has a member.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from freshet.settings import Settings
from freshet.wiring import kafka_of, limits_of
from schemas.codec import encode
from schemas.events import CatalogEvent
from schemas.topics import Topics, catalog_key
from streams.core.catalog import CatalogProcessor, CatalogRecord, InMemoryCatalogStore
from streams.core.ingest import SourceRecord
from streams.kafka_io.event_producer import ensure_topics
from streams.runtime.catalog_preload import PreloadedSnapshot, preload_catalog

N_ITEMS = 3_000


def _events() -> list[tuple[bytes, bytes]]:
    """Upserts, newer versions, removals, an older version after a newer, garbage."""
    out: list[tuple[bytes, bytes]] = []
    t0 = int(time.time() * 1000) - 3_600_000  # event times the decoder takes as recent
    for i in range(N_ITEMS):
        item = f"it{i}"
        ev = CatalogEvent(f"e{i}", "upsert", item, t0 + i, ("c",), {"n": i}, f"t{i}")
        out.append((catalog_key(item), encode(ev)))
        if i % 10 == 0:  # a newer version
            newer = CatalogEvent(f"u{i}", "upsert", item, t0 + 5_000 + i, ("d",), {"n": -i}, "v2")
            out.append((catalog_key(item), encode(newer)))
        if i % 25 == 0:  # a removal, then an older upsert that must not win
            out.append(
                (catalog_key(item), encode(CatalogEvent(f"r{i}", "remove", item, t0 + 9_000)))
            )
            stale = CatalogEvent(f"s{i}", "upsert", item, t0 + 2_000, ("x",), {}, "stale")
            out.append((catalog_key(item), encode(stale)))
        if i % 500 == 0:
            out.append((b"junk", b"\xff not json"))
    return out


def _produce(settings: Settings, msgs: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for key, value in msgs:
        producer.send(Topics(settings.topic_prefix).catalog, key=key, value=value)
    producer.flush()
    producer.close()


def _expected(settings: Settings, msgs: list[tuple[bytes, bytes]]) -> dict[str, CatalogRecord]:
    """Every event applied once, in order, by the same processor on the in-memory store."""
    store = InMemoryCatalogStore()

    async def no_letters(_: object) -> None:
        return None

    proc = CatalogProcessor(store, limits_of(settings), dead_letter_sink=no_letters)
    records = [SourceRecord("t", 0, n, k, v) for n, (k, v) in enumerate(msgs)]
    asyncio.run(proc.process(records))
    return store.records


def _stored(settings: Settings) -> dict[str, CatalogRecord]:
    from redis import Redis

    from streams.redis_io.keyspace import Keyspace

    client = Redis.from_url(settings.redis_url)
    raw = client.hgetall(Keyspace(settings.redis_namespace).catalog)
    client.close()
    return {k.decode(): CatalogRecord.from_json(v) for k, v in raw.items()}


def _committed_at_end(settings: Settings) -> bool:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
    )
    topic = Topics(settings.topic_prefix).catalog
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    end = consumer.end_offsets(tps)
    ok = all(consumer.committed(tp) == end[tp] for tp in tps)
    consumer.close()
    return ok


CHILD = """
import asyncio, sys, time
from freshet.settings import Settings
from streams.runtime.catalog_preload import preload_catalog
settings = Settings.from_env()
asyncio.run(preload_catalog(settings, min_backlog=1, batch=100,
                            after_batch=lambda n: time.sleep(0.05)))
"""


@pytest.mark.timeout(300)
def test_a_load_killed_midway_and_started_again_stores_each_event_once(
    settings: Settings,
) -> None:
    ensure_topics(kafka_of(settings))
    msgs = _events()
    _produce(settings, msgs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
    env.update(
        FRESHET_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        FRESHET_REDIS_URL=settings.redis_url,
        FRESHET_TOPIC_PREFIX=settings.topic_prefix,
        FRESHET_CONSUMER_GROUP=settings.consumer_group,
        FRESHET_REDIS_NAMESPACE=settings.redis_namespace,
        FRESHET_HOME=str(settings.home),
    )
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=Path.cwd())
    try:
        deadline = time.monotonic() + 120
        while len(_stored(settings)) < N_ITEMS // 4:  # some batches stored, not all
            assert child.poll() is None, "the loader ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    partial = len(_stored(settings))
    assert N_ITEMS // 4 <= partial < N_ITEMS
    assert not _committed_at_end(settings)

    stats = asyncio.run(preload_catalog(settings, min_backlog=1, batch=700))
    assert not stats.refused and 0 < stats.records < len(msgs)  # resumed, not restarted
    assert stats.handover is None  # the hash held the killed load's records: read it back
    assert _stored(settings) == _expected(settings, msgs)
    assert _committed_at_end(settings)  # the agent starts at the end of the topic
    again = asyncio.run(preload_catalog(settings, min_backlog=1))
    assert again.backlog == 0 and again.records == 0


def test_a_small_backlog_is_left_to_the_agent(settings: Settings) -> None:
    ensure_topics(kafka_of(settings))
    _produce(settings, _events()[:50])
    stats = asyncio.run(preload_catalog(settings, min_backlog=1_000))
    assert stats.backlog == 50 and stats.records == 0 and _stored(settings) == {}


def test_a_group_with_a_member_refuses_the_commit_and_the_agent_goes_on(
    settings: Settings,
) -> None:
    from kafka import KafkaConsumer

    ensure_topics(kafka_of(settings))
    msgs = _events()[:400]
    _produce(settings, msgs)
    member = KafkaConsumer(
        Topics(settings.topic_prefix).events,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
    )
    try:
        deadline = time.monotonic() + 60
        while not member.assignment():  # joined: the group is not empty
            member.poll(200)
            assert time.monotonic() < deadline
        stats = asyncio.run(preload_catalog(settings, min_backlog=1, batch=100))
    finally:
        member.close()
    assert stats.refused and stats.batches == 0 and stats.handover is None
    assert not _committed_at_end(settings)


async def _first_read(snapshot: object) -> tuple[str, dict[str, CatalogRecord]]:
    """What a worker's first catalog read gets: the head, then every page."""
    head = await snapshot.log_head()  # type: ignore[attr-defined]
    seen: dict[str, CatalogRecord] = {}
    async for page in snapshot.scan(page=500):  # type: ignore[attr-defined]
        seen.update((r.item_id, r) for r in page)
    return head, seen


def test_a_load_into_an_empty_hash_hands_the_whole_catalog_to_the_first_read(
    settings: Settings,
) -> None:
    from redis.asyncio import Redis

    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    ensure_topics(kafka_of(settings))
    msgs = _events()
    _produce(settings, msgs)
    stats = asyncio.run(preload_catalog(settings, min_backlog=1, batch=700))
    assert stats.handover is not None and stats.handover.generation == "g1"
    handed = {r.item_id: r for r in stats.handover.records}
    assert len(handed) == len(stats.handover.records)  # one record an item
    assert handed == _stored(settings) == _expected(settings, msgs)

    late = CatalogRecord("late", ("c",), {}, "", 1, 1)

    async def reads() -> list[tuple[str, dict[str, CatalogRecord]]]:
        client = Redis.from_url(settings.redis_url)
        store = RedisCatalogStore(client, Keyspace(settings.redis_namespace))
        heads = [await store.log_head()]
        snapshot = PreloadedSnapshot(store, lambda: store.keys.generation, stats.handover)
        out = [await _first_read(snapshot)]  # the handover: the hash is not read
        await store.put([late])  # stored after the load: only the store has it
        heads.append(await store.log_head())
        out.append(await _first_read(snapshot))  # a later first read (new generation)
        other = PreloadedSnapshot(store, lambda: "g2", stats.handover)
        out.append(await _first_read(other))  # a handover of another generation
        await client.aclose()
        return [(heads[0], {}), (heads[1], {}), *out]

    (head, _), (head2, _), first, later, elsewhere = asyncio.run(reads())
    assert first == (head, handed)  # followed from the load's last log entry
    assert later == elsewhere == (head2, {**handed, "late": late})  # read from Redis
