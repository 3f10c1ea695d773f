"""The exploration draws of ``np.random.default_rng(seed).integers(0, n, size)``, compiled.

The live loop seeds a fresh generator for every call (the same seed and inputs give
the same lists), and building it costs more than the 32 draws: ``SeedSequence``
hashes the seed in Python-level steps, then ``PCG64`` and ``Generator`` objects are
made. This module runs the same three published algorithms in one compiled pass:
``SeedSequence``'s entropy mixing and ``generate_state`` (numpy's
``bit_generator.pyx``), PCG64's seeding and XSL-RR output (``pcg64.h``) and the
bounded Lemire draw on 32-bit outputs (``distributions.c``'s
``buffered_bounded_lemire_uint32``), so the draws are numpy's, bit for bit
(``tests/inference/test_explore_kernel.py`` checks them against numpy).

Only a plain ``int`` seed in ``[0, 2**64)`` and fewer than ``2**32 - 1`` rows take
this path; anything else goes to numpy (``fast_draws_apply``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

IntArray = npt.NDArray[np.int64]

_M32 = 0xFFFFFFFF
# SeedSequence's constants (uint32 arithmetic, kept in int64 and masked)
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_XSHIFT = 16
_POOL = 4
# PCG64's default 128-bit multiplier, high and low words
_MUL_HI = np.uint64(2549297995355413924)
_MUL_LO = np.uint64(4865540595714422341)
_U32 = np.uint64(32)
_U1 = np.uint64(1)
_U58 = np.uint64(58)
_U63 = np.uint64(63)
_UM32 = np.uint64(_M32)


def fast_draws_apply(seed: object, n: int) -> bool:
    """Whether ``draws`` reproduces numpy for this seed and row count."""
    return type(seed) is int and 0 <= seed < 2**64 and 1 <= n < _M32


def draws(seed: int, n: int, count: int) -> IntArray:
    """``np.random.default_rng(seed).integers(0, n, size=count)`` (see the module)."""
    return _draws(np.uint64(seed), n, count)


@njit(cache=True)
def _hashmix(value: np.int64 | int, hash_const: int) -> tuple[np.int64 | int, int]:
    value = (value ^ hash_const) & _M32
    hash_const = (hash_const * _MULT_A) & _M32
    value = (value * hash_const) & _M32
    return value ^ (value >> _XSHIFT), hash_const


@njit(cache=True)
def _mix(x: int, y: np.int64 | int) -> np.int64 | int:
    result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _M32
    return result ^ (result >> _XSHIFT)


@njit(cache=True)
def _seed_words(seed: np.uint64) -> npt.NDArray[np.uint64]:
    """``SeedSequence(seed).generate_state(4, np.uint64)`` for a seed below 2**64."""
    low = np.int64(seed & _UM32)
    high = np.int64(seed >> _U32)
    n_entropy = 2 if high > 0 else 1
    pool = np.zeros(_POOL, np.int64)
    hash_const = _INIT_A
    for i in range(_POOL):
        word = low if i == 0 else (high if i < n_entropy else 0)
        pool[i], hash_const = _hashmix(word, hash_const)
    for i_src in range(_POOL):
        for i_dst in range(_POOL):
            if i_src != i_dst:
                hashed, hash_const = _hashmix(pool[i_src], hash_const)
                pool[i_dst] = _mix(pool[i_dst], hashed)
    out = np.zeros(4, np.uint64)
    hash_const = _INIT_B
    for i_dst in range(8):
        value = (pool[i_dst % _POOL] ^ hash_const) & _M32
        hash_const = (hash_const * _MULT_B) & _M32
        value = (value * hash_const) & _M32
        value ^= value >> _XSHIFT
        if i_dst % 2 == 0:
            out[i_dst // 2] = np.uint64(value)
        else:
            out[i_dst // 2] |= np.uint64(value) << _U32
    return out


@njit(cache=True)
def _mulhi(a: np.uint64, b: np.uint64) -> np.uint64:
    """The high 64 bits of the 128-bit product ``a·b``."""
    a0, a1 = a & _UM32, a >> _U32
    b0, b1 = b & _UM32, b >> _U32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> _U32) + (p01 & _UM32) + (p10 & _UM32)
    return p11 + (p01 >> _U32) + (p10 >> _U32) + (mid >> _U32)


@njit(cache=True)
def _step(
    hi: np.uint64, lo: np.uint64, inc_hi: np.uint64, inc_lo: np.uint64
) -> tuple[np.uint64, np.uint64]:
    """PCG's LCG step ``state·MUL + inc`` modulo 2**128."""
    new_hi = _mulhi(lo, _MUL_LO) + lo * _MUL_HI + hi * _MUL_LO
    new_lo = lo * _MUL_LO
    out_lo = new_lo + inc_lo
    carry = _U1 if out_lo < new_lo else np.uint64(0)
    return new_hi + inc_hi + carry, out_lo


@njit(cache=True)
def _output(hi: np.uint64, lo: np.uint64) -> np.uint64:
    """PCG's XSL-RR output of a 128-bit state."""
    value = hi ^ lo
    rot = hi >> _U58
    return (value >> rot) | (value << ((np.uint64(64) - rot) & _U63))


@njit(cache=True)
def _draws(seed: np.uint64, n: int, count: int) -> IntArray:
    words = _seed_words(seed)
    # pcg64_set_seed: state (words 0, 1), sequence (words 2, 3); srandom: state 0,
    # inc = seq << 1 | 1, step, state += initstate, step
    inc_hi = (words[2] << _U1) | (words[3] >> _U63)
    inc_lo = (words[3] << _U1) | _U1
    hi, lo = _step(np.uint64(0), np.uint64(0), inc_hi, inc_lo)
    lo_sum = lo + words[1]
    hi = hi + words[0] + (_U1 if lo_sum < lo else np.uint64(0))
    hi, lo = _step(hi, lo_sum, inc_hi, inc_lo)
    out = np.zeros(count, np.int64)
    if n == 1:  # numpy draws nothing for a range of one value
        return out
    rng_excl = np.uint64(n)
    threshold = (_UM32 - (rng_excl - _U1)) % rng_excl
    spare, has_spare = np.uint64(0), False
    for i in range(count):
        while True:
            # next_uint32: the low half of a 64-bit output, then its high half
            if has_spare:
                r32, has_spare = spare, False
            else:
                hi, lo = _step(hi, lo, inc_hi, inc_lo)
                r64 = _output(hi, lo)
                r32, spare, has_spare = r64 & _UM32, r64 >> _U32, True
            m = r32 * rng_excl
            leftover = m & _UM32
            if leftover >= rng_excl or leftover >= threshold:
                break
        out[i] = np.int64(m >> _U32)
    return out


def warm_up() -> None:
    """Compile (or load from cache) before timed loops."""
    draws(1, 5, 3)
