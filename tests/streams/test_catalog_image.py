"""The catalog image: a restart reads one file instead of every stored record.

The image must give the worker exactly the catalog, index and records it had, be used
only for the bundle it was taken with and while the log still holds the entry it was
taken at, and lose nothing written after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_bundle import Bundle, D
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.core.catalog_image as catalog_image
from freshet.settings import Settings
from freshet.wiring import live_recommender
from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogRecord, InMemoryCatalogStore
from streams.core.catalog_image import (
    IMAGE_FILE,
    StoredRecords,
    all_records,
    capture,
    finish,
    load_image,
    restore,
    save_image,
)
from streams.core.live_catalog import apply_records, build_index, bundle_catalog, update_index
from streams.runtime.live_recommender import LiveRecommender


def _record(item: str, cat: str = "c", removed: bool = False, ts: int = 1) -> CatalogRecord:
    return CatalogRecord(item, (cat,), {"n": len(item)}, f"text {item}", ts, ts, removed)


async def _nothing(*_: Any) -> Any:
    return None


def _state(live: LiveRecommender) -> dict[str, Any]:
    """What a worker serves from: catalog columns and ids, searchable rows, records."""
    cat = live.scorer.catalog
    index = live.scorer.index
    assert index is not None
    ids, _ = index.search(np.eye(D, dtype=np.float32), cat.size)
    return {
        "ids": list(cat.ids),
        "vectors": cat.vectors().round(6).tolist(),
        "columns": {k: _comparable(v) for k, v in cat.columns().items()},
        "searchable": sorted(set(ids.ravel().tolist()) - {-1}),
        "records": dict(sorted((k, live.scorer.records[k]) for k in live.scorer.records)),
    }


def _comparable(column: np.ndarray) -> list[Any]:
    """A column as a list, NaN (no first-seen time) as None, so equal columns compare equal."""
    return [None if isinstance(v, float) and v != v else v for v in column.tolist()]


class Store(InMemoryCatalogStore):
    """The in-memory store, counting full reads of the stored records."""

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    async def scan(self, page: int = 20_000) -> Any:
        self.scans += 1
        async for part in super().scan(page):
            yield part


def _worker(store: Any, tmp_path: Path, version: str = "v1") -> LiveRecommender:
    (tmp_path / "bundles").mkdir(exist_ok=True)
    (tmp_path / "bundles" / "CURRENT").write_text(f"{version}\n")
    return live_recommender(
        Settings(bundle_dir=tmp_path / "bundles", home=tmp_path / "home"),
        trending_source=_nothing,
        counts_source=_nothing,
        catalog_log=store.read_log,
        bundle_loader=lambda _dir, v: Bundle(40, version=v),
        catalog_snapshot=store,
    )


async def _start(live: LiveRecommender) -> None:
    assert await live.check_bundle()
    await live.sync_catalog()
    if live.images is not None and live.images.task is not None:
        await live.images.task


def _catalog_records() -> list[CatalogRecord]:
    return (
        [_record(f"b{i}", cat=f"k{i % 3}") for i in range(0, 40, 2)]  # bundle items
        + [_record(f"new{i}", cat="fresh") for i in range(6)]  # items the bundle lacks
        + [_record("b4", removed=True, ts=5), _record("new2", removed=True, ts=5)]
    )


async def test_a_restart_serves_from_the_image_what_the_full_read_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_image, "CHUNK", 4)  # many chunks, most left untouched
    store = Store()
    await store.put(_catalog_records())
    first = _worker(store, tmp_path)
    await _start(first)
    assert store.scans == 1 and (tmp_path / "home" / "catalog-images").exists()
    # Changes after the image: a restart must follow the log from the image's cursor.
    await store.put([_record("new9", cat="late"), _record("b6", removed=True, ts=9)])
    await first.sync_catalog()

    second = _worker(store, tmp_path)
    await _start(second)
    assert store.scans == 1  # the restart read no stored record
    assert _state(second) == _state(first)
    assert len(second.scorer.records) == len(first.scorer.records) == 20 + 7
    assert second.catalog_cursor == first.catalog_cursor == await store.log_head()
    # The restarted worker's own image (its records read from the first image, some
    # changed since) gives a third start the same again.
    await store.put([_record("b8", cat="k9", ts=20), _record("new10")])
    assert second.images is not None
    second.images.every_s = 0.0
    await second.sync_catalog()
    assert second.images.task is not None
    await second.images.task
    third = _worker(store, tmp_path)
    await _start(third)
    assert store.scans == 1 and _state(third) == _state(second)


async def test_an_image_for_another_bundle_or_a_log_without_its_entry_is_not_used(
    tmp_path: Path,
) -> None:
    store = Store()
    await store.put(_catalog_records())
    await _start(_worker(store, tmp_path))
    assert store.scans == 1
    other = _worker(store, tmp_path, version="v2")  # another bundle
    await _start(other)
    assert store.scans == 2 and other.scorer.catalog.size == 46

    fresh = Store()  # a log that does not hold the image's entry (flushed, refilled)
    await fresh.put([_record("b1"), _record("x1")])
    refilled = _worker(fresh, tmp_path, version="v2")
    await _start(refilled)
    assert fresh.scans == 1 and refilled.scorer.catalog.size == 41
    assert set(refilled.scorer.records) == {"b1", "x1"}


@pytest.mark.parametrize("damage", ["torn", "a byte of the records"])
async def test_a_broken_image_file_is_ignored(tmp_path: Path, damage: str) -> None:
    store = Store()
    await store.put(_catalog_records())
    await _start(_worker(store, tmp_path))
    (path,) = (tmp_path / "home").rglob(IMAGE_FILE)
    image = load_image(path.parent)
    assert image is not None and isinstance(image.raw, np.memmap)  # mapped, not read in
    data = bytearray(path.read_bytes())
    if damage == "torn":
        data = data[:100]
    else:  # inside the records member, which is mapped: only its CRC tells
        data[data.find(b"item_id")] ^= 0x01
    path.write_bytes(bytes(data))
    assert load_image(path.parent) is None
    again = _worker(store, tmp_path)
    await _start(again)
    assert store.scans == 2 and again.scorer.catalog.size == 46


@settings(max_examples=30, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["b1", "b2", "b3", "n1", "n2", "n3"]), st.booleans()),
        max_size=20,
    )
)
def test_restore_rebuilds_the_catalog_index_and_records(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, bool]]
) -> None:
    bundle = Bundle(5)
    catalog = bundle_catalog(bundle)
    index = build_index(catalog)
    records: dict[str, CatalogRecord] = {}
    for ts, (item, removed) in enumerate(ops):
        rec = _record(item, cat=f"c{ts % 2}", removed=removed, ts=ts)
        records[item] = rec
        index = update_index(catalog, index, apply_records(catalog, [rec], bundle))
    folder = tmp_path_factory.mktemp("image")
    parts = capture(catalog, 5, "v1", "7", records)
    save_image(folder, finish(parts, "b1"))
    image = load_image(folder)
    assert image is not None and (image.cursor, image.anchor) == ("7", "b1")
    got, got_index, got_records = restore(image, bundle, None)
    assert got.ids == catalog.ids
    np.testing.assert_array_equal(got.vectors(), catalog.vectors())
    for key, col in catalog.columns().items():
        np.testing.assert_array_equal(got.columns()[key], col)
    assert dict(got_records) == records and len(got_records) == len(records)
    assert index is not None and got_index is not None
    q = np.eye(D, dtype=np.float32)
    assert sorted(set(got_index.search(q, 20)[0].ravel()) - {-1}) == sorted(
        set(index.search(q, 20)[0].ravel()) - {-1}
    )


def test_stored_records_read_lazily_and_count_what_is_set_on_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(catalog_image, "CHUNK", 2)  # rows a, b | c
    recs = {"a": _record("a"), "c": _record("c")}  # "b" (a bundle item) has none
    catalog = ItemCatalog(["a", "b", "c"], np.zeros((3, D), np.float32))
    image = finish(capture(catalog, 3, "v1", "1", recs), "a")
    assert image.offsets.size == 3 and image.has.tolist() == [True, False, True]
    stored = StoredRecords(catalog.ids, image)
    assert len(stored) == 2 and "b" not in stored and stored["c"] == recs["c"]
    frozen = stored.frozen()
    stored["b"] = _record("b", ts=3)
    stored["a"] = _record("a", ts=4)
    assert len(stored) == 3 and stored["a"].updated_ts == 4
    assert list(stored) == ["c", "b", "a"]
    del stored["c"]
    assert len(stored) == 2 and "c" not in stored
    assert sorted(r.item_id for r in all_records(stored)) == ["a", "b"]
    assert len(frozen) == 2 and frozen["a"] == recs["a"]  # the copy kept its state
    with pytest.raises(KeyError):
        stored["zz"]
    # An image of the changed records keeps the untouched chunk's bytes as they were.
    again = finish(capture(catalog, 3, "v1", "2", stored), "b")
    assert again.has.tolist() == [True, True, False]
    assert dict(StoredRecords(catalog.ids, again)) == dict(stored)


def test_capture_copies_so_later_writes_do_not_reach_the_image(tmp_path: Path) -> None:
    bundle = Bundle(3)
    catalog = bundle_catalog(bundle)
    records = {"b0": _record("b0")}
    apply_records(catalog, list(records.values()), bundle)
    parts = capture(catalog, 3, "v1", "1", records)
    later = _record("b1", removed=True, ts=2)
    records["b1"] = later
    apply_records(catalog, [later], bundle)
    image = finish(parts, "b0")
    assert not image.columns["removed"].any() and image.has.tolist() == [True, False, False]


async def test_the_worker_saves_again_only_when_the_catalog_moved(tmp_path: Path) -> None:
    store = Store()
    await store.put(_catalog_records())
    live = _worker(store, tmp_path)
    assert live.images is not None
    live.images.every_s = 0.0
    await _start(live)
    (path,) = (tmp_path / "home").rglob(IMAGE_FILE)
    stamp = path.stat().st_mtime_ns
    await live.sync_catalog()
    assert live.images.task is not None and live.images.task.done()  # not started again
    await store.put([_record("new7")])
    await live.sync_catalog()
    assert live.images.task is not None
    await live.images.task
    assert path.stat().st_mtime_ns != stamp
    image = load_image(path.parent)
    assert image is not None and image.cursor == live.catalog_cursor and "new7" in image.new_ids


async def test_on_redis_an_image_whose_entry_was_trimmed_from_the_log_is_not_used(
    redis_url: str, tmp_path: Path
) -> None:
    from redis.asyncio import Redis

    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    class Counted(RedisCatalogStore):
        scans = 0

        async def scan(self, page: int = 20_000) -> Any:
            Counted.scans += 1
            async for part in super().scan(page):
                yield part

    client = Redis.from_url(redis_url)
    store = Counted(client, Keyspace("img", "g1"), log_maxlen=100)
    await store.put([_record(f"new{i}") for i in range(300)])
    await _start(_worker(store, tmp_path))
    again = _worker(store, tmp_path)
    await _start(again)
    assert Counted.scans == 1 and again.scorer.catalog.size == 340  # from the image
    for start in range(0, 1_000, 100):  # the log moves on past the image's entry
        await store.put([_record(f"more{i}") for i in range(start, start + 100)])
    trimmed = _worker(store, tmp_path)
    await _start(trimmed)
    assert Counted.scans == 2 and trimmed.scorer.catalog.size == 1_340
    assert len(trimmed.scorer.records) == 1_300
    await client.aclose()
