"""Planted structure: on future events of a simulated shop the encoder beats the baselines."""

from __future__ import annotations

import pytest

from freshet.simulator.stream import SimConfig, simulate
from training.data import build_log, time_split
from training.evaluation.baselines import ItemKNN, MostPopular
from training.evaluation.protocols import build_cases, evaluate
from training.models.retrieval import TorchScorer
from training.train import TrainConfig, train


@pytest.mark.slow
def test_user_encoder_beats_popular_and_item_knn_on_future_events() -> None:
    world = SimConfig(users=1000, items=500, events=60_000, new_item_rate=0.05, new_user_rate=0.05)
    log = build_log(simulate(world, seed=11))
    split = time_split(log)
    result = train(log, split, TrainConfig(epochs=8, threads=1), show=False)
    cases = build_cases(log, split, "test", history_len=20)
    popularity = log.popularity(split.train)
    ndcg = {
        s.name: evaluate(s, cases, popularity).metrics["ndcg@10"]
        for s in (
            TorchScorer(result.model),
            MostPopular(log, split.train),
            ItemKNN(log, split.train),
        )
    }
    assert len(cases) > 1000
    assert ndcg["user-encoder"] > 2 * ndcg["most-popular"], ndcg
    assert ndcg["user-encoder"] > ndcg["item-knn"] + 0.02, ndcg
