"""Housekeeping swapped in while batches are scored: every call sees one whole state.

The live recommender prepares catalog pages, index updates, trending and popularity,
and whole bundles off the scoring lock and swaps them in (``streams.core.copy_on_write``).
These tests score continuously in worker threads while all of that happens, and check
at the start of every scoring call that what the scorer holds is one consistent state:
the catalog a prefix of the log on one bundle, the index a prefix of that catalog,
popularity and trending each from one read. A swap done in place, or half of one,
shows up as a state no prefix explains.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_bundle import Bundle, D

import streams.core.copy_on_write as cow
import streams.runtime.live_recommender as live_module
from freshet.settings import Settings
from freshet.wiring import live_recommender
from streams.core.catalog import CatalogRecord
from streams.core.ingest import TouchedUser
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import HistoryEntry, UserState
from streams.runtime.live_recommender import LiveRecommender

N_BUNDLE = 12


def _bundle(version: str) -> Bundle:
    """v1 numbers its items b0..b11; v2 the other way round, so rows move on a swap."""
    bundle = Bundle(N_BUNDLE, version=version)
    if version != "v1":
        bundle.item_ids = bundle.item_ids[::-1]
        bundle.item_vectors = bundle.item_vectors[::-1].copy()
    return bundle


def _live(folder: Path, trending: Any, counts: Any, catalog_log: Any) -> LiveRecommender:
    """A live recommender on these sources, loading ``_bundle``s from ``folder``."""
    return live_recommender(
        Settings(bundle_dir=folder),
        trending_source=trending,
        counts_source=counts,
        catalog_log=catalog_log,
        bundle_loader=lambda _dir, version: _bundle(version),
    )


def _log(rng: random.Random, n: int) -> list[CatalogRecord]:
    """New items, updates and removals (of bundle items and of new ones), interleaved."""
    out: list[CatalogRecord] = []
    for i in range(n):
        if i and rng.random() < 0.3:
            pool = [f"b{r}" for r in range(N_BUNDLE)] + [r.item_id for r in out]
            item, removed = rng.choice(pool), rng.random() < 0.7
        else:
            item, removed = f"n{i}", False
        out.append(CatalogRecord(item, (f"c{i % 3}",), {}, "", i + 1, i + 1, removed))
    return out


def _states(bundle: Bundle, log: list[CatalogRecord]) -> tuple[dict[Any, int], list[set[str]]]:
    """Per prefix k of the log: (catalog ids, removed ids) -> k, and the live items."""
    ids = list(bundle.item_ids)
    removed: set[str] = set()
    states = {(tuple(ids), frozenset()): 0}
    live = [set(ids)]
    for k, rec in enumerate(log, 1):
        if rec.item_id not in ids:
            ids.append(rec.item_id)
        (removed.add if rec.removed else removed.discard)(rec.item_id)
        states[(tuple(ids), frozenset(removed))] = k
        live.append(set(ids) - removed)
    return states, live


class Checker:
    """Wraps ``LiveScorer.score``: checks the holdings at each call's start."""

    def __init__(self, scorer: LiveScorer, log: list[CatalogRecord]) -> None:
        self.scorer, self.calls, self.bundles_seen = scorer, 0, set()
        self.expected = {v: _states(_bundle(v), log) for v in ("v1", "v2")}
        self.popularities: set[float] = set()
        self.score = scorer.score
        scorer.score = self  # type: ignore[method-assign]

    def __call__(self, users: list[TouchedUser], now_ms: int) -> Any:
        s = self.scorer
        assert s.bundle is not None
        version = s.bundle.version
        self.bundles_seen.add(version)
        states, live = self.expected[version]
        cat = s.catalog
        ids = tuple(cat.ids)
        removed = frozenset(i for r, i in enumerate(ids) if cat.is_removed(r))
        k = states.get((ids, removed))
        assert k is not None, f"catalog on {version} is no prefix of the log: {ids}"
        assert ids[:N_BUNDLE] == tuple(s.bundle.item_ids)  # catalog and bundle together
        # The index: a prefix k' <= k of the same catalog, never ahead of it.
        assert s.index is not None
        found, _ = s.index.search(np.ones((1, D), np.float32), 10_000)
        rows = {int(r) for r in found[0] if r >= 0}
        assert all(r < cat.size for r in rows), "index ahead of the catalog"
        searchable = {ids[r] for r in rows}
        assert any(searchable == live[j] for j in range(k + 1)), "index no prefix"
        # Popularity: every bundle item's count from the same read.
        pop = s.catalog.table(now_ms).popularity[:N_BUNDLE]
        assert np.unique(pop).size == 1, f"popularity mixes reads: {pop}"
        self.popularities.add(float(pop[0]))
        # Trending: one read's list, whole (v items b{v}..b{v+3}, all known).
        trending = [ids[r] for r in s.trending_rows]
        if trending:
            v = int(trending[0][1:])
            assert trending == [f"b{(v + j) % N_BUNDLE}" for j in range(4)], trending
        self.calls += 1
        return self.score(users, now_ms)


def _user(i: int, items: list[str]) -> TouchedUser:
    history = tuple(HistoryEntry(item, "view", 1_000 + j) for j, item in enumerate(items))
    state = UserState(history=history, seen=tuple(items), n_events=len(items))
    return TouchedUser(f"u{i}", 0, state, None, None, 2_000)


@pytest.mark.parametrize("seed", range(4))
def test_scoring_during_swaps_sees_one_whole_state(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(cow, "CATALOG_CHUNK", 3)  # many chunks, many interleavings
    monkeypatch.setattr(live_module, "CATALOG_LOG_PAGE", 7)  # pages of 7, followed at once
    log = _log(rng, 120)
    appended: list[CatalogRecord] = []
    reads = {"counts": 0, "trending": 0}

    async def catalog_log(after: str) -> list[tuple[str, CatalogRecord]]:
        start = int(after)
        return [(str(start + i + 1), r) for i, r in enumerate(appended[start : start + 7])]

    async def counts_source() -> dict[str, int]:
        reads["counts"] += 1
        return {f"b{r}": reads["counts"] for r in range(N_BUNDLE)}

    async def trending_source(k: int) -> list[tuple[str, float]]:
        reads["trending"] += 1
        v = reads["trending"]
        return [(f"b{(v + j) % N_BUNDLE}", 4.0 - j) for j in range(4)]

    (tmp_path / "CURRENT").write_text("v1\n")
    live = _live(tmp_path, trending_source, counts_source, catalog_log)
    checker = Checker(live.scorer, log)
    users = [_user(i, [f"b{(i + j) % N_BUNDLE}" for j in range(3)]) for i in range(8)]

    async def scenario() -> None:
        assert await live.check_bundle()
        stop = asyncio.Event()

        async def score() -> None:
            while not stop.is_set():
                await live.compute_async(rng.sample(users, 3), 2_000)
                await asyncio.sleep(0)

        async def housekeeping() -> None:
            for step in range(60):
                appended.extend(log[len(appended) : len(appended) + rng.randint(0, 4)])
                duty = rng.choice(["catalog", "catalog", "trending", "popularity"])
                if step == 30:
                    (tmp_path / "CURRENT").write_text("v2\n")
                    await asyncio.gather(live.check_bundle(), live.sync_catalog())
                elif duty == "catalog":
                    await live.sync_catalog()
                elif duty == "trending":
                    await live.sync_trending()
                else:
                    await live.sync_popularity()
                await asyncio.sleep(0)
            appended.extend(log[len(appended) :])
            await live.sync_catalog()
            stop.set()

        await asyncio.gather(score(), score(), housekeeping())

    asyncio.run(scenario())
    assert checker.calls > 50 and checker.bundles_seen == {"v1", "v2"}
    assert len(checker.popularities) > 1  # popularity did change under the scorer
    # Everything arrived: the last state is the whole log, searchable, on v2.
    states, live_items = checker.expected["v2"]
    cat = live.scorer.catalog
    ids = tuple(cat.ids)
    removed = frozenset(i for r, i in enumerate(ids) if cat.is_removed(r))
    assert states[(ids, removed)] == len(log)
    assert live.scorer.index is not None
    found, _ = live.scorer.index.search(np.ones((1, D), np.float32), 10_000)
    assert {ids[r] for r in found[0] if r >= 0} == live_items[-1]
    assert live.catalog_cursor == str(len(log))


def test_pairs_learnt_while_the_table_is_renumbered_reach_the_new_table() -> None:
    """The co-visitation table is frozen during a swap; what is learnt meanwhile waits in
    the old numbering and lands, re-numbered, in the new table (known answer)."""
    scorer = LiveScorer(seed=0)
    scorer.swap_bundle(_bundle("v1"))  # b0..b11 at rows 0..11
    scorer.score([_user(0, ["b0", "b1"])], 2_000)  # b0 -> b1 learnt directly
    scorer.covisit_frozen = True
    new = _bundle("v2")  # b11..b0: item b{r} at row 11 - r
    catalog, index = scorer.prepare(new, [])
    remap = cow.prepare_covisit(scorer, catalog)
    scorer.score([_user(1, ["b2", "b3"])], 2_000)  # learnt while frozen: waits
    assert len(scorer.covisit_backlog) == 1
    assert not (remap.table.followers([11 - 2])[0] == 11 - 3).any()
    cow.swap_bundle(scorer, new, catalog, index, remap)
    assert not scorer.covisit_frozen and scorer.covisit is remap.table
    scorer.score([_user(2, ["b5"])], 2_000)  # the next call adds what waited
    assert not scorer.covisit_backlog
    table = scorer.covisit
    assert (table.followers([11 - 0])[0] == 11 - 1).any()  # carried over by the re-numbering
    assert (table.followers([11 - 2])[0] == 11 - 3).any()  # learnt during the swap, not lost
    assert not (table.followers([2])[0] == 3).any()  # and not under its old numbers


def test_a_stale_preparation_changes_nothing() -> None:
    scorer = LiveScorer(seed=0)
    scorer.swap_bundle(_bundle("v1"))
    before = scorer.catalog
    popularity = cow.prepare_popularity(before, {"b1": 5})
    trending = cow.prepare_trending(before, [("b1", 1.0)])
    page = cow.prepare_catalog(before, scorer.bundle, [CatalogRecord("x", (), {}, "", 1, 1)])
    update = cow.prepare_index(before, scorer.index, [])
    scorer.swap_bundle(_bundle("v2"))  # a bundle came in meanwhile
    assert not cow.swap_popularity(scorer, popularity)
    assert not cow.swap_trending(scorer, trending)
    assert cow.write_chunk(scorer, page, 0) is None and "x" not in scorer.catalog.row_of
    assert not cow.swap_index(scorer, update)
    assert scorer.catalog.table(0).popularity.max() == 1.0  # untouched


def test_a_swap_builds_the_bundle_parts_off_the_scoring_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound encoder run (a few ORT runs) is built while the swap is prepared, in a
    thread, not by the first scoring call after it (inline on the loop when idle)."""
    import threading

    import streams.core.live_scorer as scorer_module

    built: list[tuple[str, bool]] = []  # (bundle version, built in the loop's thread)
    real = scorer_module.bound_encoder

    def recorded(bundle: Any) -> Any:
        built.append((bundle.version, threading.current_thread() is threading.main_thread()))
        return real(bundle)

    monkeypatch.setattr(scorer_module, "bound_encoder", recorded)
    (tmp_path / "CURRENT").write_text("v1\n")

    async def no_counts() -> dict[str, int]:
        return {}

    async def none_yet(_: Any) -> list[Any]:  # no trending items, no catalog records
        return []

    live = _live(tmp_path, none_yet, no_counts, none_yet)

    async def scenario() -> None:
        assert await live.check_bundle()
        assert built == [("v1", False)]  # with the swap, in a worker thread
        await live.compute_async([_user(0, ["b0", "b1"])], 2_000)
        (tmp_path / "CURRENT").write_text("v2\n")
        assert await live.check_bundle()
        await live.compute_async([_user(1, ["b2"])], 3_000)

    asyncio.run(scenario())
    assert built == [("v1", False), ("v2", False)]  # scoring built none
