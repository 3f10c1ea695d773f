"""Faust's fixed costs the worker does not pay (``faust_app``, ``faust_batches``, ``faust_fetch``).

The worker's app starts no monitor sampler (rates nothing reads), its batch consumer's
commit timer commits on every tick that has acked offsets and skips a tick that has
none, and aiokafka's fetch routine waits as long as a fetch before it wakes with
nothing to do; its stalled-partition checks run every ``STALL_CHECK_S`` in one step.
Commits on the interval, on stop and across restarts with the real
broker: tests/streams/test_loop_consumer.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from freshet.settings import Settings
from streams.runtime.faust_app import create_app
from streams.runtime.faust_fetch import STALL_CHECK_S


def test_the_worker_app_starts_no_monitor_sampler(tmp_path: Path) -> None:
    async def run() -> list[str]:
        app = create_app(Settings().with_(home=tmp_path))
        monitor = app.monitor
        await monitor.start()
        try:
            await asyncio.sleep(0.05)
            running = [t for t in asyncio.all_tasks() if not t.done()]
            return [t.get_name() for t in running]  # mode names a task by its coroutine
        finally:
            await monitor.stop()

    running = asyncio.run(run())
    assert not [name for name in running if "Monitor._sampler" in name], running


def test_committed_offsets_still_reach_the_monitor(tmp_path: Path) -> None:
    """What ``metric_sources`` reads comes from each commit, not from the sampler."""

    async def run() -> dict[Any, int]:
        app = create_app(Settings().with_(home=tmp_path))
        app.monitor.on_tp_commit({TP("t", 0): 42})
        return dict(app.monitor.tp_committed_offsets)

    assert asyncio.run(run()) == {TP("t", 0): 42}


def test_the_commit_timer_commits_a_tick_with_acks_and_skips_one_without(
    tmp_path: Path,
) -> None:
    interval = 0.02

    async def run() -> tuple[int, int, int]:
        app = create_app(Settings().with_(home=tmp_path, kafka_batch_delivery=True))
        consumer = app.consumer
        consumer.commit_interval = interval
        commits = 0

        async def commit(*args: Any, **kwargs: Any) -> bool:
            nonlocal commits
            commits += 1
            consumer._acked.clear()  # as a commit consumes what it covered
            return True

        consumer.commit = commit
        timer = asyncio.ensure_future(type(consumer)._commit_handler(consumer))
        try:
            await asyncio.sleep(interval * 8)  # nothing acked: no commit
            idle = commits
            consumer._acked[TP("t", 0)].extend([0, 1, 2])
            await asyncio.sleep(interval * 3)  # acked: committed at the next tick
            acked = commits
            await asyncio.sleep(interval * 5)  # nothing new since: no further commit
            return idle, acked, commits
        finally:
            timer.cancel()

    idle, acked, after = asyncio.run(run())
    assert (idle, acked, after) == (0, 1, 1)


def test_the_fetch_routine_waits_as_long_as_a_fetch(tmp_path: Path) -> None:
    async def build(wait_ms: int) -> float:
        app = create_app(
            Settings().with_(home=tmp_path / str(wait_ms), kafka_fetch_max_wait_ms=wait_ms)
        )
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.stop()  # never started: only its settings are looked at
        return float(consumer._consumer_timeout)

    assert asyncio.run(build(1500)) == 1.5  # the worker's default fetch wait
    assert asyncio.run(build(50)) == 0.2  # never shorter than aiokafka's own 200 ms


TRANSPORTS = [  # (batch delivery, consumer on the loop): each builds its own consumer class
    (True, True),
    (True, False),
    (False, True),
    (False, False),
]


@pytest.mark.parametrize(("batches", "on_loop"), TRANSPORTS)
def test_the_stall_checks_look_at_every_partition_in_one_step(
    tmp_path: Path, batches: bool, on_loop: bool
) -> None:
    """Faust yielded with ``Service.sleep(0)`` per partition (a task started and
    cancelled on the stop event each time): a dozen loop passes a check at idle."""

    async def run() -> list[TP]:
        settings = Settings().with_(
            home=tmp_path, kafka_batch_delivery=batches, kafka_consumer_on_loop=on_loop
        )
        consumer = create_app(settings).consumer
        tps = {TP("t", p) for p in range(12)}
        checked: list[TP] = []
        consumer.assignment = lambda: tps
        consumer.verify_event_path = lambda now, tp: checked.append(tp)
        step = consumer.verify_all_partitions_active()
        with pytest.raises(StopIteration):  # finished without giving the loop a turn
            step.send(None)
        return checked

    checked = asyncio.run(run())
    assert sorted(checked) == sorted(TP("t", p) for p in range(12))


@pytest.mark.parametrize(("batches", "on_loop"), TRANSPORTS)
def test_the_stall_checks_run_every_stall_check_interval(
    tmp_path: Path, batches: bool, on_loop: bool
) -> None:
    """Every ``STALL_CHECK_S`` (15 s), not every 2.5 commit intervals (2.5 s): Faust's
    stall thresholds are minutes."""

    async def run() -> tuple[list[float], int]:
        settings = Settings().with_(
            home=tmp_path, kafka_batch_delivery=batches, kafka_consumer_on_loop=on_loop
        )
        consumer = create_app(settings).consumer
        intervals: list[float] = []
        checks = 0

        async def itertimer(interval: float, **kwargs: Any) -> Any:
            intervals.append(interval)
            yield interval  # one tick, then the timer ends

        async def verify() -> None:
            nonlocal checks
            checks += 1

        consumer.itertimer = itertimer
        consumer.verify_all_partitions_active = verify
        await asyncio.wait_for(type(consumer)._commit_livelock_detector(consumer), 1.0)
        return intervals, checks

    intervals, checks = asyncio.run(run())
    assert (intervals, checks) == ([STALL_CHECK_S], 1)
    assert STALL_CHECK_S >= 10.0
