"""Re-ranking of a micro-batch of candidate lists: filters, MMR diversity, quotas, reasons.

Everything works on ``(B, C)`` candidate arrays (item row numbers, -1 for an empty
slot) so the whole batch moves through each step together; the only loop is over the
``k`` output positions of greedy MMR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from inference.list_metrics import item_similarity, popularity_head
from schemas.recommendation import REASONS, Reason

__all__ = [
    "FROM_ANN",
    "FROM_COVISIT",
    "FROM_EXPLORATION",
    "FROM_TRENDING",
    "REASON_CODE",
    "ItemFilter",
    "Quota",
    "assign_reasons",
    "debias",
    "exclusion_mask",
    "gather_unit_vectors",
    "later_duplicates",
    "longtail_quota",
    "minmax_rows",
    "mmr_select",
    "pad_ragged",
    "popularity_head",
]

# Candidate source flags (bit set; one item can come from several sources).
FROM_ANN: Final = np.uint8(1)
FROM_TRENDING: Final = np.uint8(2)
FROM_EXPLORATION: Final = np.uint8(4)
FROM_COVISIT: Final = np.uint8(8)

REASON_CODE: Final[dict[Reason, int]] = {r: i for i, r in enumerate(REASONS)}

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

ItemFilter = Callable[[IntArray], BoolArray]
"""Business allow/deny hook: ``(B, C)`` item rows (-1 padded) -> ``(B, C)`` allowed mask."""


@dataclass(frozen=True)
class Quota:
    """A group of candidates with a minimum (and optional maximum) number of list slots.

    Attributes:
        members: ``(B, C)`` mask of the candidates in the group.
        at_least: Slots the group must fill when it has enough eligible candidates:
            an int for every user or a ``(B,)`` array.
        at_most: Cap on the group's slots, or ``None`` for no cap.
    """

    members: BoolArray
    at_least: int | npt.NDArray[np.int64]
    at_most: int | npt.NDArray[np.int64] | None = None


def pad_ragged(rows: Sequence[npt.ArrayLike] | None, batch: int) -> IntArray:
    """Stack per-user integer sequences into a ``(batch, L)`` array padded with -1."""
    if rows is None:
        return np.full((batch, 0), -1, dtype=np.int64)
    if len(rows) != batch:
        raise ValueError(f"{len(rows)} rows for a batch of {batch}")
    arrs = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
    width = max((a.size for a in arrs), default=0)
    out = np.full((batch, width), -1, dtype=np.int64)
    for i, a in enumerate(arrs):
        out[i, : a.size] = a
    return out


def longtail_quota(share: float, k: int) -> int:
    """Tail slots needed so that ``tail / k >= share``."""
    return max(0, min(k, math.ceil(share * k - 1e-9)))


def debias(scores: npt.ArrayLike, popularity: npt.ArrayLike, beta: float) -> FloatArray:
    """Popularity-debiased scores ``score - beta·log(1 + popularity)``."""
    s = np.asarray(scores, dtype=np.float32)
    if beta == 0.0:
        return s
    pop = np.clip(np.asarray(popularity, dtype=np.float32), 0.0, None)
    return (s - np.float32(beta) * np.log1p(pop)).astype(np.float32)


def exclusion_mask(
    cand: IntArray,
    exclude: IntArray,
    removed: BoolArray,
    allow: ItemFilter | None = None,
) -> BoolArray:
    """Which candidates may be shown: present, not removed, not excluded, allowed, first copy.

    Args:
        cand: ``(B, C)`` item rows, -1 for an empty slot.
        exclude: ``(B, E)`` per-user excluded rows (seen, purchased), -1 padded.
        removed: ``(n,)`` catalog mask of removed items.
        allow: Optional business hook returning a ``(B, C)`` allowed mask.

    Returns:
        ``(B, C)`` mask; a duplicate of an earlier candidate in the same row is False.
    """
    b, c = cand.shape
    n = removed.shape[0]
    ok = (cand >= 0) & (cand < n)
    safe = np.where(ok, cand, 0)
    ok &= ~removed[safe]
    if exclude.size:
        # One flat membership test for the whole batch: key = user * n + item.
        user = np.arange(b, dtype=np.int64)[:, None]
        ex_keys = (user * n + exclude)[exclude >= 0]
        ok &= ~np.isin(user * n + safe, ex_keys)
    ok &= ~later_duplicates(cand)
    if allow is not None:
        allowed = np.asarray(allow(np.where(ok, cand, -1)), dtype=bool)
        if allowed.shape != (b, c):
            raise ValueError(f"allow hook returned shape {allowed.shape}, expected {(b, c)}")
        ok &= allowed
    return ok


def later_duplicates(cand: IntArray) -> BoolArray:
    """``(B, C)`` mask of entries equal to an earlier entry in the same row."""
    order = np.argsort(cand, axis=1, kind="stable")
    s = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros_like(s, dtype=bool)
    dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def mmr_select(
    relevance: npt.ArrayLike,
    unit_vecs: npt.ArrayLike,
    categories: npt.ArrayLike,
    valid: BoolArray,
    k: int,
    mmr_lambda: float,
    category_weight: float = 0.5,
    quotas: Sequence[Quota] = (),
    category_cap: int | None = None,
) -> IntArray:
    """Greedy maximal-marginal-relevance selection of ``k`` candidates per user.

    Each step picks the eligible candidate maximising
    ``λ·rel − (1−λ)·max_sim(candidate, already picked)`` where ``rel`` is relevance
    min-max scaled per user to [0, 1] and ``max_sim`` uses ``item_similarity``. With
    ``λ = 1`` and no quotas this is the top-``k`` by relevance (ties: lower position).

    Quotas bind only when their outstanding minimums fill every remaining slot: then
    the step is restricted to members of groups still short. Groups whose ``at_most``
    is reached, and categories holding ``category_cap`` picks, become ineligible.

    Args:
        relevance: ``(B, C)`` scores; non-finite ones make the candidate ineligible.
        unit_vecs: ``(B, C, d)`` unit item vectors (zero rows for unknown).
        categories: ``(B, C)`` category codes, negative for unknown.
        valid: ``(B, C)`` eligibility from filtering.
        k: List length.
        mmr_lambda: Relevance weight λ in [0, 1].
        category_weight: Weight of the same-category term in the similarity.
        quotas: Minimum/maximum slot groups (long tail, trending, exploration).
        category_cap: Most items per (known) category, or ``None``.

    Returns:
        ``(B, k)`` positions into the candidate axis, best first; -1 where nothing is
        left to pick.
    """
    rel = np.asarray(relevance, dtype=np.float32)
    vecs = np.asarray(unit_vecs, dtype=np.float32)
    cats = np.asarray(categories)
    b, c = rel.shape
    eligible0 = valid & np.isfinite(rel)
    lam = float(np.clip(mmr_lambda, 0.0, 1.0))
    # At λ = 1 the raw scores rank exactly; scaling could merge near-equal ones.
    rel_n = np.where(eligible0, rel, 0.0) if lam == 1.0 else minmax_rows(rel, eligible0)

    picked = np.full((b, k), -1, dtype=np.int64)
    taken = np.zeros((b, c), dtype=bool)
    max_sim = np.zeros((b, c), dtype=np.float32)
    cat_count = np.zeros((b, c), dtype=np.int64)
    groups = [(q.members, _per_user(q.at_least, b), _cap(q.at_most, b)) for q in quotas]
    group_count = np.zeros((len(groups), b), dtype=np.int64)
    rows = np.arange(b)

    for step in range(k):
        eligible = eligible0 & ~taken
        if category_cap is not None:
            eligible &= (cat_count < category_cap) | (cats < 0)
        for g, (members, _, cap) in enumerate(groups):
            eligible &= ~(members & (group_count[g] >= cap)[:, None])
        if groups:
            eligible = _enforce_minimums(eligible, groups, group_count, k - step)
        score = np.where(eligible, lam * rel_n - (1.0 - lam) * max_sim, -np.inf)
        best = np.argmax(score, axis=1)
        live = eligible[rows, best]
        if not live.any():
            break
        picked[live, step] = best[live]
        taken[rows[live], best[live]] = True
        for g, (members, _, _) in enumerate(groups):
            group_count[g] += live & members[rows, best]
        chosen_vec = vecs[rows, best]
        chosen_cat = cats[rows, best]
        sim = item_similarity(
            chosen_vec[:, None, :], chosen_cat[:, None], vecs, cats, category_weight
        )[:, 0, :]
        max_sim = np.where(live[:, None], np.maximum(max_sim, sim) if step else sim, max_sim)
        same_cat = (cats == chosen_cat[:, None]) & (cats >= 0) & live[:, None]
        cat_count += same_cat
    return picked


def _enforce_minimums(
    eligible: BoolArray,
    groups: list[tuple[BoolArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    group_count: npt.NDArray[np.int64],
    remaining: int,
) -> BoolArray:
    """Restrict a step to quota groups that would otherwise miss their minimum.

    A group whose outstanding minimum equals the remaining slots must be picked from
    now on (members of several such groups: their intersection). Otherwise, once all
    outstanding minimums together fill the remaining slots, the pick must come from
    some group still short. Groups overlap (exploration items are tail items), so the
    second rule is conservative: it starts binding early rather than late.
    """
    short_members = np.zeros_like(eligible)
    need_total = np.zeros(eligible.shape[0], dtype=np.int64)
    must = eligible.copy()
    for g, (members, at_least, _) in enumerate(groups):
        avail = (eligible & members).any(axis=1)
        need = np.where(avail, np.maximum(at_least - group_count[g], 0), 0)
        need_total += need
        short_members |= members & (need > 0)[:, None]
        tight = (need >= remaining)[:, None]
        narrowed: BoolArray = must & (members | ~tight)
        must = np.where(narrowed.any(axis=1, keepdims=True), narrowed, must)
    restricted = eligible & short_members
    forced = (need_total >= remaining) & restricted.any(axis=1)
    out = np.where(forced[:, None], restricted, eligible)
    tight_any = (must != eligible).any(axis=1)
    return np.where(tight_any[:, None], must, out)


def minmax_rows(x: FloatArray, mask: BoolArray) -> npt.NDArray[np.float64]:
    """Each row of ``x`` scaled to [0, 1] over its ``mask`` entries; 0 elsewhere or if flat."""
    x = x.astype(np.float64)
    lo = np.where(mask, x, np.inf).min(axis=1, initial=np.inf)
    hi = np.where(mask, x, -np.inf).max(axis=1, initial=-np.inf)
    span = hi - lo
    good = np.isfinite(span) & (span > 0)
    scale = np.where(good, span, 1.0)
    base = np.where(np.isfinite(lo), lo, 0.0)
    out = np.where(mask, (np.where(mask, x, 0.0) - base[:, None]) / scale[:, None], 0.0)
    return np.where(good[:, None], out, 0.0)


def _per_user(x: int | npt.NDArray[np.int64], b: int) -> npt.NDArray[np.int64]:
    return np.broadcast_to(np.asarray(x, dtype=np.int64), (b,))


def _cap(x: int | npt.NDArray[np.int64] | None, b: int) -> npt.NDArray[np.int64]:
    return _per_user(np.iinfo(np.int64).max if x is None else x, b)


def assign_reasons(
    flags: npt.ArrayLike,
    is_new: npt.ArrayLike,
    unit_vecs: npt.ArrayLike,
    history_unit_vecs: npt.ArrayLike,
    history_valid: npt.ArrayLike,
    similar_threshold: float,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int64]]:
    """Why each picked item is there, and which history item it resembles.

    Precedence: exploration (came only from exploration sampling) > trending > new
    item > similar to a history item (cosine >= ``similar_threshold``) > personalised.

    Args:
        flags: ``(B, k)`` source flags of the picked items.
        is_new: ``(B, k)`` items younger than the new-item threshold.
        unit_vecs: ``(B, k, d)`` unit vectors of the picked items.
        history_unit_vecs: ``(B, H, d)`` unit vectors of recent history items.
        history_valid: ``(B, H)`` mask of real (non-padding) history slots.
        similar_threshold: Cosine needed for ``similar_to_item``.

    Returns:
        ``(codes (B, k) int8 indexing REASONS, history position (B, k) or -1)``.
    """
    f = np.asarray(flags, dtype=np.uint8)
    hv = np.asarray(history_valid, dtype=bool)
    b, k = f.shape
    hist_pos = np.full((b, k), -1, dtype=np.int64)
    similar = np.zeros((b, k), dtype=bool)
    if hv.shape[1]:
        cos = np.asarray(unit_vecs, np.float32) @ np.swapaxes(
            np.asarray(history_unit_vecs, np.float32), 1, 2
        )
        cos = np.where(hv[:, None, :], cos, -np.inf)
        best = cos.argmax(axis=2)
        similar = np.take_along_axis(cos, best[..., None], axis=2)[..., 0] >= similar_threshold
        hist_pos = np.where(similar, best, -1)
    explore = ((f & FROM_EXPLORATION) > 0) & ((f & FROM_ANN) == 0)
    trending = (f & FROM_TRENDING) > 0
    new = np.asarray(is_new, dtype=bool)
    codes = np.select(
        [explore, trending, new, similar],
        [
            REASON_CODE["exploration"],
            REASON_CODE["trending"],
            REASON_CODE["new_item"],
            REASON_CODE["similar_to_item"],
        ],
        REASON_CODE["personalised"],
    ).astype(np.int8)
    hist_pos = np.where(codes == REASON_CODE["similar_to_item"], hist_pos, -1)
    return codes, hist_pos


def gather_unit_vectors(unit_item_vecs: FloatArray, rows: IntArray) -> FloatArray:
    """``(B, C, d)`` unit vectors for ``(B, C)`` item rows; -1 rows give zero vectors."""
    out = unit_item_vecs[np.where(rows >= 0, rows, 0)]
    out[rows < 0] = 0.0
    return out
