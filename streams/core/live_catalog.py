"""Catalog records into a worker's item table and ANN index (pure, no I/O).

The live recommender applies each page of the catalog log with ``apply_records`` and
then ``update_index``; a bundle swap builds a fresh table and ``build_index`` over it.
Only records that change what is searchable touch the index, so replaying a large
catalog whose items the bundle already holds costs no index work.

A page is applied in one columnar pass: the records are reduced to one entry per item
(its first and last record, its last live record) with dict passes, and every column of
the item table is then written with one numpy assignment. The result is the same as
applying the records one after another (``tests/streams/test_live_catalog_bulk.py``
holds that sequential reference), at a fraction of the per-record cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from inference.ann_index import AnnIndex
from inference.ann_store import INDEX_DIR, build_or_load
from inference.content_vectors import catalog_content_vectors
from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogRecord

RowArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class IndexChange:
    """Rows the ANN index must (re)add, and rows it must drop, after a page."""

    live: RowArray
    gone: RowArray


def build_index(catalog: ItemCatalog, folder: Path | None = None) -> AnnIndex | None:
    """An index over every row of ``catalog`` (ids are rows); None for an empty one.

    With ``folder`` an index saved there for these very vectors is read instead of
    built, and a built one is saved there (``inference.ann_store``). Removed items are
    taken out after, so the saved index depends on the vectors alone.
    """
    if catalog.size == 0:
        return None
    index = build_or_load(catalog.vectors(), folder)
    gone = np.flatnonzero(catalog.removed_rows(np.arange(catalog.size)))
    if gone.size:
        index.remove(gone)
    return index


def bundle_catalog(bundle: Any, spare: int | None = None) -> ItemCatalog:
    """The catalog of ``bundle``'s items alone (rows in the bundle's order); ``spare``:
    rows held for the items to come (``ItemCatalog``'s default: a quarter more)."""
    return ItemCatalog(
        bundle.item_ids,
        bundle.item_vectors,
        popularity=np.asarray(bundle.item_popularity, np.float32),
        spare=spare,
    )


def index_over(catalog: ItemCatalog, bundle_rows: int, folder: Path | None) -> AnnIndex | None:
    """An index over ``catalog`` whose first ``bundle_rows`` rows are a bundle's items.

    The bundle's index (read from ``folder`` when saved there for those vectors), with
    the live rows after them added and removed rows taken out: what ``build_index`` on
    the bundle's items and then ``update_index`` for each later record leave.
    """
    if bundle_rows == 0 or bundle_rows == catalog.size:
        return build_index(catalog, folder if bundle_rows else None)
    index = build_or_load(catalog.vectors()[:bundle_rows], folder)
    removed = catalog.removed_rows(np.arange(catalog.size))
    later = np.arange(bundle_rows, catalog.size)
    live = later[~removed[bundle_rows:]]
    if live.size:
        index.add(live, catalog.vectors()[live])
    gone = np.flatnonzero(removed[:bundle_rows])
    if gone.size:
        index.remove(gone)
    return index


def bundle_index_folder(bundle: Any | None) -> Path | None:
    """Where a bundle's saved ANN indexes live (None: a bundle not read from disk)."""
    path = getattr(getattr(bundle, "data", None), "path", None)
    return None if path is None else Path(path) / INDEX_DIR


def apply_records(
    catalog: ItemCatalog, records: Sequence[CatalogRecord], bundle: Any | None
) -> IndexChange:
    """Upsert/remove records into ``catalog``; new items get content-only vectors.

    Returns the rows whose searchable state changed: a new row, a new vector, an item
    back from removal, or a removal. For each item the last record decides whether it
    is removed; an item new to the catalog takes the content vector of its last live
    record and the first-seen time of its first record.
    """
    if not records:
        return IndexChange(np.zeros(0, np.int64), np.zeros(0, np.int64))
    ids = [r.item_id for r in records]
    last = {item: i for i, item in enumerate(ids)}  # keys in first-seen order
    if len(last) == len(ids) and not any(r.removed for r in records):
        return _apply_distinct_upserts(catalog, records, ids, bundle)
    first = {item: i for i, item in reversed(list(enumerate(ids)))}
    last_live = {r.item_id: i for i, r in enumerate(records) if not r.removed}
    items = list(last)
    before = catalog.rows(items)
    unknown = before < 0
    known_removed = np.zeros(len(items), bool)
    known_removed[~unknown] = catalog.removed_rows(before[~unknown])
    rows = before.copy()
    rows[unknown] = catalog.append([item for item, u in zip(items, unknown, strict=True) if u])

    fresh = [i for i, item in enumerate(items) if unknown[i] and item in last_live]
    if fresh:
        fresh_records = [records[last_live[items[i]]] for i in fresh]
        fresh_rows = rows[fresh]
        catalog.write(fresh_rows, vectors=content_vectors(fresh_records, bundle, catalog.dim))

    # Category codes are handed out in record order, as one upsert after another would.
    named = [r.categories[0] for r in records if not r.removed and r.categories]
    catalog.register_categories(named)
    last_category = {r.item_id: r.categories[0] for r in records if not r.removed and r.categories}
    # An item new here is first seen at its first record (an upsert, or the row a
    # removal of an unknown item makes); a known row without a time takes its first
    # live record's.
    first_live = {r.item_id: r for r in reversed(records) if not r.removed}
    seen = np.fromiter(
        (
            records[first[item]].first_seen_ts
            if unknown[i]
            else (first_live[item].first_seen_ts if item in first_live else np.nan)
            for i, item in enumerate(items)
        ),
        np.float64,
        len(items),
    )
    removed = np.fromiter((records[last[item]].removed for item in items), bool, len(items))
    catalog.write(
        rows,
        categories=[last_category.get(item) for item in items],
        first_seen_ms=seen,
        removed=removed,
    )
    removals = {r.item_id for r in records if r.removed}
    any_removal = np.fromiter((item in removals for item in items), bool, len(items))
    touched = unknown | any_removal | known_removed
    return IndexChange(rows[touched & ~removed], rows[touched & removed])


def _apply_distinct_upserts(
    catalog: ItemCatalog, records: Sequence[CatalogRecord], ids: list[str], bundle: Any | None
) -> IndexChange:
    """``apply_records`` for a page of one live record per item (a catalog read at
    start-up, a bulk load): each record is its item's first and last, so every column
    comes straight from the records, in half the passes."""
    n = len(records)
    rows = catalog.rows(ids)
    unknown = rows < 0
    known_removed = np.zeros(n, bool)
    known_removed[~unknown] = catalog.removed_rows(rows[~unknown])
    if unknown.any():
        new = np.flatnonzero(unknown)
        rows[new] = catalog.append([ids[i] for i in new.tolist()])
        vectors = content_vectors([records[i] for i in new.tolist()], bundle, catalog.dim)
        catalog.write(rows[new], vectors=vectors)
    categories = [r.categories[0] if r.categories else None for r in records]
    catalog.register_categories(c for c in categories if c is not None)
    seen = np.fromiter((r.first_seen_ts for r in records), np.float64, n)
    catalog.write(rows, categories=categories, first_seen_ms=seen, removed=np.zeros(n, bool))
    return IndexChange(rows[unknown | known_removed], np.zeros(0, np.int64))


def update_index(
    catalog: ItemCatalog, index: AnnIndex | None, change: IndexChange
) -> AnnIndex | None:
    """Add or remove the rows whose searchable state changed (from ``apply_records``).

    An upsert of an item already searchable with the same vector (a bundle item's
    catalog record, say) changes nothing there and costs nothing.
    """
    if index is None or index.size == 0:
        return build_index(catalog)
    if change.live.size:
        live = np.sort(change.live)
        index.add(live, catalog.vectors()[live])
    if change.gone.size:
        index.remove(np.sort(change.gone))
    return index


class PreparedContent(NamedTuple):
    """Content vectors computed ahead, by item id, and the bundle that computed them.

    ``apply_records`` takes it in place of the bundle: the content tower (the costly
    part of a page of new items) then runs off the scoring lock, before the records are
    written (``streams.core.copy_on_write``). An item it lacks is computed as usual.
    """

    bundle: Any | None
    vectors: Mapping[str, np.ndarray]


def content_vectors(records: Sequence[CatalogRecord], bundle: Any | None, dim: int) -> np.ndarray:
    """Vectors from content alone: the bundle's content tower, or hashed features."""
    if not records:
        return np.zeros((0, dim), np.float32)
    if isinstance(bundle, PreparedContent):
        ready = bundle.vectors
        if all(r.item_id in ready for r in records):
            return np.stack([ready[r.item_id] for r in records]).astype(np.float32, copy=False)
        bundle = bundle.bundle
    items = [(r.categories, r.attributes, r.text) for r in records]
    if bundle is not None:
        return np.asarray(bundle.embed_catalog(items), np.float32)
    return catalog_content_vectors(items, dim)
