"""Greedy MMR with quotas, one user at a time, compiled with numba.

The numpy form of greedy MMR moves the whole batch through each of the ``k`` steps,
about forty array operations a step: a fixed cost of several ms per micro-batch, which
at real-time batch sizes (a dozen users) dwarfs the arithmetic. This kernel does the
same selection with plain loops, compiled once (and cached on disk). The semantics are
``inference.rerank.mmr_select``'s; see its docstring.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from inference.covisit_kernels import warm_up as covisit_warm_up
from inference.explore_kernel import warm_up as explore_warm_up
from inference.list_metrics import popularity_head
from inference.mmr_quotas import MAX_GROUPS, check_groups, group_bits, restrict_by_bits
from inference.rerank_kernels import warm_up as rerank_warm_up
from inference.topk_kernel import warm_up as topk_warm_up

__all__ = ["MAX_GROUPS", "mmr_kernel", "mmr_kernel_at", "select_at", "select_one", "warm_up"]


@njit(cache=True, nogil=True)
def _minmax(rel: np.ndarray, ok: np.ndarray, out: np.ndarray) -> None:
    lo, hi = np.inf, -np.inf
    for j in range(rel.shape[0]):
        if ok[j]:
            v = np.float64(rel[j])
            lo = min(lo, v)
            hi = max(hi, v)
    span = hi - lo
    good = np.isfinite(span) and span > 0
    for j in range(rel.shape[0]):
        out[j] = (np.float64(rel[j]) - lo) / span if (good and ok[j]) else 0.0


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def select_one(
    rel: np.ndarray,
    unit: np.ndarray,
    cats: np.ndarray,
    valid: np.ndarray,
    k: int,
    lam: float,
    category_weight: float,
    members: np.ndarray,
    at_least: np.ndarray,
    at_most: np.ndarray,
    category_cap: int,
    picked: np.ndarray,
) -> None:
    """Greedy MMR for one user into ``picked`` (see ``inference.rerank.mmr_select``)."""
    c, d = unit.shape
    n_groups = members.shape[0]
    ok0 = np.empty(c, np.bool_)
    for j in range(c):
        ok0[j] = valid[j] and np.isfinite(rel[j])
    rel_n = np.zeros(c, np.float64)
    if lam == 1.0:
        for j in range(c):
            rel_n[j] = np.float64(rel[j]) if ok0[j] else 0.0
    else:
        _minmax(rel, ok0, rel_n)
    taken = np.zeros(c, np.bool_)
    max_sim = np.zeros(c, np.float32)
    cat_count = np.zeros(c, np.int64)
    group_count = np.zeros(n_groups, np.int64)
    eligible = np.empty(c, np.bool_)
    bits = group_bits(members)
    for step in range(k):
        capped = np.int64(0)  # groups at their maximum
        for g in range(n_groups):
            if group_count[g] >= at_most[g]:
                capped |= np.int64(1) << g
        avail = np.int64(0)  # groups with an eligible member
        for j in range(c):
            e = ok0[j] and not taken[j]
            if e and category_cap >= 0 and cats[j] >= 0 and cat_count[j] >= category_cap:
                e = False
            if e:
                e = (bits[j] & capped) == 0
                avail |= bits[j] if e else 0
            eligible[j] = e
        if n_groups:
            restrict_by_bits(eligible, bits, avail, at_least, group_count, k - step)
        best = -1
        best_score = -np.inf
        for j in range(c):
            if eligible[j]:
                s = lam * rel_n[j] - (1.0 - lam) * np.float64(max_sim[j])
                if best < 0 or s > best_score:
                    best, best_score = j, s
        if best < 0:
            break
        picked[step] = best
        taken[best] = True
        for g in range(n_groups):
            if members[g, best]:
                group_count[g] += 1
        cb = cats[best]
        for j in range(c):
            if taken[j] or not ok0[j]:
                continue  # never eligible again: its similarity and count are not read
            dot = np.float32(0.0)
            for t in range(d):
                dot += unit[best, t] * unit[j, t]
            same = 1.0 if (cb >= 0 and cats[j] == cb) else 0.0
            sim = np.float32((1.0 - category_weight) * dot + category_weight * same)
            max_sim[j] = sim if step == 0 else max(max_sim[j], sim)
            if cb >= 0 and cats[j] == cb:
                cat_count[j] += 1


@njit(cache=True, nogil=True)
def select_at(
    i: int,
    pos: np.ndarray,
    rel: np.ndarray,
    valid: np.ndarray,
    rows: np.ndarray,
    catalog: tuple[np.ndarray, np.ndarray],
    choice: tuple[int, float, float, int],
    quotas: tuple[np.ndarray, np.ndarray, np.ndarray],
    picked: np.ndarray,
) -> None:
    """``select_one`` for user ``i`` over its ``pos`` (-1: empty) of the candidate axis,
    gathering relevance, eligibility, vectors, categories and groups; ``picked`` (-1
    filled) gets positions into the candidate axis.

    ``catalog`` is ``(unit_table, cat_table)`` by row, ``choice`` ``(k, lam,
    category_weight, category_cap)`` and ``quotas`` ``(members (G, B, C), at_least
    (G, B), at_most (G, B))``: the same for every user of a batch.
    """
    unit_table, cat_table = catalog
    k, lam, category_weight, category_cap = choice
    members, at_least, at_most = quotas
    m = pos.shape[0]
    n_groups = members.shape[0]
    d = unit_table.shape[1]
    r = np.empty(m, np.float32)
    ok = np.empty(m, np.bool_)
    unit = np.empty((m, d), np.float32)
    cats = np.empty(m, np.int64)
    mem = np.empty((n_groups, m), np.bool_)
    for j in range(m):
        p = pos[j]
        present = p >= 0
        at = p if present else 0
        r[j] = rel[i, at]
        ok[j] = present and valid[i, at]
        row = rows[i, at] if present else -1
        for g in range(n_groups):
            mem[g, j] = present and members[g, i, at]
        if row >= 0:
            cats[j] = cat_table[row]
            for t in range(d):
                unit[j, t] = unit_table[row, t]
        else:
            cats[j] = -1
            for t in range(d):
                unit[j, t] = 0.0
    select_one(
        r,
        unit,
        cats,
        ok,
        k,
        lam,
        category_weight,
        mem,
        at_least[:, i],
        at_most[:, i],
        category_cap,
        picked,
    )
    for t in range(k):
        if picked[t] >= 0:
            picked[t] = pos[picked[t]]


@njit(cache=True, nogil=True)
def _select_batch_at(
    rel: np.ndarray,
    valid: np.ndarray,
    pos: np.ndarray,
    rows: np.ndarray,
    catalog: tuple[np.ndarray, np.ndarray],
    choice: tuple[int, float, float, int],
    quotas: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """``select_at`` for every user."""
    picked = np.full((pos.shape[0], choice[0]), -1, np.int64)
    for i in range(pos.shape[0]):
        select_at(i, pos[i], rel, valid, rows, catalog, choice, quotas, picked[i])
    return picked


def mmr_kernel_at(
    rel: npt.NDArray[np.float32],
    valid: npt.NDArray[np.bool_],
    pos: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    unit_table: npt.NDArray[np.float32],
    cat_table: npt.NDArray[np.int64],
    k: int,
    mmr_lambda: float,
    category_weight: float,
    members: npt.NDArray[np.bool_],
    at_least: npt.NDArray[np.int64],
    at_most: npt.NDArray[np.int64],
    category_cap: int | None,
) -> npt.NDArray[np.int64]:
    """``(B, k)`` picked candidate positions, choosing among each user's ``pos`` only.

    ``rel``, ``valid``, ``rows`` and ``members`` (``(G, B, C)``) span the whole
    candidate axis; vectors and categories are read from the catalog by row.
    """
    check_groups(members)
    return _select_batch_at(
        np.ascontiguousarray(rel, np.float32),
        np.ascontiguousarray(valid, np.bool_),
        np.ascontiguousarray(pos, np.int64),
        np.ascontiguousarray(rows, np.int64),
        (np.ascontiguousarray(unit_table, np.float32), np.ascontiguousarray(cat_table, np.int64)),
        (
            int(k),
            float(np.clip(mmr_lambda, 0.0, 1.0)),
            float(category_weight),
            -1 if category_cap is None else int(category_cap),
        ),
        (
            np.ascontiguousarray(members, np.bool_),
            np.ascontiguousarray(at_least, np.int64),
            np.ascontiguousarray(at_most, np.int64),
        ),
    )


def mmr_kernel(
    rel: npt.NDArray[np.float32],
    unit: npt.NDArray[np.float32],
    cats: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
    k: int,
    mmr_lambda: float,
    category_weight: float,
    members: npt.NDArray[np.bool_],
    at_least: npt.NDArray[np.int64],
    at_most: npt.NDArray[np.int64],
    category_cap: int | None,
) -> npt.NDArray[np.int64]:
    """``(B, k)`` picked positions; ``members`` is ``(G, B, C)``, the limits ``(G, B)``.

    ``mmr_kernel_at`` over every position, each user's ``(C, d)`` vectors and categories
    laid out as the rows of one table: the gather copies them and ``select_one`` picks
    as it would from ``unit[i]`` and ``cats[i]`` directly.
    """
    b, c = np.shape(rel)
    unit = np.asarray(unit, np.float32)
    return mmr_kernel_at(
        rel,
        valid,
        np.broadcast_to(np.arange(c, dtype=np.int64), (b, c)),
        np.arange(b * c, dtype=np.int64).reshape(b, c),
        unit.reshape(b * c, unit.shape[-1]),
        np.asarray(cats, np.int64).reshape(b * c),
        k,
        mmr_lambda,
        category_weight,
        members,
        at_least,
        at_most,
        category_cap,
    )


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first real batch needs it.

    The co-visitation table's, the candidates', the exploration draws', the exact
    search's and the popularity head's kernels too: the worker calls this one warm-up for
    the scorer's compiled code.
    """
    from inference.list_kernel import warm_up as list_warm_up  # it imports this module

    covisit_warm_up()
    explore_warm_up()
    rerank_warm_up()
    list_warm_up()
    topk_warm_up()
    popularity_head(np.ones(2, np.float32))
    mmr_kernel_at(
        np.ones((1, 2), np.float32),
        np.ones((1, 2), bool),
        np.array([[1, -1]], np.int64),
        np.array([[0, 1]], np.int64),
        np.ones((2, 2), np.float32),
        np.zeros(2, np.int64),
        1,
        0.5,
        0.5,
        np.ones((1, 1, 2), bool),
        np.ones((1, 1), np.int64),
        np.full((1, 1), 2, np.int64),
        None,
    )
