"""The compiled exploration draws are numpy's ``default_rng(seed).integers`` to the bit.

``inference.explore_kernel`` re-implements ``SeedSequence``, PCG64 and the bounded Lemire
draw; any slip in a constant, a carry or the order of the 32-bit halves changes the
numbers, so every case compares against numpy itself.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.candidates import explore_draws
from inference.explore_kernel import draws, fast_draws_apply

SEEDS = st.one_of(
    st.integers(0, 2**32 - 1),
    st.integers(2**32, 2**64 - 1),
    st.sampled_from([0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1]),
)


@settings(max_examples=300, deadline=None)
@given(seed=SEEDS, n=st.integers(1, 50_000), count=st.integers(0, 80))
def test_draws_are_numpys(seed: int, n: int, count: int) -> None:
    expected = np.random.default_rng(seed).integers(0, n, size=count)
    got = draws(seed, n, count)
    assert got.dtype == expected.dtype
    assert got.tolist() == expected.tolist()


@settings(max_examples=100, deadline=None)
@given(seed=SEEDS, n=st.integers(2**31, 2**32 - 2))
def test_draws_with_rejections_are_numpys(seed: int, n: int) -> None:
    # ranges near 2**32 reject about half the 32-bit outputs: the redraws must match
    expected = np.random.default_rng(seed).integers(0, n, size=64)
    assert draws(seed, n, 64).tolist() == expected.tolist()


def test_live_loop_seeds() -> None:
    # live_scorer's seeds: seed * 2**40 + calls * 1_000_003 + first user
    for base in (0, 7):
        for calls in range(0, 5000, 97):
            seed = base * 2**40 + calls * 1_000_003 + 3
            expected = np.random.default_rng(seed).integers(0, 3000, size=(1, 32))
            assert draws(seed, 3000, 32).reshape(1, 32).tolist() == expected.tolist()


def test_which_seeds_take_the_compiled_path() -> None:
    assert fast_draws_apply(0, 1) and fast_draws_apply(2**64 - 1, 2**32 - 2)
    assert not fast_draws_apply(-1, 10)  # numpy raises for it
    assert not fast_draws_apply(2**64, 10)  # three words of entropy
    assert not fast_draws_apply(np.int64(3), 10)
    assert not fast_draws_apply(True, 10)
    assert not fast_draws_apply(3, 0) and not fast_draws_apply(3, 2**32 - 1)


@pytest.mark.parametrize("seed", [0, 12345, 2**64 - 1, 2**64 + 5, np.int64(9)])
@pytest.mark.parametrize(("tail", "pool", "b"), [(500, 32, 1), (500, 8, 3), (1, 4, 2), (0, 4, 1)])
def test_explore_draws_equal_the_generators(seed: int, tail: int, pool: int, b: int) -> None:
    items = SimpleNamespace(tail_rows=np.arange(10, 10 + tail, dtype=np.int64) * 3)
    got = explore_draws(items, seed, b, pool)  # type: ignore[arg-type]
    if tail:
        rows = np.random.default_rng(seed).integers(0, tail, size=(b, pool))
        expected = items.tail_rows[rows]
    else:
        expected = np.full((b, 0), -1, np.int64)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tolist() == expected.tolist()
    # a generator given instead of a seed is drawn from as before
    again = explore_draws(items, np.random.default_rng(seed), b, pool)  # type: ignore[arg-type]
    assert again.tolist() == expected.tolist()


def test_a_negative_seed_still_raises() -> None:
    items = SimpleNamespace(tail_rows=np.arange(5, dtype=np.int64))
    with pytest.raises(ValueError):
        explore_draws(items, -1, 1, 4)  # type: ignore[arg-type]
