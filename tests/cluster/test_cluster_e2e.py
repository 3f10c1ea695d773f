"""A ``freshet worker`` on a 3-master Redis Cluster, then a replay on the same cluster.

Simulated events go through the real broker; the worker (``FRESHET_REDIS_CLUSTER``)
must leave exactly the state of the offline recomputation. Every key of a partition,
its users' included, must sit in that partition's one slot, and the partitions must
spread over all three masters. A replay then rebuilds the state into ``g2`` (SCAN and
UNLINK on every master) and the read API serves from it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer
from redis.cluster import RedisCluster
from worker_harness import WorkerProcess, wait_for

from freshet.api.app import ListReader
from freshet.services.redis_cluster_local import LocalRedisCluster
from freshet.settings import Settings
from freshet.simulator.config import SimConfig
from freshet.simulator.stream import simulate
from freshet.wiring import kafka_of, redis_of
from schemas.codec import encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.core.state_rules import UserState, replay_states
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.generation import pause_key
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import async_redis
from streams.runtime.replay import Replayer
from streams.runtime.worker import rules_of

pytestmark = [pytest.mark.services, pytest.mark.slow]
P = 6


def produce(settings: Settings, stream: list[InteractionEvent | CatalogEvent]) -> None:
    topics = Topics(settings.topic_prefix)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    for ev in stream:
        if isinstance(ev, CatalogEvent):
            producer.send(topics.catalog, key=catalog_key(ev.item_id), value=encode(ev))
        else:
            producer.send(topics.events, key=event_key(ev.user_id), value=encode(ev))
    producer.flush()
    producer.close()


def check_state(
    client: RedisCluster, keys: Keyspace, interactions: list[InteractionEvent], settings: Settings
) -> None:
    """The stored users and counts equal the offline recomputation."""
    states, counts = replay_states(interactions, rules_of(settings))
    for uid, expected in states.items():
        blob = client.hget(keys.user(partition_for(event_key(uid), P), uid), "s")
        assert blob is not None, uid
        assert UserState.from_obj(orjson.loads(blob)) == expected, uid
    stored: dict[str, int] = {}
    for p in range(P):
        for raw, n in client.hgetall(keys.counts(p)).items():
            item = raw.decode() if isinstance(raw, bytes) else raw
            stored[item] = stored.get(item, 0) + int(n)
    assert stored == counts


def test_worker_and_replay_on_a_redis_cluster(
    settings: Settings, redis_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    settings = settings.with_(topic_partitions=P, redis_url=redis_cluster.url, redis_cluster=True)
    ensure_topics(kafka_of(settings))
    stream = list(simulate(SimConfig(users=300, items=200, events=6_000), seed=11))
    interactions = [e for e in stream if isinstance(e, InteractionEvent)]
    assert len(interactions) >= 5_000
    produce(settings, stream)

    client = redis_cluster.client()
    keys = Keyspace(settings.redis_namespace)
    last = {p: -1 for p in range(P)}
    for e in interactions:  # one producer, one partition per key: offsets in send order
        last[partition_for(event_key(e.user_id), P)] += 1

    def caught_up(ks: Keyspace) -> bool:
        for p, end in last.items():
            raw = client.get(ks.watermark(p))
            if end >= 0 and (raw is None or int(raw) < end):
                return False
        return True

    worker = WorkerProcess(settings, tmp_path / "worker.log", FRESHET_REDIS_CLUSTER="true")
    try:
        wait_for(lambda: caught_up(keys), 180, "the worker to apply every event", worker)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "CROSSSLOT" not in log, worker.tail()
    check_state(client, keys, interactions, settings)

    # Each user's keys and its partition's keys share one slot; partitions span masters.
    for p in range(P):
        slots = {
            client.keyslot(k)
            for k in (keys.watermark(p), keys.trend(p), keys.counts(p), keys.partition_meta(p))
        }
        users = {e.user_id for e in interactions if partition_for(event_key(e.user_id), P) == p}
        slots |= {client.keyslot(keys.user(p, uid)) for uid in users}
        assert len(slots) == 1, (p, slots)
        server_slot = client.execute_command(
            "CLUSTER KEYSLOT", keys.user(p, min(users)), target_nodes=RedisCluster.RANDOM
        )
        assert int(server_slot) == slots.pop()
    per_master = [n.client().dbsize() for n in redis_cluster.nodes]
    assert all(n > 0 for n in per_master), per_master

    # Replay into g2 on the cluster: switch, drop g1 from every master, serve g2.
    async def replay_and_read() -> tuple[int, bytes, str]:
        redis = async_redis(redis_of(settings))
        try:
            progress = await Replayer(settings, redis).run()
            reader = ListReader(settings, redis, cache_ttl_s=0.0)
            body, source = await reader.latest("u-nobody")
            return progress.records, body, source
        finally:
            await redis.aclose()

    records, body, source = asyncio.run(replay_and_read())
    assert records >= len(interactions)
    # A user without a list gets g2's trending, merged over the partitions' masters.
    assert source == "cold_start" and len(orjson.loads(body)["items"]) > 0
    assert client.get(keys.generation_pointer) == b"g2"
    assert client.get(pause_key(keys)) is None
    assert not list(client.scan_iter(match=keys.partition_pattern())), "g1 dropped everywhere"
    check_state(client, keys.with_generation("g2"), interactions, settings)
    client.close()
