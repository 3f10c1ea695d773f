"""The interaction log, its splits and per-event histories."""

from __future__ import annotations

import numpy as np

from schemas.events import CatalogEvent, InteractionEvent
from training.data import (
    HistoryBatch,
    UserHistories,
    build_log,
    history_batch,
    leave_one_out,
    time_split,
)


def _events() -> list[InteractionEvent | CatalogEvent]:
    t0 = 1_700_000_000_000
    out: list[InteractionEvent | CatalogEvent] = [
        CatalogEvent("c1", "upsert", "i0", t0, ("shoes",), {"brand": "acme"}, "Red runner"),
        CatalogEvent("c2", "upsert", "i9", t0, ("hats",), {}, ""),
        CatalogEvent("c3", "remove", "i9", t0 + 5, (), {}, ""),
    ]
    for u in range(4):
        for j in range(5):
            ts = t0 + 1000 * (10 * j + u)
            out.append(InteractionEvent(f"e{u}-{j}", f"u{u}", f"i{(u + j) % 6}", "view", ts))
    out.append(InteractionEvent("p", "u0", "i1", "purchase", t0 + 60_000))
    out.append(InteractionEvent("p", "u0", "i1", "purchase", t0 + 60_000))  # duplicate id
    out.append(InteractionEvent("r", "u1", "i2", "rating", t0 + 61_000, value=4.0))
    return out


def test_build_log_codes_weights_and_dedups() -> None:
    log = build_log(_events())
    assert log.n_events == 22
    assert np.all(np.diff(log.ts) >= 0)
    assert log.weights[log.types == 4].tolist() == [5.0]  # purchase
    assert log.weights[log.types == 5].tolist() == [4.0]  # rating weighs its value
    assert log.item_removed[log.item_ids.index("i9")]
    assert (log.item_features[log.item_ids.index("i0")] > 0).sum() == 4  # cat, attr, 2 words


def test_time_split_never_leaks_the_future() -> None:
    log = build_log(_events())
    split = time_split(log, 0.2, 0.2)
    assert split.train.size and split.valid.size and split.test.size
    assert log.ts[split.train].max() < log.ts[split.valid].min()
    assert log.ts[split.valid].max() < log.ts[split.test].min()
    assert split.train.size + split.valid.size + split.test.size == log.n_events


def test_leave_one_out_holds_out_each_users_last_two() -> None:
    log = build_log(_events())
    split = leave_one_out(log)
    for u in range(log.n_users):
        mine = np.flatnonzero(log.users == u)
        assert set(split.test) & set(mine) == {mine[-1]}
        assert set(split.valid) & set(mine) == {mine[-2]}


def test_history_batch_is_left_padded_past_only() -> None:
    log = build_log(_events())
    hist = UserHistories.of(log)
    u0 = np.flatnonzero(log.users == log.user_ids.index("u0"))
    hb: HistoryBatch = history_batch(log, hist, u0[[0, 2]], 3)
    assert hb.mask[0].tolist() == [0, 0, 0]
    assert hb.mask[1].tolist() == [0, 1, 1]
    assert hb.items[1, 1:].tolist() == log.items[u0[:2]].tolist()
    assert hb.gaps[1, 2] == 0.0  # 'now' is the most recent history event
    assert hb.gaps[1, 1] == np.float32(np.log1p(10.0))
    rows, cols = hist.seen_pairs(u0[[2]], log)
    assert rows.tolist() == [0, 0] and cols.tolist() == log.items[u0[:2]].tolist()
