"""The re-rank steps after candidate gathering, for a whole batch, in two compiled passes.

``inference.recommend`` used to run cold-start relevance, the co-visitation blend, the
slot quotas, the MMR shortlist, MMR and the reasons as some hundred numpy calls per
micro-batch: at one user a call that fixed cost was most of the list's price. Here
each is a loop over the users inside numba:

- ``prepare_lists``: cold users' trending relevance, the blend
  (``inference.blend.blend_scores``'s arithmetic, in the same precision and order),
  the quota groups of ``inference.slot_quotas`` and the negated scores the shortlist
  partitions (each user's relevance steps are ``inference.blend_kernel``'s);
- the shortlist's top-``m`` selections stay ``np.argpartition`` calls in
  ``inference.recommend`` (their order breaks MMR's ties, so the same selection keeps
  the same lists);
- ``finish_lists``: the shortlist's clean-up, greedy MMR
  (``inference.mmr_kernel``'s ``select_at``) and the reasons of
  ``inference.reasons.assign_reasons``.

The tests compare ``recommend`` with the numpy composition of those functions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inference.blend_kernel import blend_row, covisit_scores, hash_slots, trend_score
from inference.mmr_kernel import select_at

__all__ = [
    "N_GROUPS",
    "finish_lists",
    "negated_scores",
    "prepare_lists",
    "warm_up",
    "warm_users",
]

FROM_ANN, FROM_TRENDING, FROM_EXPLORATION = 1, 2, 4
N_GROUPS = 4  # long tail, trending, exploration, new items
NO_CAP = np.iinfo(np.int64).max
# Reason codes: indices into schemas.recommendation.REASONS.
PERSONALISED, TRENDING, EXPLORATION, SIMILAR, NEW_ITEM = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def warm_users(user_vecs: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(warm (B,), vectors with cold rows zeroed)``: warm is known, finite and not zero."""
    b, d = user_vecs.shape
    warm = np.zeros(b, np.bool_)
    out = np.zeros((b, d), np.float32)
    for i in range(b):
        finite, nonzero = True, False
        for t in range(d):
            x = user_vecs[i, t]
            if not np.isfinite(x):
                finite = False
                break
            nonzero = nonzero or x != 0
        warm[i] = finite and nonzero and known[i]
        if warm[i]:
            out[i] = user_vecs[i]
    return warm, out


@njit(cache=True, nogil=True)
def _fresh_bar(rel: np.ndarray, flags: np.ndarray, q: float) -> float:
    """``slot_quotas.row_quantile`` of the ANN candidates' relevance (NaN sorts last)."""
    n = 0
    for j in range(rel.shape[0]):
        if flags[j] & FROM_ANN:
            n += 1
    if n == 0:
        return np.inf
    vals = np.empty(n, np.float32)
    n = 0
    for j in range(rel.shape[0]):
        if flags[j] & FROM_ANN:
            vals[n] = rel[j]
            n += 1
    vals = np.sort(vals)
    return np.float64(vals[int(np.floor(q * max(n - 1, 0)))])


@njit(cache=True, nogil=True)
def prepare_lists(
    rows: np.ndarray,
    flags: np.ndarray,
    valid: np.ndarray,
    rel: np.ndarray,
    warm: np.ndarray,
    trend_rows: np.ndarray,
    trend_scores: np.ndarray,
    cv_rows: np.ndarray,
    cv_scores: np.ndarray,
    log_pop: np.ndarray,
    weights: np.ndarray,
    head: np.ndarray,
    age: np.ndarray,
    new_age: float,
    minimums: np.ndarray,
    new_quantile: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Final relevance, quota groups and the shortlist's negated scores, per user.

    Args:
        rows, flags, valid: ``(B, C)`` candidates, their sources and eligibility.
        rel: ``(B, C)`` warm users' relevance (inner product or ranker, debiased);
            overwritten in place with the final relevance.
        warm: ``(B,)`` users with a vector.
        trend_rows, trend_scores: Trending rows, best first, and their scores.
        cv_rows, cv_scores: ``(B, K)`` co-visitation candidates, -1 padded.
        log_pop: ``(B, C)`` ``log1p`` popularity (read only when its weight > 0).
        weights: Model, co-visitation and popularity weights (float32).
        head, age: Catalog popularity head and item ages by row.
        new_age: Age below which an item is new (already in the comparison's dtype).
        minimums: Slots: list size, long tail, personal trending, exploration, new.
        new_quantile: Relevance quantile of the ANN candidates a new item must reach.

    Returns:
        ``(rel, led (B,), members (G, B, C), at_least (G, B), at_most (G, B))``.
    """
    b, c = rows.shape
    k, tail_min, trend_slots, n_explore, n_new = minimums
    w_model, w_covisit, w_pop = weights[0], weights[1], weights[2]
    pop_on = w_pop != 0  # the term is in every blend; it widens the blend when > 0
    led = np.zeros(b, np.bool_)
    members = np.zeros((N_GROUPS, b, c), np.bool_)
    at_least = np.zeros((N_GROUPS, b), np.int64)
    at_most = np.full((N_GROUPS, b), NO_CAP, np.int64)
    cv = np.zeros(c, np.float32)
    keys = np.empty(hash_slots(cv_rows.shape[1]), np.int64)
    first = np.empty(keys.shape[0], np.int64)
    for i in range(b):
        r, f = rows[i], flags[i]
        if not warm[i]:  # cold: the trending score for trending items, 0 for the rest
            for j in range(c):
                rel[i, j] = (
                    trend_score(max(r[j], 0), trend_rows, trend_scores)
                    if f[j] & FROM_TRENDING
                    else np.float32(0.0)
                )
        any_cv = covisit_scores(r, valid[i], cv_rows[i], cv_scores[i], keys, first, cv)
        led[i] = any_cv
        if any_cv or (warm[i] and w_pop > 0):
            blend_row(rel[i], valid[i], cv, log_pop[i], w_model, w_covisit, w_pop, pop_on)
        personal = warm[i] or any_cv
        at_least[0, i] = tail_min
        at_least[1, i] = min(trend_slots, k) if personal else k - n_explore
        at_least[2, i] = n_explore
        at_most[2, i] = n_explore if personal else k
        at_least[3, i] = n_new
        any_fresh = False
        for j in range(c):
            present = r[j] >= 0
            at = max(r[j], 0)
            members[0, i, j] = present and not head[at]
            members[1, i, j] = (f[j] & FROM_TRENDING) > 0
            members[2, i, j] = (f[j] & FROM_EXPLORATION) > 0 and (f[j] & FROM_ANN) == 0
            fresh = bool(warm[i] and present and (f[j] & FROM_ANN) > 0 and age[at] < new_age)
            members[3, i, j] = fresh
            any_fresh |= fresh
        if any_fresh:  # only then is the bar needed
            bar = _fresh_bar(rel[i], f, new_quantile)
            for j in range(c):
                members[3, i, j] = members[3, i, j] and np.float64(rel[i, j]) >= bar
    return rel, led, members, at_least, at_most


@njit(cache=True, nogil=True)
def negated_scores(
    rel: np.ndarray, valid: np.ndarray, members: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """``(1 + len(groups), B, C)``: minus each eligible score, then minus those of each
    listed group's members (+inf elsewhere), as the shortlist's partitions take them."""
    b, c = rel.shape
    out = np.full((1 + groups.shape[0], b, c), np.inf, np.float32)
    for i in range(b):
        for j in range(c):
            if valid[i, j] and np.isfinite(rel[i, j]):
                out[0, i, j] = -rel[i, j]
                for t in range(groups.shape[0]):
                    if members[groups[t], i, j]:
                        out[1 + t, i, j] = -rel[i, j]
    return out


@njit(cache=True, nogil=True)
def _gather_history(
    hist: np.ndarray, unit_table: np.ndarray, out: np.ndarray, ok: np.ndarray
) -> None:
    """``out[:, s]``: history entry ``s``'s unit vector (``ok[s]``: a catalog row)."""
    n_items, d = unit_table.shape
    for s in range(hist.shape[0]):
        hr = hist[s]
        ok[s] = 0 <= hr < n_items
        for e in range(d):
            out[e, s] = 0.0
            if ok[s]:
                out[e, s] = unit_table[hr, e]


@njit(cache=True, nogil=True)
def _cosines(unit_table: np.ndarray, row: int, hist_unit: np.ndarray, out: np.ndarray) -> None:
    """``out[s]``: the float32 sum over ``e`` in order of ``unit[row, e] · hist_unit[e, s]``.

    Each entry sums in the order of a plain loop over ``e`` (the reasons' cosine as it
    always was, to the bit); the entries are independent, so the loop over ``s`` runs
    in vector lanes instead of one dependent chain per history item. A negative ``row``
    gives zeros.
    """
    out[:] = 0.0
    if row < 0:
        return
    for e in range(hist_unit.shape[0]):
        x = unit_table[row, e]
        for s in range(out.shape[0]):
            out[s] += x * hist_unit[e, s]


@njit(cache=True, nogil=True)
def finish_lists(
    rows: np.ndarray,
    flags: np.ndarray,
    rel: np.ndarray,
    valid: np.ndarray,
    pos: np.ndarray,
    clean: bool,
    unit_table: np.ndarray,
    cat_table: np.ndarray,
    age: np.ndarray,
    new_age: float,
    members: np.ndarray,
    at_least: np.ndarray,
    at_most: np.ndarray,
    k: int,
    lam: float,
    category_weight: float,
    category_cap: int,
    hist: np.ndarray,
    similar: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MMR over each user's ``pos`` of the candidate axis, then the picks' reasons.

    ``clean``: ``pos`` is a raw shortlist (drop ineligible and repeated positions
    first, as ``inference.rerank.shortlist`` does). ``similar`` is the cosine needed
    for ``similar_to_item``, already in float32's value.

    Returns:
        ``(rows (B, k) -1 padded, scores (B, k), reason codes (B, k), reason rows
        (B, k) -1 where none)``; picks are packed at the front.
    """
    b, m = pos.shape
    c = rows.shape[1]
    d = unit_table.shape[1]
    h = hist.shape[1]
    out_rows = np.full((b, k), -1, np.int64)
    out_scores = np.zeros((b, k), np.float32)
    codes = np.zeros((b, k), np.int8)
    reason_rows = np.full((b, k), -1, np.int64)
    p = np.empty(m, np.int64)
    seen = np.zeros(c, np.bool_)
    picked = np.empty(k, np.int64)
    catalog = (unit_table, cat_table)
    choice = (k, lam, category_weight, category_cap)
    quotas = (members, at_least, at_most)
    hist_unit = np.empty((d, h), np.float32)
    hist_ok = np.empty(h, np.bool_)
    cos = np.empty(h, np.float32)
    for i in range(b):
        # the positions MMR may pick, in order: an empty, ineligible or repeated one
        # could never be picked, so it is left out rather than passed over at each step
        mm = 0
        for j in range(m):
            at = pos[i, j]
            if clean and at >= 0:
                if not (valid[i, at] and np.isfinite(rel[i, at])) or seen[at]:
                    at = -1
                else:
                    seen[at] = True
            if at >= 0:
                p[mm] = at
                mm += 1
        if clean:
            for j in range(mm):
                seen[p[j]] = False
        picked[:] = -1
        select_at(i, p[:mm], rel, valid, rows, catalog, choice, quotas, picked)
        gathered = False
        for t in range(k):
            if picked[t] < 0:
                break
            at = picked[t]
            row = rows[i, at]
            fl = flags[i, at]
            out_rows[i, t] = row
            out_scores[i, t] = rel[i, at]
            # Precedence: exploration > trending > new > similar to history > personalised.
            if (fl & FROM_EXPLORATION) and not (fl & FROM_ANN):
                codes[i, t] = EXPLORATION
            elif fl & FROM_TRENDING:
                codes[i, t] = TRENDING
            elif np.float64(age[max(row, 0)]) < new_age:
                codes[i, t] = NEW_ITEM
            else:
                if not gathered:  # the user's history vectors, once, laid out by dimension
                    _gather_history(hist[i], unit_table, hist_unit, hist_ok)
                    gathered = True
                _cosines(unit_table, row, hist_unit, cos)
                best, best_cos = -1, np.float32(-np.inf)
                for s in range(h):
                    if hist_ok[s] and (best < 0 or cos[s] > best_cos):
                        best, best_cos = s, cos[s]
                if best >= 0 and np.float64(best_cos) >= similar:
                    codes[i, t] = SIMILAR
                    reason_rows[i, t] = hist[i, best]
                else:
                    codes[i, t] = PERSONALISED
    return out_rows, out_scores, codes, reason_rows


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first real batch needs it."""
    rows = np.array([[0, 1, -1]], np.int64)
    flags = np.array([[1, 2, 0]], np.uint8)
    valid = np.array([[True, True, False]])
    rel = np.ones((1, 3), np.float32)
    warm_users(np.ones((1, 2), np.float32), np.ones(1, np.bool_))
    head = np.array([True, False])
    age = np.zeros(2, np.float32)
    rel, _, members, at_least, at_most = prepare_lists(
        rows,
        flags,
        valid,
        rel,
        np.array([True]),
        np.array([1], np.int64),
        np.ones(1, np.float32),
        rows,
        np.ones((1, 3), np.float32),
        np.zeros((1, 3), np.float32),
        np.ones(3, np.float32),
        head,
        age,
        1.0,
        np.array([2, 1, 1, 1, 1], np.int64),
        0.5,
    )
    negated_scores(rel, valid, members, np.array([0], np.int64))
    finish_lists(
        rows,
        flags,
        rel,
        valid,
        np.array([[0, 1, 0]], np.int64),
        True,
        np.ones((2, 2), np.float32),
        np.zeros(2, np.int64),
        age,
        1.0,
        members,
        at_least,
        at_most,
        2,
        0.5,
        0.5,
        -1,
        rows,
        0.8,
    )
