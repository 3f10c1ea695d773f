"""``inference.mmr_kernel`` picks what the kernel of 5e66c59 picked, on random inputs.

The kernel now keeps each candidate's quota groups as bits (``_restrict_by_bits``) and
skips the similarity update of candidates that can no longer be picked; the reference
(``mmr_reference``) is the compiled loop as it was.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmr_reference import reference_select_batch

from inference.mmr_kernel import mmr_kernel
from inference.rerank import NO_CAP


def random_case(seed: int, b: int, c: int, n_groups: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    d = 6
    unit = rng.standard_normal((b, c, d)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=2, keepdims=True)
    unit[rng.random((b, c)) < 0.1] = 0.0
    cats = rng.integers(-1, 5, (b, c))
    rel = rng.standard_normal((b, c)).astype(np.float32)
    rel[rng.random((b, c)) < 0.05] = np.nan
    rel[rng.random((b, c)) < 0.1] = 0.25  # exact ties
    valid = rng.random((b, c)) < 0.85
    members = rng.random((n_groups, b, c)) < rng.uniform(0.05, 0.5, (n_groups, 1, 1))
    at_least = rng.integers(0, 6, (n_groups, b))
    at_most = np.where(rng.random((n_groups, b)) < 0.3, rng.integers(0, 5, (n_groups, b)), NO_CAP)
    return rel, unit, cats, valid, members, at_least.astype(np.int64), at_most.astype(np.int64)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    b=st.integers(1, 5),
    c=st.integers(1, 60),
    k=st.integers(1, 25),
    n_groups=st.sampled_from([0, 1, 2, 4, 6]),
    lam=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    category_weight=st.sampled_from([0.0, 0.5]),
    cap=st.none() | st.integers(1, 3),
)
def test_mmr_kernel_picks_as_the_reference(
    seed: int,
    b: int,
    c: int,
    k: int,
    n_groups: int,
    lam: float,
    category_weight: float,
    cap: int | None,
) -> None:
    rel, unit, cats, valid, members, at_least, at_most = random_case(seed, b, c, n_groups)
    new = mmr_kernel(
        rel, unit, cats, valid, k, lam, category_weight, members, at_least, at_most, cap
    )
    old = reference_select_batch(
        rel,
        unit,
        cats,
        valid,
        k,
        lam,
        category_weight,
        members,
        at_least,
        at_most,
        -1 if cap is None else cap,
    )
    np.testing.assert_array_equal(new, old)


def test_more_quota_groups_than_bits_are_refused() -> None:
    rel, unit, cats, valid, members, at_least, at_most = random_case(3, 2, 10, 63)
    with pytest.raises(ValueError, match="63 quota groups"):
        mmr_kernel(rel, unit, cats, valid, 5, 0.6, 0.5, members, at_least, at_most, None)
