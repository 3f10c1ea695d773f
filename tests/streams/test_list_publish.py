"""Lists go out one way (stamped once, stored, then sent) and name what they reflect.

Every list is stored and published by ``ListPublisher``: the copy in the store and
the copy on the sink are the same bytes. A list names the newest *applied* event of
its user, never a re-sent old event that happens to end the batch. Users touched
before the worker can score (no catalog yet, model-free or while the first bundle
loads) are held and served once it can.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fake_bundle import Bundle

from freshet.settings import Settings
from freshet.wiring import live_recommender
from schemas.codec import DecodeLimits, decode_recommendation, encode
from schemas.dead_letter import DeadLetter
from schemas.events import InteractionEvent
from schemas.recommendation import Recommendation
from schemas.topics import event_key
from streams.core.catalog import CatalogRecord
from streams.core.ingest import IngestProcessor, Refresh, SourceRecord, TouchedUser
from streams.core.list_message import source_of
from streams.core.publish import Committed, ListPublisher
from streams.core.state_rules import StateRules
from streams.core.state_store import InMemoryStateStore
from streams.runtime.live_recommender import LiveRecommender

T0 = 1_700_000_000_000
RULES = StateRules(history_len=20, seen_max=50, dedup_window=128)


def ev(event_id: str, ts: int, user: str = "u1", item: str = "i1") -> InteractionEvent:
    return InteractionEvent(event_id, user, item, "view", ts)


def rec(offset: int, event: InteractionEvent, ts_ms: int = 0) -> SourceRecord:
    return SourceRecord(
        "events", 0, offset, event_key(event.user_id), encode(event), ts_ms or offset
    )


async def no_letters(letters: Sequence[DeadLetter]) -> None:
    assert not letters


class Recorder:
    """A refresher that records whom it was asked about, and lists nobody."""

    def __init__(self) -> None:
        self.touched: list[TouchedUser] = []

    async def refresh(self, touched: Sequence[TouchedUser], now_ms: int) -> Refresh:
        self.touched = list(touched)
        return Refresh()


class Sent:
    def __init__(self) -> None:
        self.lists: list[Recommendation] = []

    async def __call__(self, lists: Sequence[Committed]) -> None:
        for rec, raw in lists:
            assert decode_recommendation(raw) == rec  # sent as committed: encoded once
            self.lists.append(rec)


def ingest(store: InMemoryStateStore, refresher: Any, sink: Sent | None = None) -> IngestProcessor:
    return IngestProcessor(
        store,
        RULES,
        DecodeLimits(),
        dead_letter_sink=no_letters,
        list_sink=sink,
        refresher=refresher,
        clock=lambda: T0 / 1000 + 60,
    )


# --- the label: newest applied event (issue 16, item 5) ------------------------------
async def test_a_batch_ending_in_a_resent_old_event_names_the_newest_applied_one() -> None:
    store, seen = InMemoryStateStore(), Recorder()
    p = ingest(store, seen)
    await p.process([rec(0, ev("e1", T0 + 1), ts_ms=11)])
    # e2 is new; e1 comes again at a new offset (a producer retry) and ends the batch.
    await p.process([rec(1, ev("e2", T0 + 2), ts_ms=12), rec(2, ev("e1", T0 + 1), ts_ms=13)])
    (user,) = seen.touched
    assert user.last_event is not None
    assert (user.last_event.event_id, user.last_event.ts) == ("e2", T0 + 2)
    assert user.source_timestamp_ms == 12
    assert source_of(user) == ("e2", T0 + 2)


async def test_a_batch_of_only_an_old_duplicate_names_the_states_newest_event() -> None:
    store, seen = InMemoryStateStore(), Recorder()
    p = ingest(store, seen)
    await p.process([rec(0, ev("e1", T0 + 1)), rec(1, ev("e2", T0 + 2))])
    await p.process([rec(2, ev("e1", T0 + 1))])  # nothing applied
    (user,) = seen.touched
    assert user.last_event is None or user.last_event.event_id == "e2"
    assert source_of(user) == ("e2", T0 + 2)


async def test_redelivered_records_name_the_newest_of_them_that_the_state_applied() -> None:
    store, seen = InMemoryStateStore(), Recorder()
    p = ingest(store, seen)
    batch = [rec(0, ev("e1", T0 + 1)), rec(1, ev("e2", T0 + 2)), rec(2, ev("e1", T0 + 1))]
    await p.process(batch)
    await p.process(batch)  # crash before the ack: all three again, below the watermark
    (user,) = seen.touched
    assert user.last_event is not None and user.last_event.event_id == "e2"
    assert user.source_timestamp_ms == 1


# --- one publish path -----------------------------------------------------------------
class Log:
    """The catalog log as the worker reads it: entries after a cursor."""

    def __init__(self) -> None:
        self.records: list[CatalogRecord] = []

    async def __call__(self, after: str) -> list[tuple[str, CatalogRecord]]:
        start = int(after)
        return [(str(i + 1), r) for i, r in enumerate(self.records[start:], start)]


async def _empty(*_: Any) -> Any:
    return {}


def shell(tmp_path: Path, log: Log, debounce_ms: int = 0, loader: Any = None) -> LiveRecommender:
    return live_recommender(
        Settings(bundle_dir=tmp_path, debounce_ms=debounce_ms, cold_user_events=1, list_size=5),
        trending_source=_empty,
        counts_source=_empty,
        catalog_log=log,
        bundle_loader=loader,
    )


async def test_the_stored_list_and_the_sent_list_are_the_same_bytes(tmp_path: Path) -> None:
    store, sent, log = InMemoryStateStore(), Sent(), Log()
    live = shell(tmp_path, log)
    live.scorer.swap_bundle(Bundle(12, prefix="i"))
    stamps = iter([T0 / 1000 + 61, T0 / 1000 + 99])  # a second stamp would differ
    p = ingest(store, live, sent)  # scores at T0 + 60 s
    p.publisher.clock = lambda: next(stamps)
    stats = await p.process([rec(0, ev("e1", T0 + 1, item="i3"))])
    assert stats.published == 1
    (published,) = sent.lists
    stored = await store.user(0, "u1")
    assert stored is not None and stored.latest == encode(published)
    assert published.published_ts == T0 + 61_000  # stamped once, by the publisher
    assert (published.source_event_id, published.event_ts) == ("e1", T0 + 1)


async def test_a_list_without_a_state_write_is_stored_alone_then_sent() -> None:
    store, sent = InMemoryStateStore(), Sent()
    store.watermarks[2] = 41
    publisher = ListPublisher(store, sent, clock=lambda: 5.0)
    touched = Recommendation("u9", (), "cold_start", None, "e9", 7, published_ts=0)
    out = await publisher.commit([], {"u9": 2}, Refresh({"u9": b"\0" * 4}, {"u9": touched}))
    assert [r.published_ts for r in out] == [5_000] and sent.lists == out
    stored = await store.user(2, "u9")
    assert stored is not None and decode_recommendation(stored.latest or b"") == out[0]
    assert stored.embedding is None  # embeddings ride only with a state write
    assert store.watermarks[2] == 41  # the watermark is the state write's business


# --- no user left without a list (issue 16, item 6) ------------------------------------
def _catalog_record(item: str) -> CatalogRecord:
    return CatalogRecord(item, ("cat",), {}, "", 1, 1, False)


async def test_a_model_free_worker_serves_users_touched_before_its_catalog(
    tmp_path: Path,
) -> None:
    """No bundle at all, and the catalog arrives after the user's first event."""
    store, sent, log = InMemoryStateStore(), Sent(), Log()
    live = shell(tmp_path, log)  # no CURRENT in the folder: model-free
    p = ingest(store, live, sent)
    assert not await live.check_bundle()
    await live.sync_catalog()
    stats = await p.process([rec(0, ev("e1", T0 + 1, item="n1"))])
    assert stats.published == 0 and sent.lists == []  # nothing to score against yet
    log.records += [_catalog_record(f"n{i}") for i in range(8)]
    assert await live.sync_catalog() == 8
    served = await live.flush(p.publisher, T0 + 2_000)
    assert [u.user_id for u in served] == ["u1"]
    (published,) = sent.lists
    assert published.strategy == "model_free" and published.source_event_id == "e1"
    assert "n1" not in {it.item_id for it in published.items}  # seen
    stored = await store.user(0, "u1")
    assert stored is not None and stored.latest == encode(published)
    assert await live.flush(p.publisher, T0 + 3_000) == []  # owed once


async def test_users_touched_before_the_first_bundle_are_served_by_it(tmp_path: Path) -> None:
    """A bundle is named but not yet loaded (and no catalog): the users wait for it."""
    store, sent, log = InMemoryStateStore(), Sent(), Log()
    loads: list[str] = []

    def loader(folder: Path, version: str) -> Bundle:
        loads.append(version)
        return Bundle(12, prefix="i")

    live = shell(tmp_path, log, loader=loader)
    p = ingest(store, live, sent)
    await p.process([rec(0, ev("e1", T0 + 1, item="i2")), rec(1, ev("e2", T0 + 2, "u2"))])
    assert sent.lists == []
    (tmp_path / "CURRENT").write_text("v1\n")
    assert await live.check_bundle() and loads == ["v1"]
    served = await live.flush(p.publisher, T0 + 2_000)
    assert sorted(u.user_id for u in served) == ["u1", "u2"]
    assert {r.strategy for r in sent.lists} == {"personalised"}
    assert {r.model_version for r in sent.lists} == {"v1"}
