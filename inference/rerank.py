"""Re-ranking of a micro-batch of candidate lists: filters, MMR diversity, quotas.

Everything works on ``(B, C)`` candidate arrays (item row numbers, -1 for an empty
slot) so the whole batch moves through each step together; greedy MMR itself, a loop
over the ``k`` output positions, runs per user in a compiled kernel
(``inference.mmr_kernel``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from inference.list_metrics import popularity_head
from inference.mmr_kernel import mmr_kernel, mmr_kernel_at
from inference.rerank_kernels import allowed_first_copies, later_duplicates_kernel
from schemas.recommendation import REASONS, Reason

__all__ = [
    "FROM_ANN",
    "FROM_COVISIT",
    "FROM_EXPLORATION",
    "FROM_TRENDING",
    "REASON_CODE",
    "ItemFilter",
    "Quota",
    "allowed_rows",
    "debias",
    "exclusion_mask",
    "gather_unit_vectors",
    "later_duplicates",
    "longtail_quota",
    "minmax_rows",
    "mmr_select",
    "mmr_select_at",
    "pad_ragged",
    "popularity_head",
    "shortlist",
    "sorted_lookup",
    "sorted_member",
    "take_rows",
]

# Candidate source flags (bit set; one item can come from several sources).
FROM_ANN: Final = np.uint8(1)
FROM_TRENDING: Final = np.uint8(2)
FROM_EXPLORATION: Final = np.uint8(4)
FROM_COVISIT: Final = np.uint8(8)

NO_CAP: Final = int(np.iinfo(np.int64).max)  # a quota without a maximum

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
    if batch == 1:  # the live loop's usual call: the row itself, without the padding's steps
        return np.array(rows[0], dtype=np.int64).reshape(1, -1)
    arrs = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
    width = max((a.size for a in arrs), default=0)
    out = np.full((batch, width), -1, dtype=np.int64)
    for i, a in enumerate(arrs):
        out[i, : a.size] = a
    return out


def longtail_quota(share: float, k: int) -> int:
    """Tail slots needed so that ``tail / k >= share``.

    >>> longtail_quota(0.2, 10), longtail_quota(0.25, 10), longtail_quota(0.0, 10)
    (2, 3, 0)
    """
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
    unique: bool = False,
) -> BoolArray:
    """Which candidates may be shown: present, not removed, not excluded, allowed, first copy.

    Args:
        cand: ``(B, C)`` item rows, -1 for an empty slot.
        exclude: ``(B, E)`` per-user excluded rows (seen, purchased), -1 padded.
        removed: ``(n,)`` catalog mask of removed items.
        allow: Optional business hook returning a ``(B, C)`` allowed mask.
        unique: No row holds an item twice (``Candidates``), so no copy is looked for.

    Returns:
        ``(B, C)`` mask; a duplicate of an earlier candidate in the same row is False.
    """
    ok = allowed_first_copies(
        np.ascontiguousarray(cand, np.int64),
        np.ascontiguousarray(exclude, np.int64),
        np.ascontiguousarray(removed, np.bool_),
        unique,
    )
    if allow is not None:
        ok &= allowed_rows(allow, cand, ok)
    return ok


def allowed_rows(allow: ItemFilter, cand: IntArray, ok: BoolArray) -> BoolArray:
    """The business hook's ``(B, C)`` mask over the candidates still ``ok`` (-1 elsewhere)."""
    allowed = np.asarray(allow(np.where(ok, cand, -1)), dtype=bool)
    if allowed.shape != cand.shape:
        raise ValueError(f"allow hook returned shape {allowed.shape}, expected {cand.shape}")
    return allowed


def take_rows(x: np.ndarray, idx: IntArray) -> np.ndarray:
    """``np.take_along_axis(x, idx, axis=1)`` for 2-D arrays, as one fancy index.

    ``take_along_axis`` builds its index grid in Python (a dozen calls); at a few
    users per call that overhead is the cost.

    >>> take_rows(np.array([[10, 11, 12], [20, 21, 22]]), np.array([[2, 0], [1, 1]]))
    array([[12, 10],
           [21, 21]])
    """
    return x[np.arange(x.shape[0])[:, None], idx]


def sorted_lookup(keys: IntArray, sorted_keys: IntArray) -> tuple[IntArray, BoolArray]:
    """For each of ``keys``, its position in ``sorted_keys`` (ascending) and whether found.

    One binary search for the whole array; where not found the position is meaningless.
    """
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=np.int64), np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return pos, np.asarray(sorted_keys[pos] == keys, dtype=bool)


def sorted_member(keys: IntArray, sorted_keys: IntArray) -> BoolArray:
    """Mask of ``keys`` present in ``sorted_keys`` (ascending), by binary search."""
    return sorted_lookup(keys, sorted_keys)[1]


def later_duplicates(cand: IntArray) -> BoolArray:
    """``(B, C)`` mask of entries equal to an earlier entry in the same row."""
    return later_duplicates_kernel(np.ascontiguousarray(cand, np.int64))


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
    min-max scaled per user to [0, 1] and ``max_sim`` uses ``list_metrics.item_similarity``. With
    ``λ = 1`` and no quotas this is the top-``k`` by relevance (ties: lower position).

    Quotas bind only when their outstanding minimums fill every remaining slot: then
    the step is restricted to members of groups still short (a group whose outstanding
    minimum alone fills them must be picked from; overlapping groups make this rule
    start binding early rather than late). Groups whose ``at_most``
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

    Two near-copies lead on relevance; with λ = 0.5 the second slot goes to the
    different item instead, with λ = 1 to the copy:

    >>> rel = np.array([[1.0, 0.95, 0.5]])
    >>> vecs = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> cats, ok = np.full((1, 3), -1), np.ones((1, 3), bool)
    >>> mmr_select(rel, vecs, cats, ok, 2, 0.5, category_weight=0.0).tolist()
    [[0, 2]]
    >>> mmr_select(rel, vecs, cats, ok, 2, 1.0).tolist()
    [[0, 1]]
    """
    rel = np.asarray(relevance, dtype=np.float32)
    members, at_least, at_most = _quota_arrays(quotas, *rel.shape)
    return mmr_kernel(
        rel,
        np.asarray(unit_vecs, dtype=np.float32),
        np.asarray(categories, dtype=np.int64),
        np.asarray(valid, dtype=bool),
        k,
        mmr_lambda,
        category_weight,
        members,
        at_least,
        at_most,
        category_cap,
    )


def mmr_select_at(
    relevance: npt.ArrayLike,
    valid: BoolArray,
    pos: IntArray,
    rows: IntArray,
    unit_table: FloatArray,
    categories: IntArray,
    k: int,
    mmr_lambda: float,
    category_weight: float = 0.5,
    quotas: Sequence[Quota] = (),
    category_cap: int | None = None,
) -> IntArray:
    """``mmr_select`` restricted to each user's candidate positions ``pos`` (-1: empty).

    The picks are those of ``mmr_select`` on the gathered ``(B, M)`` arrays (unit
    vectors and categories of ``rows`` read from the catalog's ``unit_table`` and
    ``categories``), returned as positions into the full candidate axis; the gather
    happens inside the kernel, one user at a time.
    """
    rel = np.asarray(relevance, dtype=np.float32)
    members, at_least, at_most = _quota_arrays(quotas, *rel.shape)
    return mmr_kernel_at(
        rel,
        valid,
        pos,
        rows,
        unit_table,
        categories,
        k,
        mmr_lambda,
        category_weight,
        members,
        at_least,
        at_most,
        category_cap,
    )


def _quota_arrays(
    quotas: Sequence[Quota], b: int, c: int
) -> tuple[BoolArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Quotas as ``(G, B, C)`` members and ``(G, B)`` minimums and caps."""
    g = len(quotas)
    members = np.zeros((g, b, c), dtype=bool)
    at_least = np.zeros((g, b), dtype=np.int64)
    at_most = np.zeros((g, b), dtype=np.int64)
    for n, q in enumerate(quotas):  # a scalar or (B,) limit broadcasts on assignment
        members[n] = q.members
        at_least[n] = q.at_least
        at_most[n] = NO_CAP if q.at_most is None else q.at_most
    return members, at_least, at_most


def shortlist(
    relevance: npt.ArrayLike, valid: BoolArray, quotas: Sequence[Quota], size: int
) -> IntArray:
    """Positions of the candidates greedy MMR needs to look at, per user.

    Greedy MMR over every candidate costs ``k`` passes over ``(B, C, d)``; re-ranking a
    shortlist is the usual remedy. The shortlist holds each user's ``size`` most
    relevant eligible candidates plus, for every quota group, its ``2·at_least`` most
    relevant eligible members, so quotas can still be met. With ``size >= k`` and
    ``λ = 1`` the top-``k`` by relevance is unchanged.

    Returns:
        ``(B, M)`` positions into the candidate axis, -1 for empty slots, each position
        at most once per row.
    """
    rel = np.asarray(relevance, dtype=np.float32)
    b = rel.shape[0]
    eligible = valid & np.isfinite(rel)
    score = np.where(eligible, rel, -np.inf)
    parts = [_top_positions(score, size)]
    for q in quotas:
        need = int(np.max(q.at_least, initial=0)) if b else 0
        if need > 0:
            parts.append(_top_positions(np.where(q.members, score, -np.inf), 2 * need))
    pos = np.concatenate(parts, axis=1)
    keep = np.isfinite(take_rows(score, np.maximum(pos, 0))) & (pos >= 0)
    pos = np.where(keep, pos, -1)
    return np.where(later_duplicates(pos) & (pos >= 0), -1, pos)


def _top_positions(score: FloatArray, m: int) -> IntArray:
    """``(B, min(m, C))`` positions of the largest scores per row (unordered)."""
    c = score.shape[1]
    if m >= c:
        return np.broadcast_to(np.arange(c, dtype=np.int64), score.shape).copy()
    return np.argpartition(-score, m - 1, axis=1)[:, :m].astype(np.int64)


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
    a = np.asarray(x, dtype=np.int64)
    return np.full(b, a, np.int64) if a.ndim == 0 else a.reshape(b)


def _cap(x: int | npt.NDArray[np.int64] | None, b: int) -> npt.NDArray[np.int64]:
    return _per_user(NO_CAP if x is None else x, b)


def gather_unit_vectors(unit_item_vecs: FloatArray, rows: IntArray) -> FloatArray:
    """``(B, C, d)`` unit vectors for ``(B, C)`` item rows; -1 rows give zero vectors."""
    out = unit_item_vecs[np.where(rows >= 0, rows, 0)]
    out[rows < 0] = 0.0
    return out
