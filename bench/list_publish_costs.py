"""The list publish, this tree's ``KafkaSinks`` against another's, alternated in one process.

Each round publishes ``n`` committed lists through each variant in turn, ``--gap-ms``
after the last call: ``enqueue_lists`` then the agent's ``delivered()`` awaited to the
broker's ack (acks all), on a local Kafka broker. Per call: the loop thread's CPU
(``time.thread_time``), wall time, and the event loop's passes (``_run_once`` calls)
from the call to its end. At 10 ev/s each micro-batch publishes one list 100 ms after
the last; at 800-1,600 ev/s a batch publishes 20-60 lists every 10-20 ms.

    git show <base>:streams/runtime/list_sinks.py > /tmp/base_sinks.py
    .venv/bin/python -m bench.list_publish_costs --base /tmp/base_sinks.py \\
        --sizes 1,20,60 --gaps-ms 100,100,15 --rounds 200
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.client_costs import lists, local_services
from bench.host import cpu_model
from freshet.settings import Settings


def _sinks_class(path: str) -> Any:
    """``KafkaSinks`` from a module file (another tree's ``list_sinks.py``)."""
    spec = importlib.util.spec_from_file_location("base_list_sinks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KafkaSinks


class _Passes:
    """Counts the event loop's passes while on."""

    def __init__(self, loop: Any) -> None:
        self.count = 0
        self.on = False
        run_once = loop._run_once

        def counted() -> None:
            if self.on:
                self.count += 1
            run_once()

        loop._run_once = counted


async def costs(
    settings: Settings, base: str | None, sizes: list[int], gaps_s: list[float], rounds: int
) -> dict[tuple[str, int], list[tuple[float, float, int]]]:
    """(variant, lists per call) -> (CPU s, wall s, loop passes) per call."""
    from freshet.wiring import kafka_of
    from schemas.topics import Topics
    from streams.kafka_io.event_producer import ensure_topics
    from streams.runtime.faust_app import create_app
    from streams.runtime.list_sinks import KafkaSinks

    passes = _Passes(asyncio.get_running_loop())
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings), [topics.recommendations])
    app = create_app(settings, app_id=f"{settings.topic_prefix}-lpc")
    await app.producer.start()
    variants = {"new": KafkaSinks(app, topics)}
    if base is not None:
        variants = {"base": _sinks_class(base)(app, topics), **variants}
    out: dict[tuple[str, int], list[tuple[float, float, int]]] = {}

    def publisher(sinks: Any, n: int) -> Callable[[], Awaitable[None]]:
        batch = lists(n, 0)

        async def publish() -> None:
            await sinks.enqueue_lists(batch)
            await sinks.delivered()

        return publish

    try:
        for n, gap_s in zip(sizes, gaps_s, strict=True):
            calls = {name: publisher(sinks, n) for name, sinks in variants.items()}
            for fn in calls.values():
                for _ in range(3):
                    await fn()  # connection, metadata
            for _ in range(rounds):
                for name, fn in calls.items():
                    await asyncio.sleep(gap_s)
                    passes.count, passes.on = 0, True
                    c, w = time.thread_time(), time.perf_counter()
                    await fn()
                    cpu, wall = time.thread_time() - c, time.perf_counter() - w
                    passes.on = False
                    out.setdefault((name, n), []).append((cpu, wall, passes.count))
    finally:
        await app.producer.stop()
    return out


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="another tree's streams/runtime/list_sinks.py")
    parser.add_argument("--sizes", default="1,20,60", help="lists per call")
    parser.add_argument("--gaps-ms", default="100,100,15", help="sleep before each call, per size")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    gaps = [float(g) / 1000.0 for g in args.gaps_ms.split(",")]

    load0 = os.getloadavg()
    with local_services(args.partitions, "lpc") as settings:
        out = asyncio.run(costs(settings, args.base, sizes, gaps, args.rounds))
    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}); local Kafka on the same cores")
    print(f"  {args.partitions} partitions, acks all; variants alternated call by call")
    print(f"  {args.rounds} calls per variant and size; base: {args.base or '-'}")
    print(
        f"  load before {[round(x, 1) for x in load0]},"
        f" after {[round(x, 1) for x in os.getloadavg()]}"
    )
    print("figures (per call: loop CPU us q1 / median / q3, per list, wall ms, loop passes):")
    for (name, n), rows in out.items():
        q1, med, q3 = _quartiles([r[0] * 1e6 for r in rows])
        wall = statistics.median(r[1] for r in rows) * 1e3
        passes = statistics.median(r[2] for r in rows)
        print(
            f"  {name:5s} {n:3d} lists  {q1:6.0f} / {med:6.0f} / {q3:6.0f} us"
            f"  ({med / n:6.0f} per list)  {wall:6.2f} ms  {passes:4.0f} passes"
        )


if __name__ == "__main__":
    main()
