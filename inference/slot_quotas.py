"""How many slots of each list go to the long tail, trending, exploration and new items.

``inference.recommend`` re-ranks every user's candidates under these quotas
(``inference.rerank.Quota``): a quota is a mask over the candidates and the least
number of them a list must hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from inference.candidates import Candidates, ItemTable
from inference.rerank import (
    FROM_ANN,
    FROM_EXPLORATION,
    FROM_TRENDING,
    Quota,
    longtail_quota,
    take_rows,
)

if TYPE_CHECKING:
    from inference.recommend import RecommendConfig

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def slot_quotas(
    cands: Candidates,
    items: ItemTable,
    warm: npt.NDArray[np.bool_],
    personal: npt.NDArray[np.bool_],
    config: RecommendConfig,
    rel: FloatArray,
) -> list[Quota]:
    """The minimum slots of each list: long tail, trending, exploration and new items."""
    k = config.list_size
    rows = np.maximum(cands.rows, 0)
    tail = (cands.rows >= 0) & ~items.head[rows]
    trending = (cands.flags & FROM_TRENDING) > 0
    explore_only = ((cands.flags & FROM_EXPLORATION) > 0) & ((cands.flags & FROM_ANN) == 0)
    n_explore = min(config.exploration_slots, k)
    # Personal users (a vector or co-visitation): exactly `exploration_slots`
    # exploration picks (fewer if none are left). The rest: trending first, exploration
    # fills whatever trending cannot.
    explore_cap = np.where(personal, n_explore, k).astype(np.int64)
    trend_min = np.where(personal, min(config.trending_slots, k), k - n_explore).astype(np.int64)
    # New items have no interactions yet, so relevance alone rarely lifts them into a
    # list; give warm users up to `new_item_slots` of the new items that rank in the
    # upper part of their own ANN candidates (taste-matched, not random exposure).
    from_ann = (cands.flags & FROM_ANN) > 0
    is_new = (cands.rows >= 0) & (items.age_s[rows] < config.new_item_age_s)
    bar = row_quantile(
        np.where(from_ann, rel, -np.inf), from_ann.sum(axis=1), config.new_item_quantile
    )
    fresh = is_new & from_ann & (rel >= bar[:, None]) & warm[:, None]
    n_new = min(config.new_item_slots, k)
    return [
        Quota(tail, longtail_quota(config.longtail_share, k)),
        Quota(trending, trend_min),
        Quota(explore_only, n_explore, explore_cap),
        Quota(fresh, n_new),
    ]


def row_quantile(values: FloatArray, counts: IntArray, q: float) -> npt.NDArray[np.float64]:
    """Per row, the q-quantile (lower) of the ``counts`` finite entries; +inf if none.

    Non-members are -inf, so after an ascending sort a row's members are its last
    ``counts`` entries: one sort for the whole batch instead of a quantile per row.
    """
    width = values.shape[1]
    ordered = np.sort(values, axis=1)
    pos = width - counts + np.floor(q * np.maximum(counts - 1, 0)).astype(np.int64)
    picked = take_rows(ordered, np.minimum(np.maximum(pos, 0), max(width - 1, 0))[:, None])[:, 0]
    return np.where(counts > 0, picked, np.inf).astype(np.float64)
