"""The causal objective: planted successor habits are learned, the mask holds, warm starts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.item_features import HashingConfig
from schemas.events import CatalogEvent, InteractionEvent
from training.data import (
    TYPE_VOCAB,
    InteractionLog,
    build_log,
    leave_one_out,
    training_windows,
    window_batch,
)
from training.evaluation.protocols import build_cases, evaluate
from training.models.retrieval import TorchScorer
from training.models.user_encoder import UserEncoder
from training.train import CAUSAL, TrainResult, train
from training.warm_start import (
    WEIGHTS_FILE,
    apply_warm_start,
    read_warm_start,
    warm_start_of,
    weights_bytes,
)

T0 = 1_700_000_000_000
HASHING = HashingConfig(buckets=512, max_features=4)


def successor_log(users: int, items: int, length: int, seed: int) -> InteractionLog:
    """Every user walks the item cycle ``i -> i + 1 (mod items)`` from a random start."""
    rng = np.random.default_rng(seed)
    events: list[InteractionEvent | CatalogEvent] = [
        CatalogEvent(f"c{i}", "upsert", f"i{i}", T0, (f"g{i % 3}",)) for i in range(items)
    ]
    n = 0
    for u in range(users):
        start = int(rng.integers(0, items))
        for step in range(length):
            n += 1
            item = f"i{(start + step) % items}"
            events.append(InteractionEvent(f"e{n}", f"u{u}", item, "view", T0 + 1000 * n))
    return build_log(events, HASHING)


def test_windows_make_every_event_but_the_first_a_target_once() -> None:
    log = successor_log(users=5, items=20, length=13, seed=0)
    split = leave_one_out(log)
    windows = training_windows(log, split.train, 4)
    assert windows.shape == (5 * 3, 5)  # 11 train events a user: 10 targets in 3 windows
    targets = windows[:, 1:][windows[:, :-1] >= 0]
    assert np.unique(targets).size == targets.size == 5 * 10
    hist, next_items = window_batch(log, windows)
    # Known answer: inputs and next items are consecutive steps of the user's walk.
    rows = hist.mask > 0
    step = (next_items[rows] - hist.items[rows]) % 20
    assert np.all(step == 1)
    assert np.all(next_items[~rows] == -1)


PLANTED = replace(
    CAUSAL,
    dim=32,
    history_len=8,
    epochs=20,
    patience=20,
    windows_per_batch=16,
    lr=1e-2,
    id_dropout=0.0,
    dropout=0.0,
    threads=1,
)


@pytest.fixture(scope="module")
def planted() -> tuple[InteractionLog, TrainResult]:
    """A model trained on 80 users who each walk 14 steps of a 40-item cycle."""
    log = successor_log(users=80, items=40, length=14, seed=1)
    return log, train(log, leave_one_out(log), PLANTED, show=False)


def test_causal_training_learns_a_planted_successor_habit(
    planted: tuple[InteractionLog, TrainResult],
) -> None:
    log, result = planted
    split = leave_one_out(log)
    cases = build_cases(log, split, "test", PLANTED.history_len, None)
    metrics = evaluate(TorchScorer(result.model), cases, log.popularity(split.train)).metrics
    # Chance is 1 in ~27 unseen items; the successor must come first nearly always.
    assert metrics["mrr"] > 0.9, metrics
    assert result.samples == len(result.history) * 80 * 11


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_causal_state_at_t_ignores_items_after_t(seed: int) -> None:
    torch.manual_seed(seed)
    n, d = 12, 16
    encoder = UserEncoder(d, n, len(TYPE_VOCAB), layers=2, heads=2, causal=True).eval()
    vecs = torch.randn(3, n, d)
    types = torch.randint(1, len(TYPE_VOCAB), (3, n))
    gaps = torch.rand(3, n) * 10
    mask = torch.ones(3, n)
    mask[1, :4] = 0
    t = 6
    changed = vecs.clone()
    changed[:, t + 1 :] = torch.randn(3, n - t - 1, d)
    other_types = types.clone()
    other_types[:, t + 1 :] = 1
    with torch.no_grad():
        before = encoder.states(vecs, types, gaps, mask)
        after = encoder.states(changed, other_types, torch.rand(3, n) * 10, mask)
        assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-5)
        assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :], atol=1e-3)
        # The same change does move earlier states of a bidirectional encoder.
        both = UserEncoder(d, n, len(TYPE_VOCAB), layers=2, heads=2, causal=False).eval()
        early = both.states(vecs, types, gaps, mask)[:, : t + 1]
        assert not torch.allclose(early, both.states(changed, types, gaps, mask)[:, : t + 1])


def test_warm_start_carries_item_rows_by_id_into_a_new_log(
    planted: tuple[InteractionLog, TrainResult], tmp_path: Path
) -> None:
    old_log, served = planted
    old = served.model
    (tmp_path / WEIGHTS_FILE).write_bytes(weights_bytes(warm_start_of(old, old_log)))
    start = read_warm_start(tmp_path)
    assert start is not None

    # A new log: other users, a longer cycle with 5 items the served model never had.
    new_log = successor_log(users=30, items=45, length=14, seed=3)
    new_split = leave_one_out(new_log)
    new = train(new_log, new_split, replace(PLANTED, epochs=0), show=False).model
    fresh = new.items.id_emb.weight.detach().clone()
    report = apply_warm_start(new, new_log, start)
    assert report.id_rows == sum(i in old_log.item_ids for i in new_log.item_ids) > 30
    assert report.skipped == []

    old_vecs, new_vecs = old.all_item_vectors(), new.all_item_vectors()
    for code, item in enumerate(new_log.item_ids):
        row = int(new.id_index[code])
        if item in old_log.item_ids:  # known item: the served model's vector
            expect = old_vecs[old_log.item_ids.index(item)]
            np.testing.assert_allclose(new_vecs[code], expect, atol=1e-6)
        elif row:  # new item with training events: its fresh row stays
            assert torch.equal(new.items.id_emb.weight[row], fresh[row])
    inputs = _inputs(PLANTED.history_len, PLANTED.dim)
    with torch.no_grad():
        np.testing.assert_allclose(new.users(*inputs), old.users(*inputs), atol=1e-6)
    # One epoch from the served model beats one epoch from scratch on the new log.
    one = replace(PLANTED, epochs=1)
    warm = train(new_log, new_split, one, show=False, warm_start=start).history[0].valid
    cold = train(new_log, new_split, one, show=False).history[0].valid
    assert warm["mrr"] > 0.7 > 0.3 > cold["mrr"], (warm, cold)


def _inputs(n: int, d: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, n, d, generator=gen),
        torch.ones(2, n, dtype=torch.long),
        torch.zeros(2, n),
        torch.ones(2, n),
    )
