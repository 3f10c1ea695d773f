"""The web view's routes in process, against the real Kafka and Redis: no browser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from kafka import KafkaAdminClient

from freshet.api.app import create_app
from freshet.settings import Settings
from schemas.topics import Topics

TOKEN = "ui-api-token-93ab"


@pytest.fixture
async def base(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings.with_(api_token=TOKEN)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_page_is_a_shell_with_a_strict_policy(base: str) -> None:
    async with ClientSession() as s:
        async with s.get(base + "/ui") as r:
            page = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
            policy = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert TOKEN not in page
        for name in ("app.js", "app.css"):
            async with s.get(f"{base}/ui/static/{name}") as r:
                assert r.status == 200
        async with s.get(base + "/ui/static/secrets.txt") as r:
            assert r.status == 401  # not a page file, so the token rule applies
        async with s.get(base + "/ui/static/secrets.txt", headers=AUTH) as r:
            assert r.status == 404
        async with s.get(base + "/ui/api/users/a%20b", headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_user_id"


async def test_a_user_stream_without_a_list_topic_says_so_and_creates_none(
    base: str, settings: Settings
) -> None:
    topic = Topics(settings.topic_prefix).recommendations
    async with (
        ClientSession(timeout=ClientTimeout(total=20)) as s,
        s.get(base + "/ui/api/users/u1/stream", headers=AUTH) as r,
    ):
        assert r.headers["Content-Type"] == "text/event-stream"
        body = b""
        while b"event: note" not in body:
            body += await asyncio.wait_for(r.content.readany(), 15)
    assert b"no list topic yet" in body
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()
