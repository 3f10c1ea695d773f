"""Housekeeping prepared off the scoring lock and swapped in (copy-on-write).

The live recommender's timers change what the scorer holds: a new bundle (its catalog,
ANN index and the co-visitation table re-numbered for it), pages of the catalog log,
the trending list and the item counts. Done in place under the scoring lock, they held
scoring up for ~850 ms (a bundle swap at 100k items), 9-10 ms (a catalog page) and
7-8 ms (the popularity sync). Each is split in two here:

- ``prepare_*``: the costly part. It reads what the scorer holds and writes none of it,
  so the shell runs it in a worker thread while batches are scored.
- ``swap_*`` / ``write_chunk``: what the shell runs under the scoring lock. It swaps
  references in, or writes one bounded chunk, and changes nothing (returns False or
  None) when its preparation went stale because a bundle was swapped in meanwhile;
  the caller then prepares again from what is current.

A catalog page is written ``CATALOG_CHUNK`` records at a time, each chunk under its own
hold. A hold does work in proportion to its chunk alone: the catalog-sized work a page
may call for is done before, off the lock (the content vectors; the columns copied with
more room when the page's new items need it, ``ItemCatalog.grown``, adopted with the
first chunk), or after it (the records kept by item id, a dict that grows with the
catalog: scoring never reads it); the loop takes its turn between chunks. The ANN
index follows a step behind on a copy (``AnnIndex.copy``) that is swapped in whole. A
list is therefore always scored against a catalog that is a prefix of the log, every
record whole, and an index that is a prefix of that catalog: an item written but not
yet indexed is only not a candidate yet, and a removed item is never recommended,
since the catalog marks it (``ItemTable.removed``).

A chunk's new ids go into the small part of the catalog's id map (``inference.item_ids``);
the large part, which copied itself whole in a hold when it outgrew its room (0.9 ms at
87k ids, 28 ms at 1.4M), is never written in one: the shell folds the two off the lock
between chunks (``ItemCatalog.folded_ids``) and swaps the result in (``adopt_ids``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from inference.ann_index import AnnIndex
from inference.catalog_columns import Growth
from inference.covisit import CovisitTable
from inference.item_catalog import ItemCatalog, PopularityColumn
from streams.core.catalog import CatalogRecord
from streams.core.live_catalog import PreparedContent, apply_records, content_vectors, update_index
from streams.core.seen_rows import SeenRows

if TYPE_CHECKING:
    from streams.core.live_scorer import BundleParts, LiveScorer

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

# Records written per hold of the scoring lock. Measured on a 100k-item catalog with a
# bundle (bench/housekeeping_bench.py): ~1-3 µs a record once its content vector is
# prepared, so 256 records stay well under 1 ms.
CATALOG_CHUNK = 256


# --- trending and popularity -------------------------------------------------------
@dataclass(frozen=True)
class Trending:
    """The trending list as rows of ``catalog``, best first."""

    catalog: ItemCatalog
    rows: IntArray
    scores: FloatArray


def prepare_trending(catalog: ItemCatalog, top: Sequence[tuple[str, float]]) -> Trending:
    """Rows of the trending items (unknown ones skipped); reads ``catalog`` only."""
    rows = catalog.rows([item for item, _ in top])
    keep = rows >= 0
    return Trending(catalog, rows[keep], np.asarray([s for _, s in top], np.float32)[keep])


def swap_trending(scorer: LiveScorer, trending: Trending) -> bool:
    """Serve ``trending`` (two references); False if the catalog changed under it."""
    if trending.catalog is not scorer.catalog:
        return False
    scorer.trending_rows, scorer.trending_scores = trending.rows, trending.scores
    return True


@dataclass(frozen=True)
class Popularity:
    """Item counts as a new popularity column of ``catalog``
    (``ItemCatalog.popularity_column``)."""

    catalog: ItemCatalog
    column: PopularityColumn


def prepare_popularity(catalog: ItemCatalog, counts: Mapping[str, float]) -> Popularity:
    """The row of each counted item (the lookup per item is the cost) and the column
    with the counts written, as a copy; reads only."""
    return Popularity(catalog, catalog.popularity_column(*catalog.popularity_rows(counts)))


def swap_popularity(scorer: LiveScorer, popularity: Popularity) -> bool:
    """Serve the prepared column (one reference); False if the catalog or its counts
    changed since (prepare it again)."""
    if popularity.catalog is not scorer.catalog:
        return False
    return scorer.catalog.set_popularity_column(popularity.column)


# --- catalog pages and the index ---------------------------------------------------
@dataclass(frozen=True)
class CatalogPage:
    """A page of the catalog log, cut in chunks, with its new items' content vectors."""

    catalog: ItemCatalog
    chunks: list[Sequence[CatalogRecord]]
    content: PreparedContent
    growth: Growth | None = None  # the columns with room for the page's new items


def prepare_catalog(
    catalog: ItemCatalog,
    bundle: Any | None,
    records: Sequence[CatalogRecord],
    chunk: int | None = None,
) -> CatalogPage:
    """Cut ``records`` in chunks and compute the content vectors they will need.

    An item needs one when a chunk brings it live and neither the catalog nor an
    earlier chunk knows it (``apply_records`` takes the chunk's last live record). The
    content tower runs here, once for the page; the catalog is only read. ``chunk``:
    records per chunk (default ``CATALOG_CHUNK``).
    """
    size = chunk or CATALOG_CHUNK
    chunks = [records[lo : lo + size] for lo in range(0, len(records), size)]
    knows = catalog.knows
    earlier: set[str] = set()
    fresh: dict[str, CatalogRecord] = {}
    for part in chunks:
        for rec in part:
            if not rec.removed and rec.item_id not in earlier and not knows(rec.item_id):
                fresh[rec.item_id] = rec
        earlier.update(rec.item_id for rec in part)
    vectors = content_vectors(list(fresh.values()), bundle, catalog.dim)
    by_item = dict(zip(fresh, vectors, strict=True))
    new_rows = sum(1 for item in earlier if not knows(item))  # removed ones take rows too
    growth = catalog.grown(catalog.size + new_rows) if new_rows > catalog.room else None
    return CatalogPage(catalog, chunks, PreparedContent(bundle, by_item), growth)


def write_chunk(scorer: LiveScorer, page: CatalogPage, i: int) -> Any | None:
    """Write chunk ``i`` into the scorer's catalog (under the lock); returns the index
    change it calls for (``apply_records``), or None, writing nothing, if the catalog
    was swapped since or the page's growth went stale (prepare the rest again).

    The records go to ``scorer.records`` after the hold (``keep_records``).
    """
    if page.catalog is not scorer.catalog:
        return None
    if i == 0 and page.growth is not None and not scorer.catalog.adopt(page.growth):
        return None
    return apply_records(scorer.catalog, page.chunks[i], page.content)


def keep_records(scorer: LiveScorer, part: Sequence[CatalogRecord]) -> None:
    """Keep a written chunk's records by item id (what a bundle swap rebuilds from).

    Done right after the chunk's hold, not in it: the mapping grows with the catalog,
    and a dict that grows past its room copies itself whole (~1 ms at 90k records,
    measured in a hold); scoring never reads it.
    """
    records = scorer.records
    for rec in part:
        records[rec.item_id] = rec


@dataclass(frozen=True)
class IndexUpdate:
    """A copy of ``base`` with ``applied`` catalog changes made to it."""

    catalog: ItemCatalog
    base: AnnIndex | None
    index: AnnIndex | None
    applied: int


def prepare_index(
    catalog: ItemCatalog, base: AnnIndex | None, changes: Sequence[Any]
) -> IndexUpdate:
    """Apply ``changes`` (from ``write_chunk``, oldest first) to a copy of ``base``.

    Costs a copy of the index (~26 MB at 100k items of 64 floats) per call, paid only
    when the catalog changed what is searchable; the served index is left alone.
    """
    index = None if base is None else base.copy()
    for change in changes:
        index = update_index(catalog, index, change)
    return IndexUpdate(catalog, base, index, len(changes))


def swap_index(scorer: LiveScorer, update: IndexUpdate) -> bool:
    """Serve the updated index; False if the index or catalog changed since the copy."""
    if update.catalog is not scorer.catalog or update.base is not scorer.index:
        return False
    scorer.index = update.index
    return True


# --- a bundle swap ------------------------------------------------------------------
@dataclass(frozen=True)
class CovisitRemap:
    """The co-visitation table re-numbered for a new catalog.

    ``rows[r]`` is the new row of the old catalog's row ``r`` (-1: gone), for the rows
    the old catalog had when the table was re-numbered.
    """

    old_catalog: ItemCatalog
    rows: IntArray
    table: CovisitTable


def prepare_covisit(scorer: LiveScorer, catalog: ItemCatalog) -> CovisitRemap:
    """Re-number the (frozen) co-visitation table for ``catalog``; writes nothing.

    The table must be frozen first (``scorer.covisit_frozen``, set under the lock), so
    no scoring call adds to it while it is read here.
    """
    if not scorer.covisit_frozen:
        raise RuntimeError("freeze the co-visitation table before re-numbering it")
    old = scorer.catalog
    rows = catalog.rows(old.ids[: old.size])
    return CovisitRemap(old, rows, scorer.covisit.remap(rows, catalog.size))


def catch_up(
    catalog: ItemCatalog, index: AnnIndex | None, bundle: Any, late: Sequence[CatalogRecord]
) -> AnnIndex | None:
    """Apply records that came during a bundle load to its catalog, not yet served."""
    return update_index(catalog, index, apply_records(catalog, late, bundle))


def renumber_backlog(
    scorer: LiveScorer, remap: CovisitRemap, catalog: ItemCatalog
) -> tuple[int, list[tuple[Any, ...]]]:
    """The pairs learnt so far while frozen, re-numbered for ``catalog``; reads only.

    Returns how many backlog entries it covers and them re-numbered, so the swap under
    the lock re-numbers only the few that come after (``swap_bundle``).
    """
    taken = len(scorer.covisit_backlog)
    rows = _old_to_new(remap, catalog)  # after ``taken``: covers every row those use
    return taken, [_renumber(pairs, rows) for pairs in scorer.covisit_backlog[:taken]]


def swap_bundle(
    scorer: LiveScorer,
    bundle: Any,
    catalog: ItemCatalog,
    index: AnnIndex | None,
    remap: CovisitRemap,
    renumbered: tuple[int, list[tuple[Any, ...]]] = (0, []),
    parts: BundleParts | None = None,
) -> None:
    """Serve the prepared bundle (under the lock; costs what came since the preparation).

    Pairs learnt while the table was frozen are re-numbered for the new catalog (those
    ``renumbered`` already, off the lock, are taken as they are) and added at the next
    call. ``parts``: ``bundle_parts(bundle)``, built off the lock (else the first
    scoring call builds them, bound encoder run included).
    """
    if remap.old_catalog is not scorer.catalog:
        raise RuntimeError("the catalog changed under a bundle swap")
    taken, done = renumbered
    rest = scorer.covisit_backlog[taken:]
    if rest:
        rows = _old_to_new(remap, catalog)
        done = done + [_renumber(pairs, rows) for pairs in rest]
    scorer.covisit_backlog[:] = done
    # The kept seen rows go whole (the caller frees them after the hold): clearing them
    # here freed up to ``USERS_KEPT`` users' rows, 0.7-0.9 ms for 2,000 of them.
    scorer.seen_rows = SeenRows(scorer.seen_rows.capacity)
    scorer.install(bundle, catalog, index, covisit=remap.table, parts=parts)
    scorer.covisit_frozen = False


def _old_to_new(remap: CovisitRemap, catalog: ItemCatalog) -> IntArray:
    """Each old row's new row: as re-numbered, and the rows the old catalog took since."""
    old = remap.old_catalog
    later = catalog.rows(old.ids[remap.rows.size : old.size])
    return np.concatenate([remap.rows, later])


def _renumber(pairs: tuple[Any, ...], rows: IntArray) -> tuple[Any, ...]:
    """``(src, dst, weight, *rest)`` with src and dst in new rows; pairs with a gone item
    are dropped."""
    src, dst, weight = (np.asarray(a) for a in pairs[:3])
    new_src = np.where(src < rows.size, rows[np.minimum(src, rows.size - 1)], -1)
    new_dst = np.where(dst < rows.size, rows[np.minimum(dst, rows.size - 1)], -1)
    keep = (new_src >= 0) & (new_dst >= 0)
    return (new_src[keep], new_dst[keep], weight[keep], *pairs[3:])
