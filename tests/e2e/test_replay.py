"""Replay rebuilds state into a new generation; readers never see it half-built.

State is wiped, the topics are replayed into a new generation while a running worker
keeps consuming (and new events keep arriving) and a reader keeps polling through the
generation pointer. The reader must only ever see the wiped state or the complete
rebuilt one; the final state must equal the original plus the new events, each
applied once; and a second replay must change nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from redis import Redis
from worker_harness import WorkerProcess, wait_for

from freshet.settings import Settings
from freshet.simulator.config import SimConfig
from freshet.simulator.stream import simulate
from freshet.wiring import kafka_of
from schemas.codec import encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.core.state_rules import UserState, replay_states
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.generation import parse_generation
from streams.redis_io.keyspace import Keyspace
from streams.runtime.replay import Replayer
from streams.runtime.worker import rules_of

pytestmark = [pytest.mark.services, pytest.mark.slow]
P = 4


def served(client: Redis, ns: str) -> Keyspace:
    return Keyspace(ns, parse_generation(client.get(Keyspace(ns).generation_pointer)))


def dump(client: Redis, ns: str, users: list[str]) -> tuple[dict[str, UserState], dict[str, int]]:
    keys = served(client, ns)
    states = {}
    for uid in users:
        blob = client.hget(keys.user(partition_for(event_key(uid), P), uid), "s")
        if blob is not None:
            states[uid] = UserState.from_obj(orjson.loads(blob))
    counts: dict[str, int] = {}
    for p in range(P):
        for item, n in client.hgetall(keys.counts(p)).items():
            counts[item.decode()] = counts.get(item.decode(), 0) + int(n)
    return states, counts


def read_lists(settings: Settings, topic: str, expect: int) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    out: list[dict[str, object]] = []
    try:
        for msg in consumer:
            out.append(orjson.loads(msg.value))
            if len(out) >= expect:
                break
    finally:
        consumer.close()
    return out


def applied(client: Redis, ns: str) -> int:
    keys = served(client, ns)
    return sum(int(w) + 1 for p in range(P) if (w := client.get(keys.watermark(p))) is not None)


def test_replay_into_new_generation(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(topic_partitions=P, realtime=False)
    topics = Topics(settings.topic_prefix)
    ns = settings.redis_namespace
    ensure_topics(kafka_of(settings))
    stream = list(simulate(SimConfig(users=300, items=200, events=6_000, duplicates=0.02), seed=5))
    events = [e for e in stream if isinstance(e, InteractionEvent)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)

    def send(ev: InteractionEvent | CatalogEvent) -> None:
        if isinstance(ev, InteractionEvent):
            producer.send(topics.events, key=event_key(ev.user_id), value=encode(ev))
        else:
            producer.send(topics.catalog, key=catalog_key(ev.item_id), value=encode(ev))

    for ev in stream:
        send(ev)
    producer.flush()
    client = Redis.from_url(settings.redis_url)
    worker = WorkerProcess(settings, tmp_path / "worker.log", FRESHET_REALTIME="false")
    try:
        wait_for(lambda: applied(client, ns) >= len(events), 120, "the first pass", worker)
        users = sorted({e.user_id for e in events})
        original = dump(client, ns, users)
        oracle_states, oracle_counts = replay_states(events, rules_of(settings))
        assert original == (oracle_states, oracle_counts)

        # Wipe the served generation: readers now see nothing.
        g1 = served(client, ns)
        for key in client.scan_iter(match=g1.partition_pattern()):
            client.unlink(key)
        assert dump(client, ns, users) == ({}, {})

        sample = users[:25]
        expected_sample = {u: original[0][u] for u in sample}
        seen: list[str] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    states, _ = dump(client, ns, sample)
                    if not states:
                        seen.append("empty")
                    elif states == expected_sample:
                        seen.append("full")
                    else:
                        seen.append(f"partial:{len(states)}")
                except BaseException as exc:  # a reader error is an observation too
                    seen.append(f"error:{exc!r}")
                time.sleep(0.005)

        poller = threading.Thread(target=reader, daemon=True)
        poller.start()

        # New events keep arriving during the replay, for users the reader does not watch.
        late = [
            InteractionEvent(
                f"late-{i}", f"u-late-{i % 7}", events[i].item_id, "view", events[-1].ts + i
            )
            for i in range(300)
        ]

        def trickle() -> None:
            for ev in late:
                send(ev)
                time.sleep(0.004)
            producer.flush()

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()

        async def run_replay(republish: bool = False) -> tuple[str, int]:
            from redis.asyncio import Redis as AsyncRedis

            redis = AsyncRedis.from_url(settings.redis_url)
            try:
                result = await Replayer(settings, redis, batch=500).run(republish=republish)
                return result.generation, result.published
            finally:
                await redis.aclose()

        g2, _ = asyncio.run(run_replay())
        sender.join(timeout=30)
        wait_for(lambda: applied(client, ns) >= len(events) + len(late), 60, "late events", worker)
        after_switch = len(seen)
        wait_for(lambda: len(seen) >= after_switch + 5, 30, "reads after the switch")
        stop.set()
        poller.join(timeout=5)

        assert g2 == "g2" and served(client, ns).generation == "g2"
        assert seen and all(s in {"empty", "full"} for s in seen), sorted(set(seen))
        assert seen[-1] == "full", (seen.count("empty"), seen.count("full"), seen[-3:])
        assert not list(client.scan_iter(match=g1.partition_pattern())), "old generation dropped"

        everyone = users + sorted({e.user_id for e in late})
        final = dump(client, ns, everyone)
        assert final == replay_states(events + late, rules_of(settings))

        # A second replay changes nothing; asked to, it republishes every touched user.
        g3, published = asyncio.run(run_replay(republish=True))
        assert g3 == "g3"
        assert dump(client, ns, everyone) == final
        assert published == len(everyone)
        lists = read_lists(settings, topics.recommendations, published)
        assert sorted(rec["user_id"] for rec in lists) == sorted(everyone)  # type: ignore[type-var]
        keys = served(client, ns)
        some = everyone[0]
        stored = client.hget(keys.user(partition_for(event_key(some), P), some), "r")
        by_user = {rec["user_id"]: rec for rec in lists}
        assert stored and orjson.loads(stored) == by_user[some]  # stored as it was sent
        states = final[0]
        for uid in everyone:  # each list names the newest event its state applied
            assert by_user[uid]["source_event_id"] == states[uid].recent_event_ids[-1], uid
        assert worker.alive()
    finally:
        worker.stop()
        producer.close()
