"""The online catalog: the bundle's items plus items announced since, as growable arrays.

Pure state (no I/O). The worker applies catalog records to it and takes ``ItemTable``
snapshots for scoring; rows never move, so ANN ids stay valid as items are added.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from numba import njit

from inference.candidates import ItemTable
from inference.catalog_columns import COLUMNS, GROWTH_REDO_MAX, Growth, widened, zeroed
from inference.item_ids import FoldedIds, IdMap
from inference.list_metrics import HEAD_MASS, popularity_head, unit_rows

FloatArray = npt.NDArray[np.float32]
PopularityColumn = tuple[FloatArray, int, FloatArray, npt.NDArray[np.int64]]
"""``ItemCatalog.popularity_column``: the column copied from, its counts' version, the
new column and the rows it changed."""

UNIT_CHUNK = 8192  # rows normalised at a time (2 MiB of vectors at dim 64)


def _copy_with_units(src: FloatArray, vectors: FloatArray, units: FloatArray) -> None:
    """``vectors[:n] = src`` and ``units[:n] = unit_rows(src)``, a chunk of rows at a time.

    The same numpy arithmetic row for row as ``unit_rows`` on the whole (each row's norm
    is its own reduction), with no full-size temporaries: a chunk is read once while in
    cache, and nothing but the two columns is written. ``units`` must be zero (zero rows
    stay zero).
    """
    for lo in range(0, src.shape[0], UNIT_CHUNK):
        part = src[lo : lo + UNIT_CHUNK]
        hi = lo + part.shape[0]
        vectors[lo:hi] = part
        norms = np.linalg.norm(vectors[lo:hi], axis=-1, keepdims=True)
        np.divide(vectors[lo:hi], norms, out=units[lo:hi], where=norms > 0)


@njit(cache=True, nogil=True)
def _ages(first_seen_ms: np.ndarray, now_ms: np.float64) -> np.ndarray:
    """Seconds since each first-seen time as float32, at least 0; inf where unknown.

    One pass for what was four numpy ones (``np.where(isnan(first), inf, (now - first)
    / 1000).astype(float32)``, then ``np.maximum(.., 0)``): the same float64 difference
    and quotient, rounded once to float32.
    """
    out = np.empty(first_seen_ms.shape[0], np.float32)
    zero = np.float32(0.0)
    for i in range(first_seen_ms.shape[0]):
        first = first_seen_ms[i]
        age = np.float32((now_ms - first) / 1000.0)
        out[i] = np.inf if first != first else (age if age > zero else zero)  # -0.0 too
    return out


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first snapshot needs it."""
    _ages(np.zeros(1), np.float64(0.0))


class ItemCatalog:
    """Item rows, vectors, categories, first-seen times, popularity and removals."""

    def __init__(
        self,
        ids: Sequence[str],
        vectors: npt.ArrayLike,
        categories: Sequence[str | None] | None = None,
        popularity: npt.ArrayLike | None = None,
        first_seen_ms: npt.ArrayLike | None = None,
        *,
        spare: int | None = None,
    ) -> None:
        """``spare``: rows held free for items added later (default a quarter more)."""
        vecs = np.asarray(vectors, dtype=np.float32)
        n = len(ids)
        if vecs.shape[0] != n:
            raise ValueError(f"{vecs.shape[0]} vectors for {n} ids")
        self.dim = int(vecs.shape[1])
        self._cap = n + max(16, n // 4 if spare is None else spare)
        self._vectors = zeroed((self._cap, self.dim), np.float32)
        self._unit = zeroed((self._cap, self.dim), np.float32)
        _copy_with_units(vecs, self._vectors, self._unit)
        self._category = np.full(self._cap, -1, np.int64)
        self._popularity = zeroed((self._cap,), np.float32)
        self._first_seen = np.full(self._cap, np.nan, np.float64)
        self._removed = zeroed((self._cap,), np.bool_)
        self.ids: list[str] = list(ids)
        self._rows = IdMap(self.ids)
        self.category_code: dict[str, int] = {}
        if categories is not None:
            self._category[:n] = self._codes(categories)
        if popularity is not None:
            self._popularity[:n] = np.asarray(popularity, dtype=np.float32)
        if first_seen_ms is not None:
            self._first_seen[:n] = np.asarray(first_seen_ms, dtype=np.float64)
        self.version = 0
        self._table: ItemTable | None = None
        self._table_key: tuple[int, int, int] | None = None
        # Parts of a table snapshot kept between snapshots: rebuilding them for 100k
        # items costs tens of ms, and the catalog changes every few hundred ms.
        self._ids_array = np.asarray(self.ids, dtype=np.str_)
        self._popularity_version = 0
        self._head: tuple[int, npt.NDArray[np.bool_]] | None = None
        self._journal: list[tuple[tuple[str, ...], npt.NDArray[np.int64]]] | None = None
        self._growth_cap = 0  # the capacity of the growth under way (``_journal`` set)

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def row_of(self) -> Mapping[str, int]:
        """Each item's row (a read-only view; ``id_map`` for a dict of its own)."""
        return self._rows.view()

    def id_map(self) -> dict[str, int]:
        return self._rows.as_dict()

    def knows(self, item_id: str) -> bool:
        return item_id in self._rows

    @property
    def ids_due(self) -> bool:
        """Whether the id map is due a fold (``folded_ids`` off the lock, then
        ``adopt_ids`` under it): see ``inference.item_ids``."""
        return self._rows.due

    def folded_ids(self) -> FoldedIds:
        return self._rows.fold()

    def adopt_ids(self, folded: FoldedIds) -> bool:
        return self._rows.adopt(folded)

    def _code(self, category: str | None) -> int:
        if not category:
            return -1
        return self.category_code.setdefault(category, len(self.category_code))

    def _codes(self, categories: Sequence[str | None]) -> npt.NDArray[np.int64]:
        """The code of each category (-1: none), new names coded in order of appearance."""
        self.register_categories(categories)
        code_of: dict[str | None, int] = {None: -1, "": -1}
        code_of.update(self.category_code)
        return np.fromiter(map(code_of.__getitem__, categories), np.int64, len(categories))

    def register_categories(self, categories: Iterable[str | None]) -> None:
        """Give codes to new category names, in the order given (as ``upsert`` would)."""
        for category in dict.fromkeys(categories):
            self._code(category)

    def _grow(self, need: int = 0) -> None:
        """Capacity for at least half as many rows again, and for ``need`` if that is more."""
        self._cap = max(self._cap + self._cap // 2, need)
        for name in COLUMNS:
            setattr(self, name, widened(getattr(self, name), self._cap, name))

    @property
    def room(self) -> int:
        """Rows that can be appended before the columns must grow."""
        return self._cap - self.size

    def grown(self, need: int) -> Growth:
        """The columns copied with room for ``need`` rows; this catalog is only read.

        The copy is the catalog-sized work of a growth, done off the scoring lock (numpy
        copies release the GIL); ``adopt`` then swaps the copies in. Rows written while
        it copies (vectors placed while serving, counts set in place) are noted and
        copied again there. A popularity column swapped in meanwhile is not: it comes
        with the growth's room (``popularity_column``) and ``adopt`` serves it as it is.
        """
        journal: list[tuple[tuple[str, ...], npt.NDArray[np.int64]]] = []
        cap = max(self._cap + self._cap // 2, need)
        self._growth_cap = cap  # before the journal: whoever sees one sees its room
        self._journal = journal  # before the copy: a write during it is noted
        columns = {name: widened(getattr(self, name), cap, name) for name in COLUMNS}
        return Growth(cap, columns, journal)

    def adopt(self, growth: Growth) -> bool:
        """Serve ``growth``'s columns: swaps references and copies again the rows written
        since its copy began (at most ``GROWTH_REDO_MAX``). False, changing nothing, if
        more were, if a later ``grown`` replaced it, or if the rows outgrew it."""
        if growth.journal is not self._journal or growth.capacity < self.size:
            return False
        self._journal = None
        # A popularity column with the growth's room is the newest counts: kept.
        keep = {"_popularity"} if self._popularity.shape[0] >= growth.capacity else set()
        for names, rows in growth.journal:
            for name in names:
                if name not in keep:
                    growth.columns[name][rows] = getattr(self, name)[rows]
        for name, column in growth.columns.items():
            if name not in keep:
                setattr(self, name, column)
        self._cap = growth.capacity
        self._table = None  # its views are of the old columns
        self.version += 1
        return True

    def _note(self, names: tuple[str, ...], rows: npt.NDArray[np.int64]) -> None:
        """Note rows written while a growth is copied (``grown``); past
        ``GROWTH_REDO_MAX`` rows the growth is dropped (``adopt`` refuses it)."""
        if self._journal is not None:
            self._journal.append((names, np.array(rows, np.int64).ravel()))
            if sum(r.size for _, r in self._journal) > GROWTH_REDO_MAX:
                self._journal = None

    def upsert(
        self, item_id: str, vector: npt.ArrayLike | None, category: str | None, first_seen_ms: int
    ) -> tuple[int, bool]:
        """Add or update an item; returns its row and whether the row is new."""
        row = self._rows.get(item_id)
        is_new = row is None
        if row is None:
            if self.size >= self._cap:
                self._grow()
            row = self.size
            self.ids.append(item_id)
            self._rows.add((item_id,), row)
        if vector is not None:
            self._vectors[row] = np.asarray(vector, dtype=np.float32)
            self._unit[row] = unit_rows(self._vectors[row : row + 1])[0]
        if category is not None:
            self._category[row] = self._code(category)
        if np.isnan(self._first_seen[row]):
            self._first_seen[row] = first_seen_ms
        self._removed[row] = False
        self.version += 1
        return row, is_new

    def append(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """New rows for ids not in the catalog (the caller checks); returns their rows.

        The rows start as a removed-free, zero-vector, uncategorised item with no
        first-seen time; ``write`` fills them in.
        """
        start = self.size
        if start + len(item_ids) > self._cap:
            self._grow(start + len(item_ids))
        self.ids.extend(item_ids)
        self._rows.add(item_ids, start)
        self.version += 1
        return np.arange(start, self.size, dtype=np.int64)

    def write(
        self,
        rows: npt.NDArray[np.int64],
        *,
        vectors: npt.ArrayLike | None = None,
        categories: Sequence[str | None] | None = None,
        first_seen_ms: npt.ArrayLike | None = None,
        removed: npt.ArrayLike | None = None,
    ) -> None:
        """Set columns of many rows at once (one numpy assignment per column).

        ``categories``: a code for each (None: keep the row's); ``first_seen_ms`` lands
        only on rows that have none yet, as in ``upsert``.
        """
        if vectors is not None:
            vecs = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
            self._vectors[rows] = vecs
            self._unit[rows] = unit_rows(vecs)
        if categories is not None:
            code_of = {c: self._code(c) for c in dict.fromkeys(categories) if c is not None}
            named = [i for i, c in enumerate(categories) if c is not None]
            codes = [code_of[c] for c in categories if c is not None]
            self._category[rows[named]] = np.asarray(codes, np.int64)
        if first_seen_ms is not None:
            unset = np.isnan(self._first_seen[rows])
            self._first_seen[rows[unset]] = np.asarray(first_seen_ms, np.float64)[unset]
        if removed is not None:
            self._removed[rows] = np.asarray(removed, bool)
        self.version += 1

    def place_vectors(self, rows: npt.NDArray[np.int64], vectors: npt.ArrayLike) -> None:
        """Replace the vectors of ``rows`` in place, keeping the cached table snapshot.

        For vectors learnt while serving (``inference.covisit_vectors``): a snapshot
        holds views of the vector columns, so it sees them, and nothing else in it
        changes; a new snapshot would cost O(catalog) on every scored batch.
        """
        vecs = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self._vectors[rows] = vecs
        self._unit[rows] = unit_rows(vecs)
        self._note(("_vectors", "_unit"), rows)

    def remove(self, item_id: str) -> int | None:
        """Mark an item removed (never recommended again); returns its row if known."""
        row = self._rows.get(item_id)
        if row is not None and not self._removed[row]:
            self._removed[row] = True
            self.version += 1
        return row

    def is_removed(self, row: int) -> bool:
        return bool(self._removed[row])

    def removed_rows(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Whether each of ``rows`` is removed."""
        return self._removed[rows].copy()

    def set_popularity(self, counts: Mapping[str, float]) -> None:
        """Replace interaction counts of the items named (others keep theirs)."""
        self.set_popularity_rows(*self.popularity_rows(counts))

    def popularity_rows(
        self, counts: Mapping[str, float]
    ) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """The rows of the items named (-1: unknown) and their counts; reads only.

        Rows never move, so the pair stays valid for ``set_popularity_rows`` while rows
        are appended: the costly part (a lookup per item) can run off the scoring lock.
        """
        return self._rows.rows(list(counts)), np.fromiter(counts.values(), np.float32, len(counts))

    def popularity_column(
        self, rows: npt.NDArray[np.int64], values: FloatArray
    ) -> PopularityColumn:
        """The popularity column with ``rows`` set to ``values`` (-1 rows skipped), as a
        copy, and what ``set_popularity_column`` checks it against; reads only.

        The copy and the assignment (one per counted item: ~3 ms at 1M) run off the
        scoring lock; swapping the column in is then one reference. While a growth of
        the columns is under way (``grown``) the copy has its room, so the growth serves
        it as it is rather than copying its rows again (they are every counted item).
        """
        base, version = self._popularity, self._popularity_version
        cap = base.shape[0]
        if self._journal is not None:
            cap = max(cap, self._growth_cap)
        column, known = zeroed((cap,), base.dtype), rows[rows >= 0]
        column[: base.shape[0]] = base
        column[known] = values[rows >= 0]
        return base, version, column, known

    def set_popularity_column(self, prepared: PopularityColumn) -> bool:
        """Serve a ``popularity_column``; False, changing nothing, if the counts or the
        column changed since it was copied, or if a growth began since and the column
        lacks its room (prepare it again: it then has it, and the growth keeps it)."""
        base, version, column, rows = prepared
        if base is not self._popularity or version != self._popularity_version:
            return False
        if not rows.size:  # nothing changes: the snapshot stays valid
            return True
        if self._journal is not None and column.shape[0] < self._growth_cap:
            return False
        self._popularity = column
        self._popularity_version += 1
        return True

    def set_popularity_rows(self, rows: npt.NDArray[np.int64], values: FloatArray) -> None:
        """Replace the counts of ``rows`` (from ``popularity_rows``; -1 rows are skipped)."""
        known = rows >= 0
        if not known.any():  # nothing to change: the snapshot stays valid
            return
        self._popularity[rows[known]] = values[known]
        self._note(("_popularity",), rows[known])
        self._popularity_version += 1  # only the popularity columns change

    def vectors(self) -> FloatArray:
        return self._vectors[: self.size]

    def columns(self) -> dict[str, npt.NDArray[np.generic]]:
        """Copies of the per-row columns a catalog image keeps (``restore_columns``):
        category codes, category names in code order, first-seen times, removals."""
        n = self.size
        return {
            "category": self._category[:n].copy(),
            "category_names": np.asarray(list(self.category_code), dtype=np.str_),
            "first_seen": self._first_seen[:n].copy(),
            "removed": self._removed[:n].copy(),
        }

    def restore_columns(self, columns: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Set every row's columns from ``columns()`` of a catalog with these rows."""
        n = self.size
        if columns["category"].shape[0] != n:
            raise ValueError(f"columns of {columns['category'].shape[0]} rows for {n}")
        self.category_code = {str(c): i for i, c in enumerate(columns["category_names"])}
        self._category[:n] = columns["category"]
        self._first_seen[:n] = columns["first_seen"]
        self._removed[:n] = columns["removed"]
        self.version += 1

    def rows(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Rows of the given ids, -1 for unknown ones."""
        return self._rows.rows(item_ids)

    def table(self, now_ms: int, *, age_resolution_ms: int = 60_000) -> ItemTable:
        """An ``ItemTable`` snapshot; cached until the catalog changes or a minute passes.

        A popularity sync alone rebuilds only the popularity columns (counts and head):
        ages and removals are kept from the last snapshot of the same rows and minute.
        """
        rows_key = (self.version, now_ms // age_resolution_ms)
        key = (*rows_key, self._popularity_version)
        if self._table is not None and self._table_key == key:
            return self._table
        n = self.size
        if (
            self._table is not None
            and self._table_key is not None
            and self._table_key[:2] == rows_key
        ):
            age, removed = self._table.age_s, self._table.removed
        else:
            age = _ages(self._first_seen[:n], np.float64(now_ms))
            removed = self._removed[:n].copy()
        if self._ids_array.size != n:  # rows only ever append
            new = np.asarray(self.ids[self._ids_array.size :], dtype=np.str_)
            self._ids_array = np.concatenate([self._ids_array, new])
        head_key = self._popularity_version * (1 << 32) + n
        if self._head is None or self._head[0] != head_key:
            self._head = (head_key, popularity_head(self._popularity[:n], HEAD_MASS))
        self._table = ItemTable(
            vectors=self._vectors[:n],
            ids=self._ids_array,
            categories=self._category[:n],
            popularity=self._popularity[:n].copy(),
            age_s=age,
            removed=removed,
            known_unit=self._unit[:n],
            known_head=self._head[1],
        )
        self._table_key = key
        return self._table
