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

from inference.list_kernel import warm_users
from inference.list_metrics import HEAD_MASS, popularity_head, unit_rows
from inference.rerank import (
    FROM_ANN,
    FROM_COVISIT,
    FROM_EXPLORATION,
    FROM_TRENDING,
    ItemFilter,
    exclusion_mask,
    pad_ragged,
)
from inference.rerank_kernels import merge_sources

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


def gather_candidates(
    user_vecs: FloatArray,
    warm: BoolArray,
    items: ItemTable,
    index: Searcher,
    n_candidates: int,
    trending: IntArray,
    explore_pool: int,
    rng: np.random.Generator,
    overfetch: int = 0,
    covisit: IntArray | None = None,
) -> Candidates:
    """Union of the candidate sources for every user in the batch.

    Args:
        user_vecs: ``(B, d)`` user vectors (only warm rows are searched).
        warm: ``(B,)`` users with a usable vector.
        items: The catalog snapshot.
        index: Inner-product search over item rows.
        n_candidates: ANN neighbours wanted per warm user (``C``).
        trending: Trending item rows, best first; offered to every user.
        explore_pool: Random long-tail items drawn per user for exploration slots.
        rng: Source of the exploration draws.
        overfetch: Extra neighbours to fetch, so ``C`` survive later exclusions.
        covisit: ``(B, K)`` rows that follow each user's recent items (-1 padded).
    """
    b = user_vecs.shape[0]
    k_ann = n_candidates + overfetch
    ann = np.full((b, k_ann), -1, dtype=np.int64)
    if warm.any() and k_ann > 0:
        found, _ = index.search(user_vecs[warm], k_ann)
        ann[warm] = found
    trend = np.asarray(trending, dtype=np.int64).reshape(-1)[:n_candidates]
    tail = items.tail_rows
    if tail.size and explore_pool > 0:
        explore = tail[rng.integers(0, tail.size, size=(b, explore_pool))]
    else:
        explore = np.full((b, 0), -1, dtype=np.int64)
    cov = np.full((b, 0), -1, np.int64) if covisit is None else np.asarray(covisit, np.int64)
    rows, flags = merge_sources(
        ann, np.ascontiguousarray(cov), np.ascontiguousarray(trend), explore, SOURCE_ORDER
    )
    return Candidates(rows=rows, flags=flags)


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
    u = np.atleast_2d(np.asarray(user_vecs, dtype=np.float32))
    b = u.shape[0]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    is_known = np.ones(b, bool)
    if known is not None:
        is_known[:] = np.asarray(known, dtype=bool)
    # a writeable C copy: the compiled pass is warmed for that layout only
    warm, u = warm_users(np.array(u, np.float32, order="C"), is_known)

    cv_rows, cv_scores = _covisit_arrays(covisit, b, config.covisit_weight)
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
    known_rows = (trend_rows >= 0) & (trend_rows < items.size) & np.isfinite(trend_scores)
    trend_rows, trend_scores = trend_rows[known_rows], trend_scores[known_rows]
    cands = gather_candidates(
        u,
        warm,
        items,
        index,
        config.candidates,
        trend_rows[: config.trending_pool],
        config.explore_pool,
        rng,
        overfetch=min(excluded.shape[1], config.max_overfetch),
        covisit=cv_rows,
    )
    valid = exclusion_mask(cands.rows, excluded, items.removed, allow, unique=True)
    return CandidateBatch(u, warm, cands, valid, trend_rows, trend_scores, cv_rows, cv_scores)


def _covisit_arrays(
    covisit: tuple[npt.ArrayLike, npt.ArrayLike] | None, b: int, weight: float
) -> tuple[IntArray, FloatArray]:
    """Validated ``(B, K)`` co-visitation rows and scores; empty when off or absent."""
    if covisit is None or weight <= 0:
        return np.full((b, 0), -1, np.int64), np.zeros((b, 0), np.float32)
    rows = np.asarray(covisit[0], dtype=np.int64).reshape(b, -1)
    scores = np.asarray(covisit[1], dtype=np.float32).reshape(b, -1)
    if rows.shape != scores.shape:
        raise ValueError(f"co-visitation rows {rows.shape} and scores {scores.shape} differ")
    ok = (rows >= 0) & np.isfinite(scores) & (scores > 0)
    return np.where(ok, rows, -1), np.where(ok, scores, 0.0).astype(np.float32)
