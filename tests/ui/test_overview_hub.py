"""The overview hub: one scrape per interval for every open page, none with no page open."""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from freshet.api.ui_sources import OverviewHub
from freshet.settings import Settings
from streams.runtime.metrics import WorkerMetrics


def _newest(queue: asyncio.Queue[bytes]) -> bytes:
    message = queue.get_nowait()
    while not queue.empty():
        message = queue.get_nowait()
    return message


async def test_pages_share_one_scrape_and_a_closed_page_costs_nothing(settings: Settings) -> None:
    worker = WorkerMetrics()
    port = worker.serve(0, addr="127.0.0.1")
    try:
        worker.events.labels("applied").inc(10)
        hub = OverviewHub(
            settings.with_(ui_refresh_s=0.2, ui_metrics_urls=f"http://127.0.0.1:{port}/metrics")
        )
        async with contextlib.AsyncExitStack() as pages:
            queues = [await pages.enter_async_context(hub.subscribe()) for _ in range(5)]
            first = [orjson.loads(await asyncio.wait_for(q.get(), 10)) for q in queues]
            worker.events.labels("applied").inc(5)
            await asyncio.sleep(1.0)
            scrapes_open = hub.scrapes
            latest = [orjson.loads(_newest(q)) for q in queues]
        # Five pages over about 1.2 s at 0.2 s: one scrape per interval, not one per page.
        assert 3 <= scrapes_open <= 9, scrapes_open
        assert all(f["point"]["applied_total"] == 10 for f in first)
        assert all(m["point"]["applied_total"] == 15 for m in latest)
        assert all(m["point"]["workers_up"] == 1 for m in latest)
        await asyncio.sleep(0.6)  # the sampler notices that nobody listens
        idle = hub.scrapes
        await asyncio.sleep(1.0)
        assert hub.scrapes == idle, "scraping went on with no page open"
        await hub.close()
    finally:
        worker.close()
