"""Fresh lists on the real Kafka and Redis, with a trained bundle served and swapped.

One worker process, one simulated shop. After the past is replayed:
- an active user's event yields a new list on the recommendations topic that excludes
  the item just consumed and differs from the list before;
- a user never seen before gets a ``cold_start`` list: trending, exploration, and the
  items that followed the one they viewed (co-visitation learnt from the replay);
- a newly announced item reaches lists of users whose tastes match its category;
- a bundle written mid-stream is picked up (model version changes) and no event is lost;
- a corrupt bundle is refused and the previous one keeps serving.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from redis import Redis
from worker_harness import WorkerProcess, wait_for

from freshet.services.ports import free_port
from freshet.settings import Settings
from freshet.simulator.config import SimConfig
from freshet.simulator.stream import stream_events
from freshet.simulator.world import World
from freshet.wiring import kafka_of
from inference.bundle import read_current
from schemas.codec import encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.keyspace import Keyspace

pytestmark = [pytest.mark.services, pytest.mark.slow]

DAY = 86_400_000


def train(events: list[InteractionEvent | CatalogEvent], bundle_dir: Path, seed: int) -> str:
    from training.pipeline import run
    from training.train import TrainConfig

    cfg = TrainConfig(epochs=2, threads=1, seed=seed, valid_cases=300, samples_per_epoch=20_000)
    run(events, bundle_dir, cfg, test_cases=300, show=False)
    version = read_current(bundle_dir)
    assert version is not None
    return version


def followers_of(item: str, events: list[InteractionEvent | CatalogEvent], window: int) -> set[str]:
    """Items some user visited within ``window`` distinct visits after ``item``."""
    visits: dict[str, list[str]] = {}
    for e in events:
        if isinstance(e, InteractionEvent):
            seq = visits.setdefault(e.user_id, [])
            if not seq or seq[-1] != e.item_id:
                seq.append(e.item_id)
    out = {
        f
        for seq in visits.values()
        for i, x in enumerate(seq)
        if x == item
        for f in seq[i + 1 : i + 1 + window]
    }
    return out - {item}


class Lists:
    """Reads the recommendations topic from a given offset onwards."""

    def __init__(self, settings: Settings) -> None:
        self.topic = Topics(settings.topic_prefix).recommendations
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, consumer_timeout_ms=300
        )
        self.tps = [TopicPartition(self.topic, p) for p in range(settings.topic_partitions)]
        self.consumer.assign(self.tps)
        for tp, end in self.consumer.end_offsets(self.tps).items():
            self.consumer.seek(tp, end)  # explicit: seek_to_end resolves lazily, too late
        self.seen: list[dict[str, object]] = []

    def poll(self) -> list[dict[str, object]]:
        fresh = [orjson.loads(m.value) for m in self.consumer]
        self.seen.extend(fresh)
        return fresh

    def for_user(self, user: str, after_event: str, timeout: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            for rec in self.seen:
                if rec["user_id"] == user and rec["source_event_id"] == after_event:
                    return rec
        raise AssertionError(f"no list for {user} after {after_event}")


def test_realtime_lists(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(topic_partitions=4, debounce_ms=0, bundle_dir=tmp_path / "bundles")
    topics = Topics(settings.topic_prefix)
    now = int(time.time() * 1000)
    cfg = SimConfig(
        users=400,
        items=300,
        categories=6,
        events=8_000,
        rate=8_000 / (2 * 86_400),
        start_ms=now - 4 * DAY,
    )
    world = World(cfg, seed=11)
    past = list(stream_events(world))
    v1 = train(past, settings.bundle_dir, seed=0)

    ensure_topics(kafka_of(settings))
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=2)

    def send(ev: InteractionEvent | CatalogEvent) -> None:
        if isinstance(ev, InteractionEvent):
            producer.send(topics.events, key=event_key(ev.user_id), value=encode(ev))
        else:
            producer.send(topics.catalog, key=catalog_key(ev.item_id), value=encode(ev))

    for ev in past:
        send(ev)
    producer.flush()
    client = Redis.from_url(settings.redis_url)
    keys = Keyspace(settings.redis_namespace)

    def applied() -> int:
        return sum(int(w) + 1 for p in range(4) if (w := client.get(keys.watermark(p))) is not None)

    n_past = sum(isinstance(e, InteractionEvent) for e in past)
    metrics_port = free_port()
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", FRESHET_METRICS_PORT=str(metrics_port)
    )

    def catalog_items() -> int:
        """The worker's online catalog size, from its metrics endpoint (-1: not yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=3) as r:
                found = re.search(rb"^freshet_catalog_items (\S+)$", r.read(), re.MULTILINE)
        except OSError:
            return -1
        return int(float(found.group(1))) if found else -1

    try:
        wait_for(lambda: applied() >= n_past, 240, "the past to be replayed", worker)
        wait_for(lambda: b"serving bundle" in worker.log_path.read_bytes(), 60, "bundle", worker)
        lists = Lists(settings)

        # 1. An active user's event: a fresh list that reflects it.
        users = Counter(e.user_id for e in past if isinstance(e, InteractionEvent))
        live: list[InteractionEvent | CatalogEvent] = []
        for n, (user, _) in enumerate(users.most_common(5)):
            part = partition_for(event_key(user), 4)
            # A replay applied before the bundle was served holds its users and owes
            # them a list once the scorer is ready (``compute_async``): wait for it.
            wait_for(
                lambda p=part, u=user: bool(client.hget(keys.user(p, u), "r")),
                60,
                f"{user}'s list owed from the replay",
                worker,
            )
            before = orjson.loads(client.hget(keys.user(part, user), "r") or b"{}")
            shown = [it["item_id"] for it in before.get("items", [])]
            assert shown, f"{user} had no stored list after the replay"
            ev = InteractionEvent(f"live-{n}", user, shown[0], "purchase", int(time.time() * 1000))
            live.append(ev)
            send(ev)
            producer.flush()
            rec = lists.for_user(user, ev.event_id)
            after = [it["item_id"] for it in rec["items"]]  # type: ignore[attr-defined]
            assert shown[0] not in after, "the purchased item must be excluded"
            assert after != shown, "the list must change after the event"
            assert rec["strategy"] == "personalised" and rec["model_version"] == v1
            assert rec["published_ts"] >= ev.ts  # type: ignore[operator]

        # 2. A user never seen before gets a cold-start list.
        cold = InteractionEvent("live-cold", "u-brand-new", past[-1].item_id, "view", now)
        send(cold)
        producer.flush()
        rec = lists.for_user("u-brand-new", "live-cold")
        assert rec["strategy"] == "cold_start"
        # Trending and exploration, plus what followed the viewed item in past sessions.
        followers = followers_of(cold.item_id, [*past, *live], settings.covisit_window)
        extra = [
            it["item_id"]
            for it in rec["items"]  # type: ignore[attr-defined]
            if it["reason"] not in {"trending", "exploration"}
        ]
        assert set(extra) <= followers, (extra, followers)
        shown_now = {it["item_id"] for it in rec["items"]}  # type: ignore[attr-defined]
        assert not followers or followers & shown_now, "no follower of the viewed item"

        # 3. A new item reaches users whose tastes match its category.
        cat = int(np.argmax(np.bincount(world.item_category, minlength=cfg.categories)))
        template = int(np.flatnonzero(world.item_category == cat)[0])
        upsert = world.catalog_upsert(template, "live-cat-1", int(time.time() * 1000))
        new_item = dataclasses.replace(upsert, item_id="i-fresh-1")
        wait_for(lambda: catalog_items() > 0, 30, "the catalog size in the metrics", worker)
        known = catalog_items()
        send(new_item)
        producer.flush()
        # The catalog agent stores it, and the worker's log tail adds it to its catalog.
        wait_for(lambda: catalog_items() > known, 30, "the new item in the catalog", worker)
        fans = np.argsort(-world.user_tastes[:, cat])[:40]
        others = np.argsort(world.user_tastes[:, cat])[:40]
        hits = {"fans": 0, "others": 0}
        for group, idx in (("fans", fans), ("others", others)):
            for j, u in enumerate(idx):
                user = f"u{int(u)}"
                own = cat if group == "fans" else int(np.argmax(world.user_tastes[u]))
                item = f"i{int(np.flatnonzero(world.item_category == own)[j % 5])}"
                ts = int(time.time() * 1000)
                send(InteractionEvent(f"live-{group}-{j}", user, item, "click", ts))
            producer.flush()
            for j, u in enumerate(idx):
                rec = lists.for_user(f"u{int(u)}", f"live-{group}-{j}")
                if any(it["item_id"] == "i-fresh-1" for it in rec["items"]):  # type: ignore[attr-defined]
                    hits[group] += 1
        assert hits["fans"] >= 5, hits
        assert hits["fans"] > hits["others"], hits

        # 4. A bundle written mid-stream is served without losing an event.
        v2 = train(past, settings.bundle_dir, seed=1)
        assert v2 != v1
        wait_for(
            lambda: f"serving bundle {v2}".encode() in worker.log_path.read_bytes(),
            60,
            "swap",
            worker,
        )
        user = users.most_common(1)[0][0]
        ev = InteractionEvent(
            "live-after-swap", user, past[0].item_id, "view", int(time.time() * 1000)
        )
        send(ev)
        producer.flush()
        assert lists.for_user(user, "live-after-swap")["model_version"] == v2

        # 5. A corrupt bundle is refused; the served one stays.
        bad = settings.bundle_dir / "20991231T000000Z-badbad"
        shutil.copytree(settings.bundle_dir / v2, bad)
        (bad / "user_encoder.onnx").write_bytes(b"not a model")
        (settings.bundle_dir / "CURRENT").write_text(bad.name + "\n")
        wait_for(lambda: b"refused bundle" in worker.log_path.read_bytes(), 30, "refusal", worker)
        ev = InteractionEvent(
            "live-after-bad", user, past[1].item_id, "view", int(time.time() * 1000)
        )
        send(ev)
        producer.flush()
        assert lists.for_user(user, "live-after-bad")["model_version"] == v2

        # No event was lost along the way.
        total = n_past + 5 + 1 + 80 + 2
        wait_for(lambda: applied() >= total, 30, "every live event applied", worker)
        assert worker.alive()
    finally:
        worker.stop()
        producer.close()
