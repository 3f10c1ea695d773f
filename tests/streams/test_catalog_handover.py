"""The bulk load's result leaves the worker's ``asyncio.run`` without formatting its records.

Python 3.11's ``asyncio.run`` formats the main task (result included) as it ends; a
cold start's handover holds a million records, whose repr took 12 s of it.
"""

from __future__ import annotations

import asyncio

import pytest

from streams.core.catalog import CatalogRecord
from streams.runtime.catalog_preload import Handover, PreloadStats


def test_asyncio_run_of_a_load_never_formats_the_handed_over_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    formatted: list[str] = []

    def counted(rec: CatalogRecord) -> str:
        formatted.append(rec.item_id)
        return "CatalogRecord(...)"

    monkeypatch.setattr(CatalogRecord, "__repr__", counted)
    records = [CatalogRecord(f"i{n}", ("c",), {}, "", 1, 1) for n in range(1_000)]

    async def load() -> PreloadStats:
        return PreloadStats(records=1_000, handover=Handover("g1", "5-0", records))

    stats = asyncio.run(load())
    assert formatted == []
    assert stats.handover is not None and stats.handover.records == records
    assert "Handover('g1', '5-0', 1000 records)" in repr(stats) and formatted == []
