"""Time to ready for one worker on a large catalog with a bundle: cold and on restart.

"Ready" is measured from the worker's process start to the last of:

- every catalog item in its online catalog (``freshet_catalog_items``, read at scrape);
- on a cold start, every record of the catalog topic stored by the catalog agent
  (``freshet_catalog_events_total{outcome="applied"}``);
- the first list served: one interaction event is on the events topic before the
  worker starts, and the list it owes that user is published
  (``freshet_lists_published_total``). A list needs the bundle loaded and the ANN
  index usable, so this milestone covers both.

Cold: a fresh Kafka and Redis, the bundle's catalog on the catalog topic (the bundle
is trained once and cached like the stream bench's, and its ANN index is built beside
it as ``freshet train`` does at export). Restart: a new worker process on the same
stores, with a new probe event. ``--tree`` runs the worker from another checkout (the
starting commit, say) against the same stores and bundle, so old and new are timed
back to back in one run.

    .venv/bin/python bench/start_bench.py --items 1000000 --restarts 3 [--tree /tmp/m_base]

Kafka, Redis and the worker share the host's cores; the figures print with the host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from bench.ingest_bench import rss_mb, start_worker
from bench.stream_bench import (
    cached_bundle,
    catalog_applied,
    produce_bulk,
    read_metrics,
    simulate_shop,
    stamped,
)
from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import encode
from schemas.topics import Topics, catalog_key

POLL_S = 0.1


@dataclasses.dataclass
class Start:
    """Seconds from process start to each milestone, and the worker's peak RSS."""

    catalog_s: float = float("nan")
    agent_s: float = float("nan")
    first_list_s: float = float("nan")
    image_s: float = float("nan")  # the worker's catalog image written (after ready)
    peak_rss_mb: float = 0.0

    needs_agent: bool = False

    @property
    def ready_s(self) -> float:
        """The last milestone; NaN while any is missing."""
        marks = [self.catalog_s, self.first_list_s] + ([self.agent_s] if self.needs_agent else [])
        return float("nan") if any(m != m for m in marks) else max(marks)


def time_start(
    settings: Settings,
    log: Path,
    items: int,
    catalog_records: int | None,
    tree: Path | None,
    timeout_s: float,
    image: Path | None = None,
) -> Start:
    """Start a worker and follow its endpoint until it is ready (see the module doc).

    ``image``: once ready, wait (up to ``timeout_s`` in all) until the worker has
    written its catalog image there, so the next start can read it, as a worker
    that ran a while before its restart would have.
    """
    from freshet.services.ports import free_port

    port = free_port()
    t0 = time.monotonic()
    wall0 = time.time()
    proc = start_worker(settings, True, log, port, log_level="INFO", tree=tree)
    out = Start(needs_agent=catalog_records is not None)
    try:
        while time.monotonic() - t0 < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            out.peak_rss_mb = max(out.peak_rss_mb, rss_mb(proc.pid))
            with contextlib.suppress(OSError):
                m = read_metrics(port, timeout=2)
                now = time.monotonic() - t0
                # The newest record of every item applied (a worker that predates this
                # gauge: every item in its online catalog, which its 5 s timer updated).
                online = m.get("freshet_catalog_records", m.get("freshet_catalog_items", 0))
                if out.catalog_s != out.catalog_s and online >= items:
                    out.catalog_s = now
                if out.first_list_s != out.first_list_s and _lists(m) >= 1:
                    out.first_list_s = now
                if (
                    catalog_records is not None
                    and out.agent_s != out.agent_s
                    and catalog_applied(m) >= catalog_records
                ):
                    out.agent_s = now
                if out.ready_s == out.ready_s:
                    break
            time.sleep(POLL_S)
        while image is not None and time.monotonic() - t0 < timeout_s:
            if image.exists() and image.stat().st_mtime >= wall0:
                out.image_s = time.monotonic() - t0
                return out
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            out.peak_rss_mb = max(out.peak_rss_mb, rss_mb(proc.pid))
            time.sleep(POLL_S)
        if out.ready_s == out.ready_s:
            return out
        raise TimeoutError(f"worker not ready after {timeout_s:.0f} s ({out}); see {log}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


WARM_KERNELS = """
import importlib
for name in ("inference.mmr_kernel", "inference.fold_in"):
    try:
        module = importlib.import_module(name)
    except ImportError:
        continue
    getattr(module, "warm_up", lambda: None)()
"""


def warm_kernels(tree: Path | None) -> float:
    """Compile a checkout's numba kernels into their on-disk cache, as its first run
    on a host does, so that a start times the start and not a one-off compile (tens
    of seconds on a loaded host, whenever a kernel's source changed). Seconds taken."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", WARM_KERNELS], cwd=tree or Path.cwd(), env=env, check=True
    )
    return time.perf_counter() - t


def image_of(settings: Settings, tree: Path | None) -> Path | None:
    """Where a worker of this checkout will write its catalog image, to wait for it
    (None: another checkout, or an image is there already)."""
    from streams.core.catalog_image import IMAGE_FILE

    path = settings.home / "catalog-images" / settings.redis_namespace / IMAGE_FILE
    # A worker that reads an image writes none until the catalog moves: wait only for
    # the first one.
    return None if tree is not None or path.exists() else path


def _lists(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("freshet_lists_published_total"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from freshet.services.kafka_local import LocalKafka
    from freshet.services.redis_local import LocalRedis
    from streams.kafka_io.event_producer import ensure_topics

    t = time.perf_counter()
    shop = simulate_shop(args.users, args.items, args.warm, 0, args.seed)
    results: dict[str, Any] = {"simulate_s": time.perf_counter() - t}
    trees: list[tuple[str, Path | None]] = [("now", None)]
    if args.tree is not None:
        trees.append((f"old ({args.tree.name})", args.tree))
    # Items the bundle lacks, last on the topic and in the log: a worker of any version
    # has every item online once its item count reaches the bundle's plus these.
    extra = [
        dataclasses.replace(ev, item_id=f"extra-{i}")
        for i, ev in enumerate(shop.catalog[: args.extra_items])
    ]
    catalog = shop.catalog + extra
    n = len(catalog)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bundle_dir = base / "bundles"
        version = bundle_with_index(args, shop, bundle_dir, results)
        kafka = LocalKafka(base / "kafka", partitions=args.partitions, home=Settings().home)
        redis = LocalRedis(base / "redis", appendonly=True)
        kafka.start()
        redis.start()
        try:
            probes = iter(shop.warm)

            def stores(name: str) -> Settings:
                """Topics and a Redis namespace of their own, the catalog on the topic."""
                settings = Settings.from_env(
                    {},
                    kafka_bootstrap=kafka.bootstrap,
                    redis_url=redis.url,
                    topic_prefix=f"start-{name}",
                    redis_namespace=f"start{name}",
                    topic_partitions=args.partitions,
                    home=base / "home",
                    bundle_dir=bundle_dir,
                )
                ensure_topics(kafka_of(settings))
                if args.restart_only:  # stored as the catalog agent would have
                    asyncio.run(store_catalog(settings, catalog))
                    return settings
                pairs = ((catalog_key(c.item_id), encode(c)) for c in catalog)
                produce_bulk(settings, Topics(settings.topic_prefix).catalog, pairs)
                return settings

            def probe(settings: Settings) -> None:
                topic = Topics(settings.topic_prefix).events
                produce_bulk(settings, topic, stamped([next(probes)]))

            results["kernels_s"] = {name: warm_kernels(tree) for name, tree in trees}
            shared: Settings | None = None
            for i, (name, tree) in enumerate(trees):
                cold = None
                if args.restart_only and shared is None:
                    shared = stores("r")
                elif i == 0 or args.tree_cold:  # fresh topics and namespace: a cold start
                    settings = stores(f"c{i}")
                    probe(settings)
                    log = base / f"cold{i}.log"
                    cold = time_start(
                        settings, log, n, n, tree, args.timeout, image_of(settings, tree)
                    )
                    print(f"{name} cold: {cold}", flush=True)
                    shared = shared or settings
                assert shared is not None
                restarts = []
                for r in range(args.restarts):  # the stores the first cold start filled
                    probe(shared)
                    log = base / f"restart{i}-{r}.log"
                    image = image_of(shared, tree)
                    restarts.append(time_start(shared, log, n, None, tree, args.timeout, image))
                    print(f"{name} restart {r}: {restarts[-1]}", flush=True)
                results[name] = {"cold": cold, "restarts": restarts}
        finally:
            kafka.stop()
            redis.stop()
            if args.logs is not None:  # the workers' logs outlive the temporary folder
                args.logs.mkdir(parents=True, exist_ok=True)
                for path in base.glob("*.log"):
                    shutil.copy(path, args.logs / path.name)
    results["catalog"] = n
    results["extra"] = len(extra)
    results["version"] = version
    return results


async def store_catalog(settings: Settings, events: list[Any]) -> None:
    """The records the catalog agent stores for ``events`` (new items), page by page."""
    from redis.asyncio import Redis

    from streams.core.catalog import apply_catalog_event
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    client = Redis.from_url(settings.redis_url)
    store = RedisCatalogStore(client, Keyspace(settings.redis_namespace))
    for start in range(0, len(events), 10_000):
        page = [apply_catalog_event(None, ev) for ev in events[start : start + 10_000]]
        await store.put([r for r in page if r is not None])
    await client.aclose()


def bundle_with_index(
    args: argparse.Namespace, shop: Any, bundle_dir: Path, results: dict[str, Any]
) -> str:
    """The stream bench's cached bundle, with its ANN index built as export now does
    (kept in the cache, so only the first run pays the build)."""
    from inference.ann_store import INDEX_DIR, prebuild_for_bundle

    t = time.perf_counter()
    version = cached_bundle(args, shop, bundle_dir)
    results["bundle_s"] = time.perf_counter() - t
    t = time.perf_counter()
    index = prebuild_for_bundle(bundle_dir / version)
    results["index_at_export_s"] = time.perf_counter() - t
    results["index"] = (
        f"nlist {index.nlist}, nprobe {index.nprobe}, recall@200 {index.tuned_recall}"
    )
    cache = Path(str(args.cache_of(version)))
    if cache.is_dir() and not (cache / INDEX_DIR).exists():
        shutil.copytree(bundle_dir / version / INDEX_DIR, cache / INDEX_DIR)
    return version


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    print("conditions:")
    print(f"  python {platform.python_version()}, cores {os.cpu_count()}, {platform.machine()}")
    print(f"  cpu {cpu_model()}")
    print(
        f"  catalog {results['catalog']:,} items, {results['extra']:,} of them not in the bundle "
        f"{results['version']} (last on the topic)"
    )
    print(f"  the bundle trained on {args.warm:,} events of {args.users:,} users; ranker off")
    print(f"  partitions {args.partitions}; Kafka, Redis and the worker share the cores")
    if args.restart_only:
        print("  --restart-only: the catalog stored in Redis by the bench, no cold start")
    built = results["index_at_export_s"]
    print(
        f"  bundle ANN index as export builds it: {built:.1f} s here, built or read from the cache"
    )
    print(f"  ({results['index']})")
    warmed = ", ".join(f"{k} {v:.1f} s" for k, v in results["kernels_s"].items())
    print(f"  numba kernels compiled into their cache before the starts ({warmed})")
    print("  ready = process start to the last of: every item's record applied to the online")
    print("  catalog (freshet_catalog_records; a worker without it: freshet_catalog_items, which")
    print("  its 5 s timer updates), (cold) every catalog record stored by the agent, and the")
    print("  first list published for a probe event")
    print(f"  sent before the start; endpoint polled every {POLL_S * 1000:.0f} ms")
    print("  image = when the worker had written its catalog image (this checkout only); the")
    print("  bench waits for it before stopping the worker, so the next start can read it")
    print("figures (seconds from process start):")
    heads = ("ready", "catalog", "agent", "1st list", "image", "peak RSS")
    print(f"  {'worker':28s} {'start':10s} " + " ".join(f"{h:>8s}" for h in heads))
    for name in [k for k in results if isinstance(results[k], dict) and k != "kernels_s"]:
        rows = []
        if results[name]["cold"] is not None:
            rows.append(("cold", results[name]["cold"]))
        rows += [(f"restart {i}", s) for i, s in enumerate(results[name]["restarts"])]
        for label, s in rows:
            print(
                f"  {name:28s} {label:10s} {s.ready_s:8.1f} {s.catalog_s:8.1f} {s.agent_s:8.1f} "
                f"{s.first_list_s:8.1f} {s.image_s:8.1f} {s.peak_rss_mb:7.0f} MB"
            )
        if results[name]["restarts"]:
            med = statistics.median(s.ready_s for s in results[name]["restarts"])
            print(f"  {name:28s} {'restart median ready':20s} {med:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--warm", type=int, default=20_000, help="events the bundle trains on")
    parser.add_argument("--train-samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument(
        "--tree-cold", action="store_true", help="also a cold start of --tree (fresh stores)"
    )
    parser.add_argument(
        "--restart-only",
        action="store_true",
        help="no cold start: store the catalog in Redis as the agent would, then restarts",
    )
    parser.add_argument(
        "--extra-items", type=int, default=10_000, help="catalog items the bundle lacks"
    )
    parser.add_argument("--tree", type=Path, help="also time a worker run from this checkout")
    parser.add_argument("--timeout", type=float, default=900.0, help="per start, seconds")
    parser.add_argument("--logs", type=Path, help="copy the workers' logs to this folder")
    args = parser.parse_args()
    args.events, args.ranker = 0, "off"  # the stream bench's bundle cache key
    key = f"{args.items}-{args.users}-{args.warm}-0-{args.seed}-{args.train_samples}"
    home = Settings().home
    args.cache_of = lambda version: home / "bench-bundles" / f"stream-{key}" / version
    report(args, run(args))


if __name__ == "__main__":
    main()
