"""The columnar catalog apply against the per-record one it replaced (a property test).

``sequential_apply`` is the reference: each record in turn through ``ItemCatalog.upsert``
and ``remove``, new items embedded from their content, as the live catalog applied them
before. Any page of records, on any starting catalog, must leave the same online
catalog and tell the index of the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogRecord
from streams.core.live_catalog import apply_records, build_index, content_vectors, update_index

D = 8
ITEMS = ["b0", "b1", "b2", "n0", "n1", "n2", "n3"]  # b*: the starting catalog's
CATEGORIES = ["", "shoes", "hats", "bags"]


def start_catalog(removed: Sequence[bool], seen: Sequence[float]) -> ItemCatalog:
    rng = np.random.default_rng(0)
    catalog = ItemCatalog(
        ITEMS[:3], rng.normal(size=(3, D)), categories=["shoes", None, "bags"], first_seen_ms=seen
    )
    for row, gone in enumerate(removed):
        if gone:
            catalog.remove(ITEMS[row])
    return catalog


def sequential_apply(
    catalog: ItemCatalog, records: Sequence[CatalogRecord]
) -> tuple[set[int], set[int]]:
    """The per-record path: returns the rows the index must add and must drop."""
    fresh = [r for r in records if not r.removed and r.item_id not in catalog.row_of]
    vectors = content_vectors(fresh, None, catalog.dim)
    vec_of = {r.item_id: vectors[i] for i, r in enumerate(fresh)}
    final: dict[int, CatalogRecord] = {}
    touched: set[int] = set()
    for rec in records:
        if rec.removed:
            row = catalog.remove(rec.item_id)
            if row is None:
                row, _ = catalog.upsert(rec.item_id, None, None, rec.first_seen_ts)
                catalog.remove(rec.item_id)
            touched.add(row)
        else:
            category = rec.categories[0] if rec.categories else None
            vector = vec_of.get(rec.item_id)
            known = catalog.row_of.get(rec.item_id)
            was_removed = known is not None and catalog.is_removed(known)
            row, is_new = catalog.upsert(rec.item_id, vector, category, rec.first_seen_ts)
            if is_new or was_removed or vector is not None:
                touched.add(row)
        final[row] = rec
    return {r for r in touched if not final[r].removed}, {r for r in touched if final[r].removed}


records = st.lists(
    st.builds(
        CatalogRecord,
        item_id=st.sampled_from(ITEMS),
        categories=st.lists(st.sampled_from(CATEGORIES), max_size=2).map(tuple),
        attributes=st.fixed_dictionaries({}, optional={"brand": st.sampled_from(["x", "y"])}),
        text=st.sampled_from(["", "red", "blue wool"]),
        first_seen_ts=st.integers(0, 10**13),
        updated_ts=st.integers(0, 10**13),
        removed=st.booleans(),
    ),
    max_size=25,
)


# Pages of one live record per item: the start-up read's shape, applied by a shorter path.
distinct_live = st.lists(
    st.builds(
        CatalogRecord,
        item_id=st.sampled_from(ITEMS),
        categories=st.lists(st.sampled_from(CATEGORIES), max_size=2).map(tuple),
        attributes=st.just({}),
        text=st.sampled_from(["", "red"]),
        first_seen_ts=st.integers(0, 10**13),
        updated_ts=st.integers(0, 10**13),
    ),
    unique_by=lambda r: r.item_id,
    max_size=len(ITEMS),
)


def state(catalog: ItemCatalog) -> dict[str, object]:
    n = catalog.size
    return {
        "ids": list(catalog.ids),
        "row_of": dict(catalog.row_of),
        "codes": dict(catalog.category_code),
        "vectors": catalog.vectors().tolist(),
        "unit": catalog._unit[:n].tolist(),
        "categories": catalog.table(0).categories.tolist(),
        "removed": [catalog.is_removed(r) for r in range(n)],
        "first_seen": np.nan_to_num(catalog._first_seen[:n], nan=-1.0).tolist(),
    }


@settings(max_examples=300, deadline=None)
@given(
    pages=st.lists(records | distinct_live, min_size=1, max_size=3),
    removed=st.lists(st.booleans(), min_size=3, max_size=3),
    seen=st.lists(st.sampled_from([np.nan, 5.0]), min_size=3, max_size=3),
)
def test_bulk_apply_equals_one_record_after_another(
    pages: list[list[CatalogRecord]], removed: list[bool], seen: list[float]
) -> None:
    bulk, reference = start_catalog(removed, seen), start_catalog(removed, seen)
    index = build_index(bulk)
    for page in pages:
        change = apply_records(bulk, page, None)
        live, gone = sequential_apply(reference, page)
        assert set(change.live.tolist()) == live
        assert set(change.gone.tolist()) == gone
        assert state(bulk) == state(reference)
        # The index holds each live row once (adds skip the upsert's removal).
        index = update_index(bulk, index, change)
        assert index is not None
        found, _ = index.search(np.ones((1, D), np.float32), 50)
        found_rows = [r for r in found[0].tolist() if r >= 0]
        assert len(found_rows) == len(set(found_rows))
        assert set(found_rows) == set(np.flatnonzero(~bulk.removed_rows(np.arange(bulk.size))))


def test_a_known_page_lands_as_expected() -> None:
    """Known answer: a new item, its removal and return, a first-seen time kept."""
    catalog = start_catalog([False, True, False], [np.nan, 5.0, 5.0])
    page = [
        CatalogRecord("n0", ("hats",), {}, "red", 100, 100),
        CatalogRecord("b1", ("shoes",), {}, "", 200, 200),  # back from removal
        CatalogRecord("n0", (), {}, "", 300, 300, removed=True),
        CatalogRecord("b0", ("bags",), {}, "", 400, 400),
        CatalogRecord("n0", ("bags",), {}, "blue wool", 500, 500),
    ]
    change = apply_records(catalog, page, None)
    assert catalog.ids == ["b0", "b1", "b2", "n0"]
    assert sorted(change.live.tolist()) == [1, 3] and change.gone.size == 0
    assert not catalog.removed_rows(np.arange(4)).any()
    assert catalog._first_seen[[0, 1, 3]].tolist() == [400.0, 5.0, 100.0]
    codes = catalog.category_code
    assert list(codes) == ["shoes", "bags", "hats"]  # hats met first in this page
    assert catalog.table(0).categories.tolist() == [codes["bags"], codes["shoes"], 1, 1]
    expected = content_vectors([page[-1]], None, D)[0]
    np.testing.assert_array_equal(catalog.vectors()[3], expected)
