"""The latency budget: each micro-batch's time lands in the stage that spent it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from schemas.codec import DecodeLimits, encode
from schemas.events import InteractionEvent
from schemas.recommendation import Recommendation, RecommendedItem
from schemas.topics import event_key
from streams.core.ingest import STAGES, IngestProcessor, Refresh, SourceRecord, TouchedUser
from streams.core.publish import Committed
from streams.core.state_rules import StateRules
from streams.core.state_store import InMemoryStateStore
from streams.runtime.faust_app import take_wait_s
from streams.runtime.metrics import WorkerMetrics

T0 = 1_700_000_000_000
ITEM = RecommendedItem("i2", 1.0, "trending")
# Planted delays 100 ms apart, so a stage charged with another's delay is caught even on
# a loaded machine where a sleep overshoots by tens of milliseconds.
DELAY = {"redis_read": 0.2, "score": 0.3, "redis_write": 0.1, "publish": 0.4}


class SlowStore(InMemoryStateStore):
    """The in-process store with a planted delay on its read and its write."""

    async def read(self, reads: Any) -> Any:
        await asyncio.sleep(DELAY["redis_read"])
        return await super().read(reads)

    async def write(self, writes: Any) -> None:
        await asyncio.sleep(DELAY["redis_write"])
        await super().write(writes)


class SlowRefresher:
    async def refresh(self, touched: Sequence[TouchedUser], now_ms: int) -> Refresh:
        await asyncio.sleep(DELAY["score"])
        out = Refresh()
        for t in touched:
            out.lists[t.user_id] = Recommendation(
                t.user_id, (ITEM,), "cold_start", None, None, None, now_ms
            )
        return out


async def slow_sink(lists: Sequence[Committed]) -> None:
    await asyncio.sleep(DELAY["publish"])


async def no_letters(letters: Sequence[Any]) -> None:
    raise AssertionError("no dead letters expected")


async def test_each_planted_delay_is_charged_to_its_own_stage() -> None:
    proc = IngestProcessor(
        SlowStore(),
        StateRules(history_len=20, seen_max=50, dedup_window=128),
        DecodeLimits(),
        dead_letter_sink=no_letters,
        list_sink=slow_sink,
        refresher=SlowRefresher(),
        clock=lambda: T0 / 1000 + 60,
    )
    events = [InteractionEvent(f"e{i}", f"u{i % 3}", "i1", "view", T0 + i) for i in range(9)]
    records = [
        SourceRecord("events", 0, i, event_key(e.user_id), encode(e)) for i, e in enumerate(events)
    ]
    stats = await proc.process(records)
    assert stats.published == 3
    stages = stats.stages_s
    assert set(stages) == {"decode", "redis_read", "state_rules", "score", "redis_write", "publish"}
    for stage, delay in DELAY.items():
        assert delay <= stages[stage] < delay + 0.09, (stage, stages)
    assert stages["decode"] < 0.09 and stages["state_rules"] < 0.09


def test_take_wait_is_the_oldest_events_wait() -> None:
    events = [SimpleNamespace(message=SimpleNamespace(time_in=t)) for t in (10.5, 10.2, None)]
    assert abs(take_wait_s(events, taken=10.7) - 0.5) < 1e-9
    assert take_wait_s([SimpleNamespace(message=SimpleNamespace())], taken=3.0) == 0.0


def test_stage_times_become_one_labelled_histogram() -> None:
    from streams.core.ingest import BatchStats

    metrics = WorkerMetrics()
    metrics.observe_events(BatchStats(stages_s={"decode": 0.0004, "score": 0.03}))
    metrics.observe_events(BatchStats(stages_s={"decode": 0.0006}))
    text = metrics.exposition().decode()
    assert 'freshet_stage_seconds_count{stage="decode"} 2.0' in text
    assert 'freshet_stage_seconds_sum{stage="decode"} 0.001' in text
    assert 'freshet_stage_seconds_count{stage="score"} 1.0' in text
    for stage in STAGES:  # every stage is exposed from the start, at zero
        assert f'freshet_stage_seconds_count{{stage="{stage}"}}' in text
