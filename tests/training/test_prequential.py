"""The prequential loop: known-answer scoring per step, and freshness pays on a planted world."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from freshet.settings import Settings
from freshet.simulator.stream import SimConfig, simulate
from freshet.wiring import live_config
from schemas.events import CatalogEvent, InteractionEvent
from streams.core.ingest import TouchedUser
from streams.core.state_rules import UserState
from training.evaluation.online_baselines import OnlineItemKNN, OnlinePopular
from training.evaluation.online_freshet import FreshetOnline
from training.evaluation.prequential import (
    Event,
    IntArray,
    PrequentialConfig,
    StreamState,
    run_prequential,
    summarise,
)
from training.train import TrainConfig


class Oracle:
    """Knows each user's next item and lists it at ``pos`` (filler items before it)."""

    def __init__(self, stream: StreamState, nxt: dict[str, list[str]], pos: int) -> None:
        self.name = f"oracle@{pos}"
        self.stream, self.nxt, self.pos = stream, nxt, pos

    def observe(self, event: InteractionEvent, before: UserState) -> None:
        return None

    def refresh(self, users: Sequence[TouchedUser], now_ms: int) -> dict[str, IntArray]:
        out = {}
        for u in users:
            upcoming = self.nxt[u.user_id][u.state.n_events :]
            if upcoming:
                filler = [i for i in ("z1", "z2", "z3") if i != upcoming[0]][: self.pos]
                out[u.user_id] = self.stream.codes([*filler, upcoming[0]])
        return out

    def cold_list(self) -> IntArray:
        return np.zeros(0, np.int64)

    def swap_bundle(self, bundle: Any, now_ms: int) -> dict[str, IntArray]:
        return {}


def _event(n: int, user: str, item: str, ts: int, event_id: str | None = None) -> InteractionEvent:
    return InteractionEvent(event_id or f"e{n}", user, item, "view", ts)


def test_known_answers_per_step() -> None:
    catalog = [CatalogEvent(f"c{i}", "upsert", i, 0) for i in ("a", "b", "c", "d", "z1", "z2")]
    stream_events: list[Event] = [
        *catalog,
        _event(1, "u1", "a", 1_000),
        _event(2, "u2", "b", 2_000),
        _event(3, "u1", "b", 3_000),
        _event(3, "u1", "b", 3_500, event_id="e3"),  # duplicate: neither applied nor scored
        _event(4, "u2", "d", 4_000),
        _event(5, "u1", "a", 5_000),  # already seen by u1: applied, not scored
        _event(6, "u1", "c", 6_000),
    ]
    nxt = {"u1": ["a", "b", "a", "c"], "u2": ["b", "d"]}
    stream = StreamState()
    models = [Oracle(stream, nxt, 0), Oracle(stream, nxt, 2)]
    result = run_prequential(stream_events, models, PrequentialConfig(batch_ms=0), stream=stream)
    assert result.counts["duplicates"] == 1
    assert result.counts["applied"] == 6
    assert result.counts["eligible"] == 3  # a user's first event is never scored
    assert result.counts["scored"] == 3  # b, d, c
    assert result.ranks[0].tolist() == [0, 0, 0]
    assert result.ranks[1].tolist() == [2, 2, 2]
    assert result.cold_user.all()
    summary = summarise(result)
    assert summary["oracle@0"]["hr@10"] == pytest.approx(1.0)
    assert summary["oracle@0"]["ndcg@10"] == pytest.approx(1.0)  # rank 1: hit 1, ndcg 1
    assert summary["oracle@2"]["hr@10"] == pytest.approx(1.0)
    assert summary["oracle@2"]["ndcg@10"] == pytest.approx(1 / math.log2(4))
    # coverage: the items the lists showed (a is never shown after warm-up: cold lists)
    assert summary["oracle@0"]["coverage"] == pytest.approx(3 / len(result.item_ids))


def test_a_list_is_only_refreshed_when_its_batch_closes() -> None:
    """Two events of one user inside one micro-batch: the second sees the pre-batch list."""
    events: list[Event] = [
        _event(1, "u1", "a", 1_000),
        _event(2, "u1", "b", 1_050),
        _event(3, "u1", "c", 1_100),
        _event(4, "u1", "d", 5_000),
    ]
    stream = StreamState()
    oracle = Oracle(stream, {"u1": ["a", "b", "c", "d"]}, 0)
    result = run_prequential(events, [oracle], PrequentialConfig(batch_ms=200), stream=stream)
    # b and c come within the batch opened by a: no list yet; d sees the list after c
    assert result.ranks[0].tolist() == [10, 10, 0]
    again = StreamState()
    fresh = run_prequential(
        events,
        [Oracle(again, {"u1": ["a", "b", "c", "d"]}, 0)],
        PrequentialConfig(batch_ms=200, fresh=True),
        stream=again,
    )
    # asked anew before each event, the oracle's list is always right
    assert fresh.ranks[0].tolist() == [0, 0, 0]


def test_most_popular_known_answers_on_five_scored_events() -> None:
    """The standard protocol by hand: first events unscored, touched items excluded.

    Counts before each scored event and the list most-popular then shows:
    (u2, b): a3 -> [] miss; (u3, b): a3 b1 -> [b] rank 1; (u3, c): a3 b2 -> []
    (u3 touched both) miss; (u1, c): a3 b2 c1 -> [b, c] rank 2.
    HR@10 = 2/4, NDCG@10 = (1 + 1/log2(3)) / 4.
    """
    order = [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u2", "b"), ("u3", "b")]
    order += [("u3", "c"), ("u1", "c")]
    events: list[Event] = [_event(n, u, i, 1_000 * n) for n, (u, i) in enumerate(order)]
    stream = StreamState()
    config = PrequentialConfig(batch_ms=10**9, fresh=True)  # one batch: fresh lists only
    result = run_prequential(events, [OnlinePopular(stream)], config, stream=stream)
    assert result.counts["eligible"] == result.counts["scored"] == 4
    assert result.ranks[0].tolist() == [10, 0, 10, 1]
    summary = summarise(result)["most-popular"]
    assert summary["hr@10"] == pytest.approx(0.5)
    assert summary["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 4)


class Fixed:
    """Always lists the same items, touched or not: the loop must drop the touched."""

    name = "fixed"

    def __init__(self, stream: StreamState, items: Sequence[str]) -> None:
        self.stream, self.items = stream, items

    def observe(self, event: InteractionEvent, before: UserState) -> None:
        return None

    def refresh(self, users: Sequence[TouchedUser], now_ms: int) -> dict[str, IntArray]:
        return {u.user_id: self.stream.codes(self.items) for u in users}

    def cold_list(self) -> IntArray:
        return self.stream.codes(self.items)

    def swap_bundle(self, bundle: Any, now_ms: int) -> dict[str, IntArray]:
        return {}


def test_every_touched_item_is_excluded_beyond_the_states_seen_cap() -> None:
    """The worker's state forgets all but ``seen_max`` items; the scored list does not."""
    from streams.core.state_rules import StateRules

    events: list[Event] = [_event(n, "u1", i, 1_000 * n) for n, i in enumerate("abc")]
    stream = StreamState(StateRules(seen_max=1))
    result = run_prequential(
        events, [Fixed(stream, ["a", "b", "c"])], PrequentialConfig(fresh=True), stream=stream
    )
    assert stream.states["u1"].seen == ("c",)
    assert result.ranks[0].tolist() == [0, 0]  # b after {a}; c after {a, b}
    assert result.lists[0, 1].tolist() == [stream.code["c"], *[-1] * 9]


def test_fresh_freshet_beats_most_popular_on_a_planted_world(tmp_path: Path) -> None:
    from inference.onnx_session import LoadedBundle
    from training.pipeline import run

    # planted: one liked category per user, flat popularity, no off-taste browsing
    world = SimConfig(
        users=150,
        items=200,
        categories=10,
        events=5_000,
        max_tastes=1,
        zipf_exponent=0.2,
        explore_prob=0.0,
    )
    events = list(simulate(world, seed=3))

    def retrain(history: Sequence[Event]) -> Any:
        where = tmp_path / f"b{len(history)}"
        config = TrainConfig(dim=16, epochs=3, patience=3, valid_cases=200, threads=1)
        run(list(history), where, config, test_cases=200, show=False, ranker="off")
        return LoadedBundle.load(where, provider="cpu")

    stream = StreamState()
    settings = Settings(
        onnx_provider="cpu", exploration_slots=0, trending_slots=0, longtail_share=0.0
    )
    models = [FreshetOnline(stream, live_config(settings)), OnlinePopular(stream)]
    config = PrequentialConfig(retrain_every=2_500, warmup_events=2_500)
    result = run_prequential(events, models, config, stream=stream, retrain=retrain)
    assert result.counts["retrains"] == 1
    assert result.counts["scored"] > 300
    summary = summarise(result)
    fresh, popular = summary["freshet"], summary["most-popular"]
    assert fresh["ndcg@10"] > 1.2 * popular["ndcg@10"], summary
    assert fresh["coverage"] > popular["coverage"]
    # the loop's stand-in for Redis is timed apart, inside freshet's CPU
    assert 0.0 < models[0].stand_in_cpu_s < fresh["cpu_seconds"]


def test_online_item_knn_grows_with_the_catalog_and_refuses_past_its_cap() -> None:
    """Items that appear mid-stream grow the dense matrix; past ``max_items``, a clear error."""
    items = [f"i{n}" for n in range(300)]
    events: list[Event] = [_event(n, "u1", item, 1_000 * (n + 1)) for n, item in enumerate(items)]
    stream = StreamState()
    knn = OnlineItemKNN(stream, max_items=400)
    result = run_prequential(events, [knn], PrequentialConfig(batch_ms=0), stream=stream)
    assert result.counts["applied"] == 300
    assert knn.co.shape[0] >= 300
    # u1 viewed i0, i1, ... in order: i298 co-occurs with i299 (its successor)
    assert knn.co[stream.code["i298"], stream.code["i299"]] == 1.0
    small = StreamState()
    capped = OnlineItemKNN(small, max_items=200)
    with pytest.raises(ValueError, match="dense matrix; 201 items > 200"):
        run_prequential(events, [capped], PrequentialConfig(batch_ms=0), stream=small)
