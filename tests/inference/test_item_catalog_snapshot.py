"""The catalog's table snapshot and the scorer's syncs: nothing rebuilt when nothing changed,
and what is rebuilt equal to a snapshot built from scratch."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.candidates import ItemTable
from inference.item_catalog import ItemCatalog, _ages
from streams.core.live_scorer import LiveScorer

N, D = 40, 4


def _catalog(seed: int = 0) -> ItemCatalog:
    rng = np.random.default_rng(seed)
    return ItemCatalog(
        [f"i{r}" for r in range(N)],
        rng.standard_normal((N, D)).astype(np.float32),
        categories=[f"c{r % 3}" for r in range(N)],
        popularity=rng.integers(0, 30, N),
        first_seen_ms=rng.integers(0, 100_000, N),
    )


def _assert_same(got: ItemTable, want: ItemTable) -> None:
    for name in ("vectors", "ids", "categories", "popularity", "age_s", "removed", "head"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_array_equal(got.tail_rows, want.tail_rows)


def test_a_sync_that_changes_nothing_keeps_the_snapshot() -> None:
    cat = _catalog()
    table = cat.table(200_000)
    cat.set_popularity({})
    cat.set_popularity({"not-in-the-catalog": 5})
    assert cat.table(200_000) is table


def test_a_popularity_sync_gives_the_snapshot_built_from_scratch() -> None:
    cat, fresh = _catalog(), _catalog()
    cat.table(200_000)
    for step, counts in enumerate(({"i3": 500, "i7": 0}, {"i3": 1, "i11": 90}, {"i0": 44})):
        cat.set_popularity(counts)
        fresh.set_popularity(counts)
        if step == 1:  # a removal between two popularity syncs
            cat.remove("i11")
            fresh.remove("i11")
        got = cat.table(200_000)
        scratch = _catalog()
        for c in ({"i3": 500, "i7": 0}, {"i3": 1, "i11": 90}, {"i0": 44})[: step + 1]:
            scratch.set_popularity(c)
        if step >= 1:
            scratch.remove("i11")
        _assert_same(got, scratch.table(200_000))
    # the snapshot handed out before a sync keeps its counts
    before = cat.table(200_000)
    cat.set_popularity({"i5": 1000})
    assert before.popularity[5] != 1000
    assert cat.table(200_000).popularity[5] == 1000


def test_a_new_minute_recomputes_ages_after_a_popularity_sync() -> None:
    cat = _catalog()
    early = cat.table(200_000)
    cat.set_popularity({"i1": 3})
    late = cat.table(200_000 + 120_000)
    np.testing.assert_allclose(late.age_s, early.age_s + 120.0, rtol=1e-6)


def test_trending_again_against_a_grown_catalog_finds_the_new_item() -> None:
    scorer = LiveScorer()
    scorer.catalog = _catalog()
    top = [("i4", 9.0), ("new", 8.0), ("i2", 7.0)]
    scorer.set_trending(top)
    assert scorer.trending_rows.tolist() == [4, 2]
    scorer.set_trending(list(top))  # the same list: unchanged
    assert scorer.trending_rows.tolist() == [4, 2]
    scorer.catalog.append(["new"])
    scorer.set_trending(list(top))
    assert scorer.trending_rows.tolist() == [4, N, 2]
    np.testing.assert_array_equal(scorer.trending_scores, [9.0, 8.0, 7.0])
    scorer.set_trending([("i2", 1.0)])
    assert scorer.trending_rows.tolist() == [2]


@settings(max_examples=200, deadline=None)
@given(
    first=st.lists(
        st.one_of(st.just(float("nan")), st.floats(0, 2e12, allow_nan=False)), max_size=40
    ),
    now=st.integers(0, 2 * 10**12),
)
def test_ages_are_the_numpy_form_bit_for_bit(first: list[float], now: int) -> None:
    """Unknown first-seen times (NaN) as inf, future ones as 0, float32 seconds."""
    seen = np.asarray(first, np.float64)
    want = np.where(np.isnan(seen), np.inf, (now - seen) / 1000.0).astype(np.float32)
    want = np.maximum(want, 0.0)
    assert _ages(seen, np.float64(now)).tobytes() == want.tobytes()
