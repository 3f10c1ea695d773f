"""Say in the log while the API waits for Redis, and when Redis answers.

The API starts before Redis and never exits because Redis is late: until Redis answers,
list reads and ``/readyz`` say 503 and ``/healthz`` says ok. This task only tells the
operator what the API waits for, with the same capped backoff as the worker.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from freshet.api.app import READER_KEY
from streams.core.backoff import wait_until_up_async
from streams.redis_io.redis_wait import redis_transient

log = logging.getLogger("freshet.api")

_WATCH_KEY = web.AppKey("redis_watch", asyncio.Task)


def watch_redis_at_start(app: web.Application, where: str) -> None:
    """From startup, ping the API's Redis until it answers, logging each wait.

    Args:
        app: The application from ``create_app``; its list reader's client is pinged.
        where: Redis as the log names it, without credentials.
    """

    async def watch() -> None:
        try:
            await wait_until_up_async(app[READER_KEY].ping, where, redis_transient)
        except Exception as exc:  # a refused password: say so, keep serving 503s
            log.error("%s refused the API: %s", where, type(exc).__name__)

    async def start(_app: web.Application) -> None:
        app[_WATCH_KEY] = asyncio.ensure_future(watch())

    async def stop(_app: web.Application) -> None:
        app[_WATCH_KEY].cancel()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
