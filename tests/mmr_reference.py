"""Greedy MMR as compiled at 5e66c59 (mask per quota group, similarity of every
candidate updated each step): the tests' reference for ``inference.mmr_kernel``."""

from __future__ import annotations

import numpy as np
from numba import njit

from inference.mmr_kernel import _minmax


@njit(nogil=True)
def _enforce_minimums(
    eligible: np.ndarray,
    members: np.ndarray,
    at_least: np.ndarray,
    group_count: np.ndarray,
    remaining: int,
    out: np.ndarray,
    must: np.ndarray,
    short: np.ndarray,
) -> None:
    """Restrict a step to quota groups that would otherwise miss their minimum.

    A group whose outstanding minimum equals the remaining slots must be picked from
    (members of several such groups: their intersection). Otherwise, once all
    outstanding minimums together fill the remaining slots, the pick must come from
    some group still short. ``must`` and ``short`` are scratch arrays; ``out`` gets the
    restricted eligibility.
    """
    n_groups, c = members.shape
    must[:] = eligible
    short[:] = False
    need_total = 0
    for g in range(n_groups):
        avail = False
        for j in range(c):
            if eligible[j] and members[g, j]:
                avail = True
                break
        need = max(at_least[g] - group_count[g], 0) if avail else 0
        need_total += need
        tight = need >= remaining
        any_narrowed = False
        for j in range(c):
            if need > 0 and members[g, j]:
                short[j] = True
            if must[j] and (members[g, j] or not tight):
                any_narrowed = True
        if any_narrowed and tight:
            for j in range(c):
                must[j] = must[j] and members[g, j]
    forced = False
    if need_total >= remaining:
        for j in range(c):
            if eligible[j] and short[j]:
                forced = True
                break
    tight_any = False
    for j in range(c):
        if must[j] != eligible[j]:
            tight_any = True
            break
    for j in range(c):
        if tight_any:
            out[j] = must[j]
        elif forced:
            out[j] = eligible[j] and short[j]
        else:
            out[j] = eligible[j]


@njit(nogil=True, fastmath={"reassoc", "contract"})
def _select_one(
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
    narrowed = np.empty(c, np.bool_)
    must = np.empty(c, np.bool_)
    short = np.empty(c, np.bool_)
    for step in range(k):
        for j in range(c):
            e = ok0[j] and not taken[j]
            if e and category_cap >= 0 and cats[j] >= 0 and cat_count[j] >= category_cap:
                e = False
            if e:
                for g in range(n_groups):
                    if members[g, j] and group_count[g] >= at_most[g]:
                        e = False
                        break
            eligible[j] = e
        if n_groups:
            _enforce_minimums(
                eligible, members, at_least, group_count, k - step, narrowed, must, short
            )
            eligible[:] = narrowed
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
            dot = np.float32(0.0)
            for t in range(d):
                dot += unit[best, t] * unit[j, t]
            same = 1.0 if (cb >= 0 and cats[j] == cb) else 0.0
            sim = np.float32((1.0 - category_weight) * dot + category_weight * same)
            max_sim[j] = sim if step == 0 else max(max_sim[j], sim)
            if cb >= 0 and cats[j] == cb:
                cat_count[j] += 1


@njit(nogil=True)
def reference_select_batch(
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
) -> np.ndarray:
    b = rel.shape[0]
    picked = np.full((b, k), -1, np.int64)
    for i in range(b):
        _select_one(
            rel[i],
            unit[i],
            cats[i],
            valid[i],
            k,
            lam,
            category_weight,
            members[:, i, :],
            at_least[:, i],
            at_most[:, i],
            category_cap,
            picked[i],
        )
    return picked
