"""Baselines on planted data, scored through the shared protocol code."""

from __future__ import annotations

import numpy as np

from schemas.events import InteractionEvent
from training.data import Split, build_log, time_split
from training.evaluation.baselines import ItemKNN, MostPopular, Trending
from training.evaluation.protocols import build_cases, evaluate

T0 = 1_700_000_000_000
HOUR = 3_600_000


def _ev(n: int, user: str, item: str, ts: int) -> InteractionEvent:
    return InteractionEvent(f"e{n}", user, item, "view", ts)


def test_most_popular_and_trending_see_different_heads() -> None:
    events = []
    n = 0
    for u in range(30):  # 'old' is popular long ago, 'new' is popular lately
        events.append(_ev(n := n + 1, f"u{u}", "old", T0 + u))
    for u in range(10):
        events.append(_ev(n := n + 1, f"v{u}", "new", T0 + 100 * HOUR + u))
    events.append(_ev(n := n + 1, "w", "other", T0 + 101 * HOUR))
    log = build_log(events)
    train = np.arange(log.n_events)
    pop = MostPopular(log, train).popularity
    trend = Trending(log, train, half_life_h=6.0).scores
    old, new = log.item_ids.index("old"), log.item_ids.index("new")
    assert pop[old] > pop[new]
    assert trend[new] > trend[old]


def test_item_knn_recovers_planted_successors() -> None:
    # Each user walks a chain a0 -> a1 -> ... ; the held-out step must come back first.
    rng = np.random.default_rng(0)
    events = []
    n = 0
    for u in range(60):
        start = int(rng.integers(0, 10))
        for step in range(6):
            item = f"a{(start + step) % 20}"
            events.append(_ev(n := n + 1, f"u{u}", item, T0 + 1000 * (6 * u + step)))
    log = build_log(events)
    split: Split = time_split(log, 0.1, 0.1)
    cases = build_cases(log, split, "test", history_len=5)
    knn = evaluate(ItemKNN(log, split.train, window=1), cases, log.popularity(split.train))
    pop = evaluate(MostPopular(log, split.train), cases, log.popularity(split.train))
    assert len(cases) > 10
    assert knn.metrics["hr@10"] > 0.9
    assert knn.metrics["ndcg@10"] > pop.metrics["ndcg@10"] + 0.3
