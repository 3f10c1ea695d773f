"""Candidate generation for a micro-batch: ANN, co-visitation, trending, tail exploration.

The item table is a frozen snapshot of the catalog as arrays; candidates are item row
numbers in it, with a bit set saying which sources proposed each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from inference.explore_kernel import draws, fast_draws_apply
from inference.list_kernel import warm_users
from inference.list_metrics import HEAD_MASS, popularity_head, unit_rows
from inference.rerank import (
    FROM_ANN,
    FROM_COVISIT,
    FROM_EXPLORATION,
    FROM_TRENDING,
    ItemFilter,
    allowed_rows,
    pad_ragged,
)
from inference.rerank_kernels import candidate_rows, known_trending

if TYPE_CHECKING:
    from inference.recommend import RecommendConfig

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


SOURCE_ORDER = np.array([FROM_ANN, FROM_COVISIT, FROM_TRENDING, FROM_EXPLORATION], np.uint8)
"""Source flag of each block of a candidate row, in the order the blocks are joined."""


class Searcher(Protocol):
    """What candidate generation needs from an index (``AnnIndex`` is one)."""

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IntArray, FloatArray]: ...


@dataclass(frozen=True)
class ItemTable:
    """The catalog as aligned arrays; row ``i`` is the item with id ``ids[i]``.

    Attributes:
        vectors: ``(n, d)`` item vectors (the ANN index holds the same, keyed by row).
        ids: ``(n,)`` item ids as strings.
        categories: ``(n,)`` category codes, negative for unknown.
        popularity: ``(n,)`` interaction counts (or decayed counts).
        age_s: ``(n,)`` seconds since each item entered the catalog.
        removed: ``(n,)`` items removed from the catalog (never recommended).
        head_mass: Interaction share that defines the popularity head.
    """

    vectors: FloatArray
    ids: npt.NDArray[np.str_]
    categories: IntArray
    popularity: FloatArray
    age_s: FloatArray
    removed: BoolArray
    head_mass: float = HEAD_MASS
    head: BoolArray = field(init=False, repr=False)
    unit: FloatArray = field(init=False, repr=False)
    tail_rows: IntArray = field(init=False, repr=False)

    known_unit: InitVar[FloatArray | None] = None
    known_head: InitVar[BoolArray | None] = None

    def __post_init__(self, known_unit: FloatArray | None, known_head: BoolArray | None) -> None:
        """Derive head, unit vectors and tail rows (or take ones the caller kept)."""
        n = self.vectors.shape[0]
        for name in ("ids", "categories", "popularity", "age_s", "removed"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} has shape {np.shape(getattr(self, name))}, need ({n},)")
        head = (
            popularity_head(self.popularity, self.head_mass) if known_head is None else known_head
        )
        unit = unit_rows(self.vectors) if known_unit is None else known_unit
        if head.shape != (n,) or unit.shape != self.vectors.shape:
            raise ValueError("known head/unit do not match the vectors")
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "tail_rows", np.flatnonzero(~head & ~self.removed))

    @classmethod
    def create(
        cls,
        vectors: npt.ArrayLike,
        ids: npt.ArrayLike,
        categories: npt.ArrayLike | None = None,
        popularity: npt.ArrayLike | None = None,
        age_s: npt.ArrayLike | None = None,
        removed: npt.ArrayLike | None = None,
        head_mass: float = HEAD_MASS,
    ) -> ItemTable:
        """Build a table, converting dtypes; missing columns get neutral defaults."""
        v = np.asarray(vectors, dtype=np.float32)
        n = v.shape[0]
        return cls(
            vectors=v,
            ids=np.asarray(ids, dtype=np.str_),
            categories=np.full(n, -1, np.int64)
            if categories is None
            else np.asarray(categories, dtype=np.int64),
            popularity=np.zeros(n, np.float32)
            if popularity is None
            else np.asarray(popularity, dtype=np.float32),
            age_s=np.full(n, np.inf, np.float32)
            if age_s is None
            else np.asarray(age_s, dtype=np.float32),
            removed=np.zeros(n, bool) if removed is None else np.asarray(removed, dtype=bool),
            head_mass=head_mass,
        )

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])


@dataclass(frozen=True)
class Candidates:
    """``(B, C)`` candidate item rows (-1 empty, each item once per row) and source flags."""

    rows: IntArray
    flags: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class CandidateBatch:
    """A micro-batch's users and candidates, before relevance: what every re-rank needs.

    Attributes:
        user_vecs: ``(B, d)`` vectors, zero for users served cold.
        warm: ``(B,)`` users with a usable vector who are known.
        cands: Their candidates.
        valid: ``(B, C)`` candidates that may be shown (``exclusion_mask``).
        trend_rows, trend_scores: Trending rows in the catalog, best first, and scores.
        cv_rows, cv_scores: ``(B, K)`` co-visitation candidates, -1 padded (0 scores).
    """

    user_vecs: FloatArray
    warm: npt.NDArray[np.bool_]
    cands: Candidates
    valid: npt.NDArray[np.bool_]
    trend_rows: IntArray
    trend_scores: FloatArray
    cv_rows: IntArray
    cv_scores: FloatArray


def candidate_batch(
    user_vecs: npt.ArrayLike,
    items: ItemTable,
    index: Searcher,
    config: RecommendConfig,
    known: npt.ArrayLike | None,
    exclude: Sequence[npt.ArrayLike] | None,
    trending: npt.ArrayLike,
    trending_scores: npt.ArrayLike | None,
    allow: ItemFilter | None,
    seed: int | np.random.Generator,
    covisit: tuple[npt.ArrayLike, npt.ArrayLike] | None,
) -> CandidateBatch:
    """Validated inputs, the candidates and their exclusions (``recommend``'s arguments)."""
    u, warm, seed, excluded, trend_rows, trend_scores = batch_inputs(
        user_vecs, items, known, exclude, trending, trending_scores, seed
    )
    b = u.shape[0]
    cv_in, cv_in_scores = _covisit_arrays(covisit, b, config.covisit_weight)
    # The sources: the warm users' nearest items (over-fetched so that enough survive
    # the exclusions), co-visitation, the trending head and random long-tail items.
    k_ann = config.candidates + min(excluded.shape[1], config.max_overfetch)
    any_search = k_ann > 0 and bool(warm.any())
    searched = warm if any_search else np.zeros(b, np.bool_)
    found = (
        index.search(u[warm], k_ann)[0] if any_search else np.empty((0, max(k_ann, 0)), np.int64)
    )
    explore = explore_draws(items, seed, b, config.explore_pool)
    trend = trend_rows[: config.trending_pool][: config.candidates]
    # joined, each item once per row, and what may be shown, in one compiled pass
    rows, flags, valid, cv_rows, cv_scores = candidate_rows(
        np.ascontiguousarray(found, np.int64),
        searched,
        max(k_ann, 0),
        cv_in,
        cv_in_scores,
        np.ascontiguousarray(trend),
        explore,
        SOURCE_ORDER,
        excluded,
        items.removed,
        _marks(items.size, b * (max(k_ann, 0) + cv_in.shape[1] + trend.size + explore.shape[1])),
    )
    if allow is not None:
        valid &= allowed_rows(allow, rows, valid)
    cands = Candidates(rows=rows, flags=flags)
    return CandidateBatch(u, warm, cands, valid, trend_rows, trend_scores, cv_rows, cv_scores)


def batch_inputs(
    user_vecs: npt.ArrayLike,
    items: ItemTable,
    known: npt.ArrayLike | None,
    exclude: Sequence[npt.ArrayLike] | None,
    trending: npt.ArrayLike,
    trending_scores: npt.ArrayLike | None,
    seed: int | np.random.Generator,
) -> tuple[FloatArray, BoolArray, int | np.random.Generator, IntArray, IntArray, FloatArray]:
    """``(user vectors (cold rows zeroed), warm, seed, excluded rows (B, E),
    trending rows, their scores)``: ``candidate_batch``'s arguments validated (the seed
    as given: ``explore_draws`` makes the generator only where it needs one)."""
    # a writeable C copy, at least 2-D: the compiled pass is warmed for that layout only
    u = np.array(user_vecs, np.float32, order="C", ndmin=2)
    b = u.shape[0]
    is_known = np.ones(b, bool)
    if known is not None:
        is_known[:] = np.asarray(known, dtype=bool)
    warm, u = warm_users(u, is_known)
    excluded = pad_ragged(exclude, b)
    trend_rows = np.asarray(trending, dtype=np.int64).reshape(-1)
    n_trend = trend_rows.size
    if trending_scores is None:
        trend_scores: FloatArray = np.linspace(
            1.0, 1.0 / max(n_trend, 1), n_trend, dtype=np.float32
        )
    else:
        trend_scores = np.asarray(trending_scores, dtype=np.float32).reshape(-1)
        if trend_scores.shape != (n_trend,):
            raise ValueError(f"{trend_scores.size} trending scores for {n_trend} items")
    trend_rows, trend_scores = known_trending(
        np.ascontiguousarray(trend_rows), np.ascontiguousarray(trend_scores), items.size
    )
    return u, warm, seed, excluded, trend_rows, trend_scores


def explore_draws(items: ItemTable, seed: int | np.random.Generator, b: int, pool: int) -> IntArray:
    """``(B, pool)`` long-tail rows drawn at random for the exploration slots.

    The draws are ``np.random.default_rng(seed).integers(0, tail, size=(B, pool))``'s
    (or the given generator's); for a plain int seed they come from
    ``inference.explore_kernel``, the same numbers without building the generator
    (~10 us a call, the live loop's usual case).
    """
    tail = items.tail_rows
    if isinstance(seed, int) and fast_draws_apply(seed, tail.size):
        if pool > 0:
            return tail[draws(seed, tail.size, b * pool).reshape(b, pool)]
        return np.full((b, 0), -1, dtype=np.int64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if tail.size and pool > 0:
        return tail[rng.integers(0, tail.size, size=(b, pool))]
    return np.full((b, 0), -1, dtype=np.int64)


MARKS_BELOW = 32
"""Marks instead of sorts (``candidate_rows``) once the batch holds at least 1/32 as
many candidates as the catalog has items: the zeros then cost less than the sorts."""


def _marks(n_items: int, n_candidates: int) -> npt.NDArray[np.int32]:
    """Zeros for ``candidate_rows``' marks where they pay off, else an empty array."""
    use = n_items <= MARKS_BELOW * n_candidates
    return np.zeros(n_items if use else 0, np.int32)


def _covisit_arrays(
    covisit: tuple[npt.ArrayLike, npt.ArrayLike] | None, b: int, weight: float
) -> tuple[IntArray, FloatArray]:
    """``(B, K)`` co-visitation rows and scores as given (``candidate_rows`` keeps the
    valid ones); empty when off or absent."""
    if covisit is None or weight <= 0:
        return np.full((b, 0), -1, np.int64), np.zeros((b, 0), np.float32)
    rows = np.ascontiguousarray(covisit[0], dtype=np.int64).reshape(b, -1)
    scores = np.ascontiguousarray(covisit[1], dtype=np.float32).reshape(b, -1)
    if rows.shape != scores.shape:
        raise ValueError(f"co-visitation rows {rows.shape} and scores {scores.shape} differ")
    return rows, scores
