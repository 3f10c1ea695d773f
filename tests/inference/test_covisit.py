"""The streaming co-visitation table: worked examples, planted habits, invariants."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.covisit import CovisitTable, follow_pairs, recent_rows

SEQUENTIAL = {"backward": 0.0, "flatness": 0.0}  # follower pairs only, weight 1 / distance


def test_reverse_pairs_and_flat_distance_weights_known_answer() -> None:
    """Plain co-occurrence within the window: both directions, weight ``d ** (f - 1)``."""
    got = pairs(*follow_pairs([[1, 2, 3]], [3], window=2, backward=0.5, flatness=1.0))
    assert got == Counter(
        {
            (1, 2, 1.0): 1,
            (2, 3, 1.0): 1,
            (1, 3, 1.0): 1,
            (2, 1, 0.5): 1,
            (3, 2, 0.5): 1,
            (3, 1, 0.5): 1,
        }
    )
    half = pairs(*follow_pairs([[1, 2, 3]], [1], window=2, backward=0.0, flatness=0.5))
    assert half == Counter({(2, 3, 1.0): 1, (1, 3, float(np.float32(2**-0.5))): 1})


def test_damping_lets_a_popular_follower_through() -> None:
    """Item 0 is followed by 1 (3 times, but 1 is everywhere) and by 2 (twice, rare)."""
    table = CovisitTable(width=4, damping=0.5)
    table.add([0, 0, 0, 0, 0, 3, 4, 5, 6], [1, 1, 1, 2, 2, 1, 1, 1, 1], np.ones(9))
    cosine, _ = table.score([[0]], [[1.0]], k=2)
    assert cosine[0].tolist() == [2, 1]  # cosine: the rare follower first
    table.damping = 0.0
    raw, _ = table.score([[0]], [[1.0]], k=2)
    assert raw[0].tolist() == [1, 2]  # raw weight: the frequent one


def pairs(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> Counter[tuple[int, int, float]]:
    return Counter(zip(src.tolist(), dst.tolist(), w.tolist(), strict=True))


def test_funnel_repeats_are_one_visit_and_pairs_weigh_by_distance() -> None:
    # view, click of 1; 2; view, cart of 3; 4 -> visits 1, 2, 3, 4
    got = pairs(*follow_pairs([[1, 1, 2, 3, 3, 4]], [6], window=2, **SEQUENTIAL))
    assert got == Counter(
        {(1, 2, 1.0): 1, (2, 3, 1.0): 1, (1, 3, 0.5): 1, (3, 4, 1.0): 1, (2, 4, 0.5): 1}
    )
    # Only the pairs that end in new visits: the cart on 3 continues a counted visit.
    assert pairs(*follow_pairs([[1, 1, 2, 3, 3, 4]], [2], window=2, **SEQUENTIAL)) == Counter(
        {(3, 4, 1.0): 1, (2, 4, 0.5): 1}
    )
    # Unknown items (-1) and self-pairs never pair.
    assert follow_pairs([[5, -1, 5]], [3], window=3)[0].size == 0


@settings(max_examples=60, deadline=None)
@given(
    seq=st.lists(st.integers(-1, 6), max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    window=st.integers(1, 4),
)
def test_learning_in_pieces_pairs_the_same_as_all_at_once(
    seq: list[int], cuts: list[int], window: int
) -> None:
    """Feeding a history as it grows (the worker, batch by batch) counts each pair once."""
    whole = pairs(*follow_pairs([seq], [len(seq)], window))
    seen = 0
    pieces: Counter[tuple[int, int, float]] = Counter()
    for end in [*sorted(min(c, len(seq)) for c in cuts), len(seq)]:
        pieces += pairs(*follow_pairs([seq[:end]], [end - seen], window))
        seen = end
    assert pieces == whole


def test_space_saving_keeps_the_heaviest_and_bounds_newcomers() -> None:
    table = CovisitTable(width=2, damping=0.5)
    table.add([0, 0, 0, 0, 0], [1, 2, 3, 1, 1], np.ones(5))
    # 0->1 weighs 3; 0->2 (1) was the weakest when 0->3 came, which inherits its weight.
    nbr, weight, error = table.followers([0])
    assert nbr[0].tolist() == [1, 3]
    assert weight[0].tolist() == [3.0, 2.0]
    assert error[0].tolist() == [0.0, 1.0]
    rows, scores = table.score([[0, -1]], [[1.0, 0.0]], k=3)
    # guaranteed weight / sqrt(occ_0 * occ_item): 3/sqrt(5*3), 1/sqrt(5*1)
    assert rows.tolist() == [[1, 3, -1]]
    np.testing.assert_allclose(scores[0, :2], [3 / np.sqrt(15), 1 / np.sqrt(5)], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    src=st.lists(st.integers(0, 9), min_size=1, max_size=40),
    data=st.data(),
)
def test_without_evictions_weights_are_exact_whatever_the_batching(
    src: list[int], data: st.DataObject
) -> None:
    dst = data.draw(st.lists(st.integers(0, 9), min_size=len(src), max_size=len(src)))
    split = data.draw(st.integers(0, len(src)))
    one, two = CovisitTable(width=10), CovisitTable(width=10)
    one.add(src, dst, np.ones(len(src)))
    two.add(src[:split], dst[:split], np.ones(split))
    two.add(src[split:], dst[split:], np.ones(len(src) - split))
    truth = Counter(zip(src, dst, strict=True))
    for t in (one, two):
        nbr, weight, _ = t.followers(np.arange(t.size))
        got = {
            (a, int(b)): float(w)
            for a in range(t.size)
            for b, w in zip(nbr[a], weight[a], strict=True)
            if b >= 0
        }
        assert got == {k: float(v) for k, v in truth.items()}
        assert not t.error.any()


def test_planted_successors_come_first_despite_noise_and_a_small_width() -> None:
    """Each item's planted follower tops its row, with 200 noise items and 8 slots."""
    rng = np.random.default_rng(0)
    n = 200
    follower = rng.permutation(n)
    table = CovisitTable(width=8)
    for _ in range(20):  # 20 micro-batches of 100 sessions of 6 visits
        sessions = []
        for _ in range(100):
            s = [int(rng.integers(n))]
            for _ in range(5):
                s.append(int(follower[s[-1]]) if rng.random() < 0.5 else int(rng.integers(n)))
            sessions.append(s)
        table.add(*follow_pairs(sessions, [6] * len(sessions), window=3, **SEQUENTIAL))
    rows, _ = table.score(np.arange(n)[:, None], np.ones((n, 1)), k=1)
    assert (rows[:, 0] == follower).mean() > 0.95


def test_scores_sum_over_the_history_and_come_best_first() -> None:
    table = CovisitTable(width=4)
    table.add([0, 1, 1], [2, 2, 3], [1.0, 1.0, 1.0])
    rows, scores = table.score([[0, 1], [-1, -1]], [[1.0, 1.0], [1.0, 1.0]], k=3)
    assert rows[0, 0] == 2  # followed both history items
    assert (np.diff(scores[0][rows[0] >= 0]) <= 0).all()
    assert rows[1].tolist() == [-1, -1, -1] and not scores[1].any()


def test_remap_follows_items_to_their_new_rows_and_drops_gone_ones() -> None:
    table = CovisitTable(width=4)
    table.add([0, 0, 1], [1, 2, 2], [2.0, 1.0, 1.0])
    before, _ = table.score([[0]], [[1.0]], k=2)
    new_row = np.array([2, 0, -1])  # 0 -> 2, 1 -> 0, item 2 is gone
    moved = table.remap(new_row, 3)
    after, _ = moved.score([[2]], [[1.0]], k=2)
    assert before[0].tolist() == [1, 2]
    assert after[0].tolist() == [0, -1]
    assert moved.followers([0])[0][0].tolist() == [-1, -1, -1, -1]  # 1 followed only 2


def test_recent_rows_right_aligns_and_decays() -> None:
    rows, w = recent_rows([[1, 2, 3], [], [7]], 2, 0.5)
    assert rows.tolist() == [[2, 3], [-1, -1], [-1, 7]]
    assert w.tolist() == [[0.5, 1.0], [0.0, 0.0], [0.0, 1.0]]


@settings(max_examples=40, deadline=None)
@given(
    seqs=st.lists(st.lists(st.integers(-1, 50), max_size=12), max_size=5),
    n=st.integers(0, 6),
)
def test_recent_rows_matches_taking_each_tail(seqs: list[list[int]], n: int) -> None:
    rows, w = recent_rows(seqs, n, 0.8)
    assert rows.shape == w.shape == (len(seqs), n)
    for got, seq in zip(rows.tolist(), seqs, strict=True):
        tail = seq[-n:] if n else []
        assert got == [-1] * (n - len(tail)) + tail
    assert ((w > 0) == (rows >= 0)).all()


def test_half_life_makes_a_newer_pair_weigh_double_per_half_life() -> None:
    """Known answer: 0 -> 1 at time 0, then 0 -> 2 one half-life later, once each."""
    table = CovisitTable(width=4, damping=0.0, half_life_ms=1_000.0)
    table.add([0], [1], [1.0], now_ms=0)
    table.add([0], [2], [1.0], now_ms=1_000)
    got = dict(zip(*(a[0].tolist() for a in table.followers([0])[:2]), strict=True))
    assert got[1] == 1.0 and got[2] == 2.0
    rows, _ = table.score([[0]], [[1.0]], k=2)
    assert rows[0].tolist() == [2, 1]  # without the half-life it would be a tie
    plain = CovisitTable(width=4, damping=0.0)
    plain.add([0], [1], [1.0], now_ms=0)
    plain.add([0], [2], [1.0], now_ms=1_000)
    assert plain.followers([0])[1][0, :2].tolist() == [1.0, 1.0]


def test_rescaling_keeps_the_ratios_of_old_and_new_pairs() -> None:
    """Far apart in time the table rescales; what it keeps is the same up to a factor."""
    table = CovisitTable(width=4, damping=0.5, half_life_ms=10.0)
    table.add([0, 0], [1, 2], [1.0, 3.0], now_ms=0)
    table.add([0], [3], [1.0], now_ms=450)  # factor 2**45 > RESCALE_AT: rescaled
    assert table.ref_ms == 450.0 and float(table.weight.max()) == 1.0
    table.add([0], [4], [1.0], now_ms=460)
    w = dict(zip(*(a[0].tolist() for a in table.followers([0])[:2]), strict=True))
    assert w[4] == 2.0 * w[3]
    assert np.isclose(w[2] / w[1], 3.0) and np.isclose(w[3] / w[1], 2.0**45, rtol=1e-5)
    moved = table.remap(np.array([0, 1, 2, 3, 4]), 5)
    assert (moved.half_life_ms, moved.ref_ms) == (10.0, 450.0)


def numpy_recent_rows(sequences: list[list[int]], n: int, decay: float) -> tuple[np.ndarray, ...]:
    """``recent_rows`` as it was in numpy, before its compiled loop."""
    arrays = [np.asarray(q, dtype=np.int64).reshape(-1) for q in sequences]
    lengths = np.fromiter((a.size for a in arrays), np.int64, len(arrays))
    rows = np.full((lengths.size, n), -1, np.int64)
    if n and lengths.any():
        flat = np.concatenate(arrays)
        user = np.repeat(np.arange(lengths.size), lengths)
        from_end = np.cumsum(lengths)[user] - np.arange(flat.size)
        keep = from_end <= n
        rows[user[keep], n - from_end[keep]] = flat[keep]
    age = np.arange(n - 1, -1, -1, dtype=np.float32)
    weights = np.where(rows >= 0, np.float32(decay) ** age, 0.0).astype(np.float32)
    return rows, weights


@settings(max_examples=150, deadline=None)
@given(
    seqs=st.lists(st.lists(st.integers(-1, 50), max_size=60), max_size=6),
    n=st.integers(0, 12),
    decay=st.sampled_from([0.8, 0.5, 1.0, 0.3333]),
)
def test_recent_rows_is_the_numpy_form_bit_for_bit(
    seqs: list[list[int]], n: int, decay: float
) -> None:
    rows, w = recent_rows(seqs, n, decay)
    want_rows, want_w = numpy_recent_rows(seqs, n, decay)
    np.testing.assert_array_equal(rows, want_rows)
    assert w.dtype == want_w.dtype and w.tobytes() == want_w.tobytes()
