"""The list publish, this tree's ``KafkaSinks`` against another's, alternated in one process.

Each round publishes ``n`` committed lists through each variant in turn, ``--gap-ms``
after the last call: ``enqueue_lists`` then the agent's ``delivered()`` awaited to the
broker's ack (acks all), on a local Kafka broker. Per call: the loop thread's CPU
(``time.thread_time``), wall time, and the event loop's passes (``_run_once`` calls)
from the call to its end. At 10 ev/s each micro-batch publishes one list 100 ms after
the last; at 800-1,600 ev/s a batch publishes 20-60 lists every 10-20 ms.

With ``--pipelined`` the calls do not wait for each other, as the batch agent's: one
every ``--gap-ms``, its ``delivered()`` awaited in a task of its own, in blocks of 50
calls per variant, alternated; per call: the loop's CPU over the block divided by its
calls, the loop's passes likewise, and the time from the call to its delivery (p50, p99).

    git show <base>:streams/runtime/list_sinks.py > /tmp/base_sinks.py
    .venv/bin/python -m bench.list_publish_costs --base /tmp/base_sinks.py \\
        --sizes 1,20,60 --gaps-ms 100,100,15 --rounds 200
    .venv/bin/python -m bench.list_publish_costs --base /tmp/base_sinks.py \
        --sizes 20,60 --gaps-ms 12,15 --rounds 300 --pipelined
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
    settings: Settings,
    base: str | None,
    sizes: list[int],
    gaps_s: list[float],
    rounds: int,
    pipelined: bool = False,
) -> dict[tuple[str, int], list[tuple[float, float, float]]]:
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
    out: dict[tuple[str, int], list[tuple[float, float, float]]] = {}

    def publisher(sinks: Any, n: int) -> Callable[[], Awaitable[None]]:
        batch = lists(n, 0)

        async def publish() -> None:
            await sinks.enqueue_lists(batch)
            await sinks.delivered()

        return publish

    Row = tuple[float, float, float]

    async def block(sinks: Any, n: int, gap_s: float, calls: int) -> list[Row]:
        """``calls`` calls ``gap_s`` apart, not waiting for each other; (CPU s per call,
        s to delivery, passes per call) per call."""
        batch = lists(n, 0)
        waits: list[float] = []
        pending: list[asyncio.Future[None]] = []

        async def follow(delivery: Awaitable[Any], t0: float) -> None:
            await delivery
            waits.append(time.perf_counter() - t0)

        passes.count, passes.on = 0, True
        c = time.thread_time()
        for _ in range(calls):
            t0 = time.perf_counter()
            await sinks.enqueue_lists(batch)
            pending.append(asyncio.ensure_future(follow(sinks.delivered(), t0)))
            await asyncio.sleep(max(0.0, gap_s - (time.perf_counter() - t0)))
        await asyncio.gather(*pending)
        cpu = (time.thread_time() - c) / calls
        passes.on = False
        return [(cpu, w, passes.count / calls) for w in waits]

    try:
        if pipelined:
            for n, gap_s in zip(sizes, gaps_s, strict=True):
                for sinks in variants.values():
                    await block(sinks, n, gap_s, 10)  # connection, metadata
                for _ in range(max(1, rounds // 50)):
                    for name, sinks in variants.items():
                        out.setdefault((name, n), []).extend(await block(sinks, n, gap_s, 50))
            return out
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
    parser.add_argument("--pipelined", action="store_true", help="calls not awaited in turn")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    gaps = [float(g) / 1000.0 for g in args.gaps_ms.split(",")]

    load0 = os.getloadavg()
    with local_services(args.partitions, "lpc") as settings:
        out = asyncio.run(costs(settings, args.base, sizes, gaps, args.rounds, args.pipelined))
    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}); local Kafka on the same cores")
    print(f"  {args.partitions} partitions, acks all; variants alternated call by call")
    print(f"  {args.rounds} calls per variant and size; base: {args.base or '-'}")
    print(
        f"  load before {[round(x, 1) for x in load0]},"
        f" after {[round(x, 1) for x in os.getloadavg()]}"
    )
    if args.pipelined:
        print(f"  pipelined: a call every {args.gaps_ms} ms (per size), blocks of 50 alternated")
        print("figures (per call: loop CPU us, per list, passes; call to delivery ms p50 / p99):")
        for (name, n), rows in out.items():
            cpus = sorted({r[0] for r in rows})  # one figure per block
            cpu = statistics.median(cpus) * 1e6
            waits = sorted(r[1] * 1e3 for r in rows)
            p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))]
            print(
                f"  {name:5s} {n:3d} lists  {cpu:6.0f} us (blocks {min(cpus) * 1e6:.0f}-"
                f"{max(cpus) * 1e6:.0f})  ({cpu / n:5.0f} per list)"
                f"  {statistics.median(r[2] for r in rows):4.1f} passes"
                f"  {statistics.median(waits):6.2f} / {p99:6.2f} ms"
            )
        return
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
