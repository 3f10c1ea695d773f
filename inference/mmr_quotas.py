"""Slot quotas inside the compiled greedy MMR: each candidate's groups as bits of an int64.

``inference.mmr_kernel`` asks, at every step, which candidates a quota still allows;
the rule is ``inference.rerank.mmr_select``'s (see its docstring). Holding a
candidate's groups as one int64 turns "in all of these groups" into a mask test.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["MAX_GROUPS", "check_groups", "group_bits", "restrict_by_bits"]

MAX_GROUPS = 62  # quota groups are held as bits of an int64


def check_groups(members: npt.NDArray[np.bool_]) -> None:
    """Refuse more quota groups (``members``' first axis) than the bits hold."""
    if members.shape[0] > MAX_GROUPS:
        raise ValueError(f"{members.shape[0]} quota groups; at most {MAX_GROUPS}")


@njit(cache=True, nogil=True)
def group_bits(members: np.ndarray) -> np.ndarray:
    """``(C,)`` each candidate's groups of ``members`` (``(G, C)``) as a bit set."""
    n_groups, c = members.shape
    bits = np.zeros(c, np.int64)
    for j in range(c):
        for g in range(n_groups):
            if members[g, j]:
                bits[j] |= np.int64(1) << g
    return bits


@njit(cache=True, nogil=True)
def restrict_by_bits(
    eligible: np.ndarray,
    bits: np.ndarray,
    avail: np.int64,
    at_least: np.ndarray,
    group_count: np.ndarray,
    remaining: int,
) -> None:
    """Restrict a step, in place, to quota groups that would otherwise miss their minimum.

    A group whose outstanding minimum fills the remaining slots must be picked from
    (members of several such groups: their intersection, as long as one is eligible).
    Otherwise, once all outstanding minimums together fill the remaining slots, the
    pick must come from some group still short. ``required`` collects the tight groups
    in group order, each only if some eligible candidate is in all of them so far;
    ``short`` the groups with an outstanding minimum.
    """
    need_total = 0
    short = np.int64(0)
    required = np.int64(0)
    for g in range(at_least.shape[0]):
        bit = np.int64(1) << g
        need = max(at_least[g] - group_count[g], 0) if avail & bit else 0
        need_total += need
        if need > 0:
            short |= bit
        if need >= remaining and need > 0:
            want = required | bit
            for j in range(eligible.shape[0]):
                if eligible[j] and (bits[j] & want) == want:
                    required = want
                    break
    narrowing = False
    if required:
        for j in range(eligible.shape[0]):
            if eligible[j] and (bits[j] & required) != required:
                narrowing = True
                break
    if narrowing:
        for j in range(eligible.shape[0]):
            eligible[j] = eligible[j] and (bits[j] & required) == required
        return
    if need_total < remaining:
        return
    forced = False
    for j in range(eligible.shape[0]):
        if eligible[j] and bits[j] & short:
            forced = True
            break
    if forced:
        for j in range(eligible.shape[0]):
            eligible[j] = eligible[j] and (bits[j] & short) != 0
