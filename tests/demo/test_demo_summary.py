"""The demo's coverage figure: shown items over the whole catalog, never above 1."""

from __future__ import annotations

from freshet.demo import catalog_coverage
from schemas.events import CatalogEvent, InteractionEvent

T0 = 1_760_000_000_000


def test_coverage_counts_catalog_items_even_without_interactions() -> None:
    events: list[InteractionEvent | CatalogEvent] = [
        CatalogEvent(f"c{i}", "upsert", f"i{i}", T0, ("shoes",), {}, "") for i in range(4)
    ]
    events.append(InteractionEvent("e1", "u1", "i0", "view", T0 + 1))
    # i1 and i2 were shown but never touched (new or exploration items); x9 is not in
    # the catalog at all and must not count.
    assert catalog_coverage(["i0", "i1", "i2", "x9"], events) == 0.75
    assert catalog_coverage([], events) == 0.0
    assert catalog_coverage(["i0"], []) == 0.0
