"""Model-free fold-in: order independence, pull toward items, decay, finiteness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference.fold_in import cold_user_vector, event_weights, fold_in, fold_in_events

HOUR_MS = 3_600_000
vec = st.floats(-5, 5, width=32)


@st.composite
def event_logs(draw: st.DrawFn) -> dict[str, np.ndarray]:
    b, e, d = draw(st.integers(1, 3)), draw(st.integers(1, 12)), 3
    return {
        "prev": draw(arrays(np.float32, (b, d), elements=vec)),
        "prev_ts": draw(arrays(np.float64, (b,), elements=st.integers(0, 50).map(float))) * HOUR_MS,
        "user": draw(arrays(np.int64, (e,), elements=st.integers(0, b - 1))),
        "items": draw(arrays(np.float32, (e, d), elements=vec)),
        "w": draw(arrays(np.float32, (e,), elements=st.floats(-4, 4, width=32))),
        "ts": draw(arrays(np.float64, (e,), elements=st.integers(0, 50).map(float))) * HOUR_MS,
    }


@settings(max_examples=100, deadline=None)
@given(log=event_logs(), seed=st.integers(0, 1000))
def test_arrival_order_does_not_matter(log: dict[str, np.ndarray], seed: int) -> None:
    batch, batch_ts = fold_in_events(
        log["prev"], log["prev_ts"], log["user"], log["items"], log["w"], log["ts"], 3600.0
    )
    vecs, ts = log["prev"].copy(), log["prev_ts"].copy()
    for e in np.random.default_rng(seed).permutation(log["user"].size):
        u = log["user"][e : e + 1]
        new, new_ts = fold_in(
            vecs[u],
            ts[u],
            log["items"][e : e + 1],
            log["w"][e : e + 1],
            log["ts"][e : e + 1],
            3600.0,
        )
        vecs[u], ts[u] = new, new_ts
    np.testing.assert_allclose(vecs, batch, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(ts, batch_ts)
    assert np.isfinite(batch).all()


@settings(max_examples=100, deadline=None)
@given(
    prev=arrays(np.float32, (4,), elements=vec),
    item=arrays(np.float32, (4,), elements=vec),
    w=st.floats(0.01, 10),
    dt_h=st.integers(-10, 10),
)
def test_positive_event_pulls_toward_the_item(
    prev: np.ndarray, item: np.ndarray, w: float, dt_h: int
) -> None:
    if np.linalg.norm(item) < 1e-3 or np.linalg.norm(prev) < 1e-3:
        return

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    new, _ = fold_in(prev[None], [10 * HOUR_MS], item[None], [w], [(10 + dt_h) * HOUR_MS], 3600.0)
    assert cos(new[0].astype(np.float64), item) >= cos(prev.astype(np.float64), item) - 1e-5


def test_half_life_known_answer() -> None:
    e = np.eye(2, dtype=np.float32)
    # State at t=0 is e0; an event on e1 one half-life later halves e0's weight.
    out, ts = fold_in(e[:1], [0.0], e[1:], [1.0], [2 * HOUR_MS], half_life_s=7200.0)
    np.testing.assert_allclose(out[0], [0.5, 1.0])
    assert ts[0] == 2 * HOUR_MS
    # The same event arriving late is decayed instead of the state.
    out, ts = fold_in(e[:1], [2 * HOUR_MS], e[1:], [1.0], [0.0], half_life_s=7200.0)
    np.testing.assert_allclose(out[0], [1.0, 0.5])
    assert ts[0] == 2 * HOUR_MS


def test_new_user_state_is_the_first_item() -> None:
    out, ts = fold_in(np.zeros((1, 3)), [-np.inf], [[1.0, 2.0, 3.0]], [2.0], [5.0], 60.0)
    np.testing.assert_allclose(out[0], [2.0, 4.0, 6.0])
    assert ts[0] == 5.0


def test_result_stays_finite_on_extreme_input() -> None:
    out, _ = fold_in(np.full((1, 2), 3e38), [0.0], np.full((1, 2), 3e38), [1e30], [0.0], 60.0)
    assert np.isfinite(out).all()


def test_event_weights() -> None:
    w = event_weights(
        ["view", "purchase", "rating", "rating", "rating", "bogus"],
        [np.nan, 20.0, 5.0, 1.0, np.nan, np.nan],
    )
    np.testing.assert_allclose(w, [0.25, 4.0, 1.0, -1.0, 1.0, 0.0])


def test_cold_user_vector() -> None:
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(cold_user_vector(v, [3.0, 1.0]), [0.75, 0.25])
    np.testing.assert_allclose(cold_user_vector(v), [0.5, 0.5])
    assert not cold_user_vector(np.zeros((0, 2))).any()
    assert not cold_user_vector(v, [0.0, -1.0]).any()
    with pytest.raises(ValueError):
        cold_user_vector(np.zeros(3))


def reference_fold_in_events(
    prev: np.ndarray,
    prev_ts: np.ndarray,
    user: np.ndarray,
    vecs: np.ndarray,
    weights: np.ndarray,
    ts: np.ndarray,
    half_life_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``fold_in_events`` in numpy (np.add.at, nan_to_num, clip), as it was."""

    def decay_to(to: np.ndarray, frm: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            dt = to - frm
        dt = np.clip(np.nan_to_num(np.where(np.isnan(dt), 0.0, dt), nan=0.0), 0.0, None)
        factor = np.exp2(-dt / (1000.0 * half_life_s))
        return np.where(np.isneginf(frm) & np.isfinite(to), 0.0, factor)

    p, pt = np.asarray(prev, np.float64), np.asarray(prev_ts, np.float64).copy()
    t = np.asarray(ts, np.float64)
    new_ts = pt.copy()
    np.fmax.at(new_ts, user, t)
    out = p * decay_to(new_ts, pt)[:, None]
    w = np.asarray(weights, np.float64) * decay_to(new_ts[user], t)
    np.add.at(out, user, w[:, None] * np.asarray(vecs, np.float64))
    info = np.finfo(np.float32)
    return np.nan_to_num(np.clip(out, info.min, info.max), nan=0.0).astype(np.float32), new_ts


@settings(max_examples=200, deadline=None)
@given(
    users=st.integers(1, 4),
    events=st.integers(0, 30),
    seed=st.integers(0, 2**31),
    half_life=st.sampled_from([1e-3, 1.0, 3600.0, 86400.0 * 30]),
)
def test_fold_in_events_is_the_array_form_bit_for_bit(
    users: int, events: int, seed: int, half_life: float
) -> None:
    """Same float32 vectors and state times as the numpy form: new users (-inf), old
    states, late events, huge vectors (clipped), repeated users, no events."""
    rng = np.random.default_rng(seed)
    d = 5
    prev = rng.standard_normal((users, d)).astype(np.float32)
    prev_ts = rng.choice([-np.inf, 1e12, 1.0000005e12], size=users)
    prev[np.isneginf(prev_ts)] = 0.0
    user = rng.integers(0, users, events)  # in any order: np.add.at sums in event order
    vecs = (rng.standard_normal((events, d)) * rng.choice([1.0, 1e36], (events, 1))).astype(
        np.float32
    )
    weights = rng.choice([-1.0, 0.25, 1.0, 3.0], events).astype(np.float32)
    ts = rng.integers(int(1e12) - 10**7, int(1e12) + 10**7, events)
    got = fold_in_events(prev, prev_ts, user, vecs, weights, ts, half_life)
    want = reference_fold_in_events(prev, prev_ts, user, vecs, weights, ts, half_life)
    assert got[0].tobytes() == want[0].tobytes()
    assert got[1].tobytes() == want[1].tobytes()
