"""Each candidate's co-visitation score, found through a small hash table per user, is
the scan's (``inference.rerank_kernels.covisit_lookup``) to the bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.blend_kernel import covisit_scores, hash_slots
from inference.rerank_kernels import covisit_lookup


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    c=st.integers(0, 60),
    k=st.integers(0, 70),
    span=st.sampled_from([3, 40, 1_000_000]),
)
def test_hashed_lookup_is_the_scan(seed: int, c: int, k: int, span: int) -> None:
    """Repeated co-visitation rows keep their first score; -1 pads, empty and invalid
    candidates read 0; a narrow span of rows fills the table past a probe or two."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(-1, span, size=(1, c)).astype(np.int64)
    valid = rng.random((1, c)) < 0.8
    cv_rows = rng.integers(-1, span, size=(1, k)).astype(np.int64)
    some = min(k // 3, c)
    cv_rows[0, :some] = rows[0, :some]  # some candidates are co-visitation rows
    cv_scores = rng.random((1, k)).astype(np.float32)
    cv_scores[0, rng.random(k) < 0.2] = 0.0  # zero scores count as found but not positive
    want = covisit_lookup(rows, valid, cv_rows, cv_scores)[0]
    keys = np.empty(hash_slots(k), np.int64)
    first = np.empty(keys.shape[0], np.int64)
    out = np.full(c, np.float32(np.nan), np.float32)  # every entry is written
    found = covisit_scores(rows[0], valid[0], cv_rows[0], cv_scores[0], keys, first, out)
    assert out.tobytes() == want.tobytes()
    assert found == bool((want > 0).any())


def test_hash_slots_hold_twice_the_rows() -> None:
    assert [hash_slots(k) for k in (0, 1, 8, 9, 50, 64, 65)] == [16, 16, 16, 32, 128, 128, 256]
