"""The worker's consumer takes the fetch settings Faust itself fixes (1,500 ms, 1 byte)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust

from streams.runtime.faust_fetch import FetchSettings, FetchTunedTransport


class _App(faust.App):
    fetch: FetchSettings | None = None

    def _new_transport(self) -> Any:
        return FetchTunedTransport(self.conf.broker_consumer, self)


def _worker_consumer(fetch: FetchSettings | None) -> Any:
    async def build() -> Any:
        app = _App(
            "fetch-test",
            broker="kafka://127.0.0.1:9",
            web_enabled=False,
            autodiscover=False,
            store="memory://",
        )
        app.fetch = fetch
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.stop()  # never started: only its settings are looked at
        return consumer

    return asyncio.run(build())


def test_the_worker_consumer_takes_the_app_fetch_settings() -> None:
    consumer = _worker_consumer(FetchSettings(max_wait_ms=7, min_bytes=4096))
    assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (7, 4096)


def test_without_settings_it_is_fausts_own_consumer() -> None:
    consumer = _worker_consumer(None)
    assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (1500, 1)


def test_the_worker_app_takes_the_kafka_client_settings(tmp_path: Path) -> None:
    from freshet.settings import Settings
    from streams.runtime.faust_app import create_app

    settings = Settings().with_(
        home=tmp_path,
        kafka_fetch_max_wait_ms=25,
        kafka_fetch_min_bytes=2048,
        kafka_max_poll_records=300,
        kafka_linger_ms=3,
    )

    async def build() -> Any:
        app = create_app(settings)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.stop()
        return app.conf, consumer

    conf, consumer = asyncio.run(build())
    assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (25, 2048)
    assert consumer._max_poll_records == 300
    assert conf.producer_linger == 0.003 and conf.producer_acks == -1
    defaults = asyncio.run(_defaults(tmp_path))
    assert defaults == (1500, 1, None, 0.0)  # the measured choice (docs/configuration.md)


async def _defaults(tmp_path: Path) -> tuple[Any, ...]:
    from freshet.settings import Settings
    from streams.runtime.faust_app import create_app

    app = create_app(Settings().with_(home=tmp_path / "d"))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await consumer.stop()
    return (
        consumer._fetch_max_wait_ms,
        consumer._fetch_min_bytes,
        consumer._max_poll_records,
        app.conf.producer_linger,
    )
