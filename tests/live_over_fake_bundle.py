"""A worker's real-time path (``LiveRecommender``) over a fake bundle of ``n`` items, for
tests that drive its catalog and popularity syncs from their own sources."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fake_bundle import Bundle

from freshet.settings import Settings
from freshet.wiring import live_recommender
from streams.core.catalog import CatalogRecord
from streams.runtime.live_recommender import LiveRecommender


async def no_counts() -> dict[str, int]:
    return {}


async def no_trending(k: int) -> list[tuple[str, float]]:
    return []


def live_over_fake_bundle(
    tmp_path: Path,
    n: int,
    catalog_log: Callable[[str], Awaitable[list[tuple[str, CatalogRecord]]]],
    counts_source: Callable[[], Awaitable[dict[str, int]]] = no_counts,
) -> LiveRecommender:
    (tmp_path / "CURRENT").write_text("v1\n")
    return live_recommender(
        Settings(bundle_dir=tmp_path, home=tmp_path / "home"),
        trending_source=no_trending,
        counts_source=counts_source,
        catalog_log=catalog_log,
        bundle_loader=lambda _dir, version: Bundle(n, version=version),
    )
