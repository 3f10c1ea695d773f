"""A replaced bundle is freed by reference counting alone, so the collector's settle at
a later bundle (streams/runtime/collector.py) need not thaw the frozen heap to free it.

A trained bundle is served and scored with, then replaced as the worker replaces one
(``streams.core.copy_on_write``: the co-visitation table re-numbered, the bundle's parts
built off the lock, the swap); with the collector off, everything that only the old
bundle held is gone once the scorer and the swap's locals let go of it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from freshet.simulator.stream import SimConfig, simulate
from inference.item_features import HashingConfig
from inference.onnx_session import LoadedBundle
from schemas.events import InteractionEvent
from streams.core.copy_on_write import prepare_covisit, swap_bundle
from streams.core.ingest import TouchedUser
from streams.core.live_scorer import LiveScorer, bundle_parts
from streams.core.state_rules import StateRules, UserState, apply_event
from training.data import build_log, time_split
from training.export import export_bundle
from training.train import TrainConfig, train

HASHING = HashingConfig(buckets=4096, max_features=16)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    config = SimConfig(users=150, items=120, events=4000, new_item_rate=0.2, new_user_rate=0.1)
    log = build_log(simulate(config, seed=5), HASHING)
    split = time_split(log)
    result = train(log, split, TrainConfig(dim=16, history_len=8, epochs=1, threads=1), show=False)
    root = tmp_path_factory.mktemp("bundles")
    export_bundle(result.model, log, split, root, {"test": {"ndcg@10": 0.5}}, version="v1")
    return root


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _touched(bundle: LoadedBundle, users: int) -> list[TouchedUser]:
    rules, items, out = StateRules(), bundle.item_ids, []
    for u in range(users):
        state, last = UserState(), None
        for k in range(6):
            ts = 1_000_000 + 1_000 * (u * 6 + k)
            last = InteractionEvent(
                f"e{u}-{k}", f"u{u}", items[(7 * u + 3 * k) % len(items)], "view", ts
            )
            state = apply_event(state, last, rules)
        assert last is not None
        out.append(TouchedUser(f"u{u}", 0, state, None, last, last.ts))
    return out


def _serve(scorer: LiveScorer, bundle: LoadedBundle) -> None:
    """As ``LiveRecommender._swap_in``: prepared and re-numbered off the lock, swapped."""
    catalog, index = scorer.prepare(bundle)
    scorer.covisit_frozen = True
    remap = prepare_covisit(scorer, catalog)
    swap_bundle(scorer, bundle, catalog, index, remap, parts=bundle_parts(bundle))


def test_a_replaced_bundle_is_freed_by_reference_counting(
    bundle_path: Path, collector_off: None
) -> None:
    scorer = LiveScorer()
    first = LoadedBundle.load(bundle_path, "v1", provider="cpu", serving=True)
    _serve(scorer, first)
    now = 2_000_000
    assert scorer.score(_touched(first, 20), now).lists  # a batch
    assert scorer.score(_touched(first, 1), now).lists  # and a batch of one (bound run)
    parts = scorer._per_bundle
    assert parts is not None and parts[0] is first and parts[3] is not None
    held = {
        "bundle": weakref.ref(first),
        "data": weakref.ref(first.data),
        "encoder session": weakref.ref(first._encoder),
        "content session": weakref.ref(first._content),
        "batch-of-one session": weakref.ref(first._encoder_of_one),
        "bound run": weakref.ref(parts[3].graph),
        "catalog": weakref.ref(scorer.catalog),
        "covisit table": weakref.ref(scorer.covisit),
        "ANN index": weakref.ref(scorer.index),
    }
    del parts
    second = LoadedBundle.load(bundle_path, "v1", provider="cpu", serving=True)
    _serve(scorer, second)
    assert scorer.score(_touched(second, 20), now).lists
    del first
    kept = [name for name, ref in held.items() if ref() is not None]
    assert kept == []  # with the collector off: no cycle held any of them
