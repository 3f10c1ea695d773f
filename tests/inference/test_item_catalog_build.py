"""Building the online catalog: the chunked, small-page construction gives exactly what
the plain one did (rows, codes, unit vectors, popularity, first-seen), and growth on
demand keeps every row where it was."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference import item_catalog
from inference.item_catalog import ItemCatalog
from inference.list_metrics import unit_rows

D = 8


def _reference(
    ids: list[str],
    vectors: npt.NDArray[np.float32],
    categories: list[str | None] | None,
    popularity: npt.NDArray[Any] | None,
    first_seen: npt.NDArray[Any] | None,
) -> dict[str, Any]:
    """The columns as the constructor built them before (whole-array ``unit_rows``, one
    category at a time, the id map by enumeration)."""
    n = len(ids)
    code_of: dict[str, int] = {}
    codes = np.full(n, -1, np.int64)
    for row, cat in enumerate(categories or []):
        if cat:
            codes[row] = code_of.setdefault(cat, len(code_of))
    return {
        "vectors": vectors,
        "unit": unit_rows(vectors),
        "category": codes,
        "category_code": code_of,
        "popularity": np.zeros(n, np.float32)
        if popularity is None
        else np.asarray(popularity, np.float32),
        "first_seen": np.full(n, np.nan) if first_seen is None else np.asarray(first_seen, float),
        "row_of": {item: row for row, item in enumerate(ids)},
    }


def _assert_like(cat: ItemCatalog, want: dict[str, Any]) -> None:
    n = cat.size
    np.testing.assert_array_equal(cat.vectors(), want["vectors"])
    # Bit for bit: the re-rank's similarities (and its ties) read these rows.
    assert cat._unit[:n].tobytes() == want["unit"].tobytes()
    np.testing.assert_array_equal(cat._category[:n], want["category"])
    assert cat.category_code == want["category_code"]
    assert list(cat.category_code.values()) == list(range(len(cat.category_code)))
    np.testing.assert_array_equal(cat._popularity[:n], want["popularity"])
    np.testing.assert_array_equal(cat._first_seen[:n], want["first_seen"])
    assert not cat._removed[:n].any()
    assert cat.row_of == want["row_of"]


def _mapped(array: npt.NDArray[Any]) -> bool:
    """Whether ``array``'s memory is an anonymous mapping (not numpy's allocator)."""
    base: Any = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


names = st.one_of(st.none(), st.just(""), st.sampled_from(["a", "b", "c", "dé", "e"]))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    seed=st.integers(0, 2**16),
    zero_rows=st.integers(0, 5),
    cats=st.lists(names, min_size=40, max_size=40) | st.none(),
    with_counts=st.booleans(),
)
def test_construction_matches_the_plain_one(
    n: int, seed: int, zero_rows: int, cats: list[str | None] | None, with_counts: bool
) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"i{r}" for r in range(n)]
    vectors = (rng.standard_normal((n, D)) * rng.uniform(1e-3, 1e3)).astype(np.float32)
    vectors[: min(zero_rows, n)] = 0.0  # zero rows stay zero in the unit column
    categories = None if cats is None else cats[:n]
    popularity = rng.integers(0, 50, n) if with_counts else None
    first_seen = rng.integers(0, 10**12, n) if with_counts else None
    cat = ItemCatalog(ids, vectors, categories, popularity, first_seen)
    _assert_like(cat, _reference(ids, vectors, categories, popularity, first_seen))


def test_unit_rows_match_across_chunks_on_small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many chunks, and columns large enough to sit on an anonymous mapping."""
    monkeypatch.setattr(item_catalog, "UNIT_CHUNK", 1000)
    rng = np.random.default_rng(7)
    n, dim = 20_000, 64  # 5 MiB a column: past SMALL_PAGES_FROM
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors[::997] = 0.0
    ids = [f"x{r}" for r in range(n)]
    cat = ItemCatalog(ids, vectors)
    assert _mapped(cat._vectors) and _mapped(cat._unit)
    _assert_like(cat, _reference(ids, vectors, None, None, None))
    assert cat._cap == n + n // 4
    assert not cat._vectors[n:].any() and not cat._unit[n:].any()


def test_a_read_only_memory_mapped_source(tmp_path: Any) -> None:
    """The bundle's vectors come memory-mapped and read-only."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, D)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    ids = [f"m{r}" for r in range(300)]
    cat = ItemCatalog(ids, mapped)
    _assert_like(cat, _reference(ids, vectors, None, None, None))
    cat.place_vectors(np.array([0]), np.ones((1, D)))  # the copies are the catalog's own
    assert mapped[0, 0] == vectors[0, 0]


@pytest.mark.parametrize("spare", [0, 3])
def test_growth_on_demand_keeps_every_row(spare: int) -> None:
    rng = np.random.default_rng(11)
    n = 20
    vectors = rng.standard_normal((n, D)).astype(np.float32)
    cat = ItemCatalog(
        [f"i{r}" for r in range(n)],
        vectors,
        categories=[f"c{r % 4}" for r in range(n)],
        popularity=np.arange(n),
        first_seen_ms=np.arange(n) * 10,
        spare=spare,
    )
    assert cat._cap == n + max(16, spare)
    before = {k: getattr(cat, k)[:n].copy() for k in ("_vectors", "_unit", "_category")}
    added = 0
    for batch in (10, 1, 40):  # past the first capacity, then again past the grown one
        new = [f"n{added + j}" for j in range(batch)]
        rows = cat.append(new)
        np.testing.assert_array_equal(rows, np.arange(n + added, n + added + batch))
        added += batch
    assert cat.size == n + 51 and cat._cap >= cat.size
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(cat, k)[:n], v)
    np.testing.assert_array_equal(cat._popularity[:n], np.arange(n))
    tail = slice(n, cat._cap)  # appended and spare rows: no vector, category or time
    assert not cat._vectors[tail].any() and not cat._unit[tail].any()
    assert (cat._category[tail] == -1).all() and np.isnan(cat._first_seen[tail]).all()
    assert not cat._removed[tail].any() and not cat._popularity[tail].any()
    row, is_new = cat.upsert("n3", np.full(D, 2.0), "c9", 5)
    assert (row, is_new) == (n + 3, False)
    np.testing.assert_allclose(cat._unit[row], np.full(D, 1 / np.sqrt(D)), rtol=1e-6)
    assert cat.category_code["c9"] == 4 and cat._first_seen[row] == 5


def test_the_table_snapshot_is_unchanged() -> None:
    rng = np.random.default_rng(5)
    n = 50
    ids = [f"i{r}" for r in range(n)]
    vectors = rng.standard_normal((n, D)).astype(np.float32)
    cats = [None if r % 7 == 0 else f"c{r % 5}" for r in range(n)]
    cat = ItemCatalog(ids, vectors, cats, rng.integers(0, 9, n), rng.integers(0, 10**6, n))
    table = cat.table(2 * 10**6)
    want = _reference(ids, vectors, cats, None, None)
    np.testing.assert_array_equal(table.ids, np.asarray(ids))
    np.testing.assert_array_equal(table.categories, want["category"])
    assert table.unit.tobytes() == want["unit"].tobytes()
