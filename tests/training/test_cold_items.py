"""Planted structure: items never interacted with reach users of matching taste by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inference.item_features import HashingConfig
from inference.onnx_session import LoadedBundle
from schemas.events import CatalogEvent, InteractionEvent
from training.data import build_log, time_split
from training.export import export_bundle
from training.train import TrainConfig, train

CATEGORIES = 6
OLD, NEW = 15, 5
T0 = 1_700_000_000_000


def _item(c: int, j: int, rng: np.random.Generator) -> CatalogEvent:
    text = f"w{c}x w{c}y w{int(rng.integers(0, 50))}"
    brand = f"b{int(rng.integers(0, 3))}"
    return CatalogEvent(
        f"cat-{c}-{j}", "upsert", f"i{c}-{j}", T0, (f"c{c}",), {"brand": brand}, text
    )


def test_new_items_reach_users_with_matching_taste(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(3)
    catalog = [_item(c, j, rng) for c in range(CATEGORIES) for j in range(OLD + NEW)]
    taste = {f"u{u}": u % CATEGORIES for u in range(120)}
    events: list[InteractionEvent | CatalogEvent] = list(catalog)
    n = 0
    for _step in range(15):
        for user, c in taste.items():
            item = f"i{c}-{int(rng.integers(0, OLD))}"
            n += 1
            events.append(InteractionEvent(f"e{n}", user, item, "view", T0 + 1000 * n))
    log = build_log(events, HashingConfig(buckets=2048, max_features=8))
    split = time_split(log)
    result = train(
        log,
        split,
        TrainConfig(dim=16, history_len=10, epochs=12, batch_size=64, patience=3, threads=1),
        show=False,
    )
    export_bundle(result.model, log, split, tmp_path, version="v1")
    bundle = LoadedBundle.load(tmp_path, provider="cpu")

    # The online path: new items embedded from their catalog events alone.
    new = [ev for ev in catalog if int(ev.item_id.split("-")[1]) >= OLD]
    new_vecs = bundle.embed_catalog([(ev.categories, ev.attributes, ev.text) for ev in new])
    new_cat = np.array([int(ev.categories[0][1:]) for ev in new])
    assert all(log.item_ids.index(ev.item_id) not in log.items for ev in new)

    users = list(taste)
    hist_rows = np.array(
        [
            [bundle.row_of[f"i{taste[u]}-{int(rng.integers(0, OLD))}"] for _ in range(10)]
            for u in users
        ]
    )
    vecs = bundle.item_vectors[hist_rows]
    types = np.ones(hist_rows.shape, dtype=np.int64)
    gaps = np.tile(np.log1p(np.arange(9, -1, -1, dtype=np.float32)), (len(users), 1))
    user_vecs = bundle.encode_users(vecs, types, gaps, np.ones(hist_rows.shape))
    best = (user_vecs @ new_vecs.T).argmax(axis=1)
    match = (new_cat[best] == np.array([taste[u] for u in users])).mean()
    assert match > 0.8, (
        f"top new item matches the user's taste {match:.0%} (chance {1 / CATEGORIES:.0%})"
    )
