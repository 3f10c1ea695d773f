"""The README's main job: a whole freshet world on this machine, told as a story.

Starts the local Kafka and Redis, simulates a shop, trains a first bundle on its past,
runs a worker, replays the past into it, then streams live traffic (new users, new
items, a few malformed messages) and watches the recommendations topic: live lists for
a few users, and a closing table of throughput, latency, coverage, long-tail share and
fallback share.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from freshet import demo_processes
from freshet.services.ports import free_port
from freshet.services.registry import read_endpoints
from freshet.settings import Settings
from freshet.wiring import kafka_of
from inference.list_metrics import popularity_head
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics


@dataclass(frozen=True)
class DemoConfig:
    """Size and pace of the demo world."""

    users: int = 3_000
    items: int = 2_000
    past_events: int = 40_000
    live_events: int = 20_000
    rate: float = 1_000.0
    epochs: int = 2
    seed: int = 7
    malformed: int = 25
    train: bool = True


@dataclass
class Watch:
    """What the demo saw on the recommendations topic during the live phase."""

    live_start_ms: int
    lists: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    strategies: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    by_user: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)


def run_demo(
    settings: Settings, cfg: DemoConfig, console: Console | None = None
) -> dict[str, float]:
    """Run the whole story; returns the summary figures."""
    console = console or Console()
    home = settings.home
    console.rule("[bold]freshet demo")
    console.print("1/6  starting the local Kafka broker (KRaft) and Redis ...")
    env = {**os.environ, "FRESHET_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "freshet.cli", "services", "up"], env=env, check=True)
    endpoints = read_endpoints(home)
    if endpoints is None:
        raise RuntimeError("services did not record their endpoints")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = settings.with_(
        kafka_bootstrap=endpoints.kafka_bootstrap,
        redis_url=endpoints.redis_url,
        topic_prefix=f"demo-{stamp}",
        consumer_group=f"demo-{stamp}",
        redis_namespace=f"demo{stamp.replace('-', '')}",
        bundle_dir=home / "demo" / stamp / "bundles",
    )
    topics = Topics(settings.topic_prefix)

    past, live, world_desc = _simulate(cfg, console)
    if cfg.train:
        console.print(f"3/6  training a first bundle on the past ({len(past):,} events) ...")
        t0 = time.perf_counter()
        from training.pipeline import run as train_run
        from training.train import TrainConfig

        train_run(
            past,
            settings.bundle_dir,
            TrainConfig(epochs=cfg.epochs, samples_per_epoch=60_000, valid_cases=1000),
            test_cases=1000,
            show=True,
        )
        console.print(f"     trained in {time.perf_counter() - t0:.0f} s")
    else:
        console.print("3/6  skipping training: the worker serves model-free lists")

    from streams.kafka_io.event_producer import EventProducer
    from streams.kafka_io.kafka_wait import wait_for_topics

    wait_for_topics(kafka_of(settings))
    console.print("4/6  starting a worker and replaying the past into it ...")
    worker_log = home / "demo" / stamp / "worker.log"
    worker_log.parent.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    worker = demo_processes.start_worker(settings, worker_log, metrics_port)
    api, ui_url = demo_processes.start_api(settings, worker_log.with_name("api.log"), metrics_port)
    console.print(f"     web view: [bold]{ui_url}[/] (live overview, users, items, dead letters)")
    try:
        with EventProducer(kafka_of(settings)) as producer:
            for ev in past:
                producer.send(ev)
        demo_processes.wait_caught_up(settings, worker, worker_log, console)

        console.print(
            f"5/6  live traffic: {len(live):,} events at {cfg.rate:,.0f}/s, "
            f"with new users, new items and {cfg.malformed} malformed messages; "
            f"watch it at {ui_url}"
        )
        watch = Watch(live_start_ms=int(time.time() * 1000))
        watcher = threading.Thread(target=_watch, args=(settings, topics, watch), daemon=True)
        watcher.start()
        time.sleep(1.0)
        sent, seconds = _stream_live(settings, live, cfg, console)
        time.sleep(2.0)
        watch.stop.set()
        watcher.join(timeout=10)
    finally:
        api.terminate()
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()

    console.print("6/6  what happened")
    counts = _item_counts(past + live)
    coverage = catalog_coverage(watch.items, past + live)
    summary = _summarise(watch, sent, seconds, counts, coverage, settings)
    _show_users(watch, console)
    _show_summary(summary, world_desc, settings, console)
    console.print(
        f"worker log: {worker_log}\nservices keep running: `freshet services down` stops them."
    )
    return summary


def _simulate(
    cfg: DemoConfig, console: Console
) -> tuple[list[InteractionEvent | CatalogEvent], list[InteractionEvent | CatalogEvent], str]:
    from freshet.simulator.config import SimConfig
    from freshet.simulator.stream import simulate

    total = cfg.past_events + cfg.live_events
    day_ms = 86_400_000
    now = int(time.time() * 1000)
    sim = SimConfig(
        users=cfg.users,
        items=cfg.items,
        events=total,
        rate=total / (4 * 86_400),  # the past spans days, so catalog items are not 'new'
        start_ms=now - 5 * day_ms,
        new_user_rate=4.0,
        new_item_rate=1.0,
    )
    console.print(
        f"2/6  simulating a shop: {cfg.users:,} users, {cfg.items:,} items, {total:,} events "
        "(Zipf popularity, category tastes, 'what follows what' habits)"
    )
    stream = list(simulate(sim, seed=cfg.seed))
    n_inter = 0
    cut = len(stream)
    for i, ev in enumerate(stream):
        if isinstance(ev, InteractionEvent):
            n_inter += 1
            if n_inter > cfg.past_events:
                cut = i
                break
    desc = f"{cfg.users:,} users, {cfg.items:,} items at start; seed {cfg.seed}"
    return stream[:cut], stream[cut:], desc


def _stream_live(
    settings: Settings,
    live: list[InteractionEvent | CatalogEvent],
    cfg: DemoConfig,
    console: Console,
) -> tuple[int, float]:
    from freshet.simulator.faults import malformed_messages
    from streams.kafka_io.event_producer import EventProducer

    faults = malformed_messages(cfg.malformed, seed=cfg.seed)
    every = max(1, len(live) // max(1, len(faults)))
    start = time.perf_counter()
    sent = 0
    with EventProducer(kafka_of(settings)) as producer:
        for i, ev in enumerate(live):
            target = start + sent / cfg.rate
            pause = target - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            now = int(time.time() * 1000)
            producer.send(dataclasses.replace(ev, ts=now))
            if isinstance(ev, InteractionEvent):
                sent += 1
            if i % every == 0 and faults:
                raw, _ = faults.pop()
                producer.send_raw(raw, key=b"u-malformed")
    return sent, time.perf_counter() - start


def _watch(settings: Settings, topics: Topics, watch: Watch) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topics.recommendations,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,  # no group: positions live in this process only
        consumer_timeout_ms=500,
    )
    try:
        while not watch.stop.is_set():
            for msg in consumer:
                rec = orjson.loads(msg.value)
                if (rec.get("event_ts") or 0) < watch.live_start_ms:
                    continue
                watch.lists += 1
                watch.latencies_ms.append(rec["published_ts"] - rec["event_ts"])
                watch.strategies[rec["strategy"]] += 1
                for it in rec["items"]:
                    watch.reasons[it["reason"]] += 1
                    watch.items[it["item_id"]] += 1
                watch.by_user.setdefault(rec["user_id"], []).append(rec)
                if watch.stop.is_set():
                    break
    finally:
        consumer.close()


def _item_counts(events: list[InteractionEvent | CatalogEvent]) -> dict[str, int]:
    return dict(Counter(e.item_id for e in events if isinstance(e, InteractionEvent)))


def catalog_coverage(
    shown: Iterable[str], events: Iterable[InteractionEvent | CatalogEvent]
) -> float:
    """Share of the items ever announced in ``events``' catalog that some list showed.

    The denominator is the catalog, not the items with interactions: lists also show
    new and exploration items nobody has touched yet.
    """
    catalog = {e.item_id for e in events if isinstance(e, CatalogEvent)}
    return len(catalog.intersection(shown)) / max(1, len(catalog))


def _summarise(
    watch: Watch,
    sent: int,
    seconds: float,
    counts: dict[str, int],
    coverage: float,
    settings: Settings,
) -> dict[str, float]:
    ids = list(counts)
    head = popularity_head(np.array([counts[i] for i in ids], dtype=np.float64))
    head_items = {i for i, h in zip(ids, head, strict=True) if h}
    slots = sum(watch.items.values())
    lat = np.array(watch.latencies_ms) if watch.latencies_ms else np.array([np.nan])
    fallback = watch.strategies["cold_start"] + watch.strategies["model_free"]
    return {
        "live events sent": sent,
        "events/s (live, offered)": sent / seconds if seconds else 0.0,
        "fresh lists published": watch.lists,
        "p50 event→list ms": float(np.nanpercentile(lat, 50)),
        "p99 event→list ms": float(np.nanpercentile(lat, 99)),
        "catalog coverage": coverage,
        "long-tail share": sum(n for i, n in watch.items.items() if i not in head_items)
        / max(1, slots),
        "fallback share": fallback / max(1, watch.lists),
        "cold_start lists": watch.strategies["cold_start"],
        "new_item slots": watch.reasons["new_item"],
    }


def _show_users(watch: Watch, console: Console) -> None:
    busy = sorted(watch.by_user.items(), key=lambda kv: -len(kv[1]))[:3]
    for user, recs in busy:
        first, last = recs[0], recs[-1]
        table = Table(title=f"{user}: first vs latest live list ({len(recs)} lists)")
        table.add_column("#")
        table.add_column(f"after {first['source_event_id']}")
        table.add_column(f"after {last['source_event_id']}")
        a, b = first["items"], last["items"]
        assert isinstance(a, list) and isinstance(b, list)
        for i in range(min(8, max(len(a), len(b)))):
            cell = [f"{x[i]['item_id']} ({x[i]['reason']})" if i < len(x) else "" for x in (a, b)]
            table.add_row(str(i + 1), *cell)
        console.print(table)


def _show_summary(
    summary: dict[str, float], world: str, settings: Settings, console: Console
) -> None:
    table = Table(title="freshet demo summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        table.add_row(k, f"{v:,.3f}" if isinstance(v, float) and abs(v) < 10 else f"{v:,.0f}")
    table.add_row("world", world)
    table.add_row("cores", str(os.cpu_count()))
    console.print(table)
