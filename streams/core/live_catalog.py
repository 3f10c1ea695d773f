"""Catalog records into a worker's item table and ANN index (pure, no I/O).

The live recommender applies each page of the catalog log with ``apply_records`` and
then ``update_index``; a bundle swap builds a fresh table and ``build_index`` over it.
Only records that change what is searchable touch the index, so replaying a large
catalog whose items the bundle already holds costs no index work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from inference.ann_index import AnnIndex
from inference.content_vectors import catalog_content_vectors
from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogRecord


def build_index(catalog: ItemCatalog) -> AnnIndex | None:
    """An index over every row of ``catalog`` (ids are rows); None for an empty one."""
    if catalog.size == 0:
        return None
    return AnnIndex.build(catalog.vectors(), np.arange(catalog.size, dtype=np.int64))


def apply_records(
    catalog: ItemCatalog, records: Sequence[CatalogRecord], bundle: Any | None
) -> list[tuple[int, bool]]:
    """Upsert/remove records into ``catalog``; new items get content-only vectors.

    Returns each record's row and whether the ANN index must change for it: a new row,
    a new vector, an item back from removal, or a removal.
    """
    rows: list[tuple[int, bool]] = []
    fresh = [r for r in records if not r.removed and r.item_id not in catalog.row_of]
    vectors = content_vectors(fresh, bundle, catalog.dim)
    vec_of = {r.item_id: vectors[i] for i, r in enumerate(fresh)}
    for rec in records:
        if rec.removed:
            row = catalog.remove(rec.item_id)
            if row is None:
                row, _ = catalog.upsert(rec.item_id, None, None, rec.first_seen_ts)
                catalog.remove(rec.item_id)
            rows.append((row, True))
        else:
            category = rec.categories[0] if rec.categories else None
            vector = vec_of.get(rec.item_id)
            known = catalog.row_of.get(rec.item_id)
            was_removed = known is not None and catalog.is_removed(known)
            row, is_new = catalog.upsert(rec.item_id, vector, category, rec.first_seen_ts)
            rows.append((row, is_new or was_removed or vector is not None))
    return rows


def update_index(
    catalog: ItemCatalog,
    index: AnnIndex | None,
    rows: list[tuple[int, bool]],
    records: Sequence[CatalogRecord],
) -> AnnIndex | None:
    """Add or remove the rows whose searchable state changed; the last change wins.

    ``rows`` pairs each record's row with whether the index must hear of it (from
    ``apply_records``): an upsert of an item already searchable with the same vector (a
    bundle item's catalog record, say) changes nothing there and costs nothing.
    """
    if index is None or index.size == 0:
        return build_index(catalog)
    final = {row: rec for (row, _), rec in zip(rows, records, strict=True)}
    touched = {row for row, changed in rows if changed}
    live = sorted(r for r in touched if not final[r].removed)
    gone = sorted(r for r in touched if final[r].removed)
    if live:
        ids = np.asarray(live, np.int64)
        index.add(ids, catalog.vectors()[ids])
    if gone:
        index.remove(np.asarray(gone, np.int64))
    return index


def content_vectors(records: Sequence[CatalogRecord], bundle: Any | None, dim: int) -> np.ndarray:
    """Vectors from content alone: the bundle's content tower, or hashed features."""
    if not records:
        return np.zeros((0, dim), np.float32)
    items = [(r.categories, r.attributes, r.text) for r in records]
    if bundle is not None:
        return np.asarray(bundle.embed_catalog(items), np.float32)
    return catalog_content_vectors(items, dim)
