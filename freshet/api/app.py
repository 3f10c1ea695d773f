"""The aiohttp application of the read API: routes, auth, metrics and Redis reads.

A user's list is read from the user's hash in the keyspace of the generation that the
generation pointer names (``g1`` while none is set). The pointer and the trending
list change rarely next to the request rate, so each is cached for
``cache_ttl_s`` (one second by default); a stored list is always read fresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from freshet.api.auth import bearer_ok
from freshet.api.lists import cold_start_list, generation_from, user_partition, valid_user_id
from freshet.api.metrics import ApiMetrics
from freshet.api.ui_routes import add_ui, is_public
from freshet.settings import Secret, Settings
from freshet.wiring import redis_of
from schemas.codec import encode
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import async_redis
from streams.redis_io.redis_state_store import RedisStateStore

log = logging.getLogger("freshet.api")

LIST_ROUTE = "/v1/users/{user_id:.*}/recommendations"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})  # probes carry no credentials
REDIS_TIMEOUT_S = 2.0


def openapi_document() -> bytes:
    """The hand-written OpenAPI 3.1 document shipped with the package."""
    return resources.files("freshet.api").joinpath("openapi.json").read_bytes()


class _Cached:
    """One value, loaded again when older than ``ttl_s``."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._value: Any = None
        self._at = float("-inf")

    async def get(self, load: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        if now - self._at > self.ttl_s:
            self._value = await load()
            self._at = now
        return self._value


class ListReader:
    """Reads lists and trending from Redis for one deployment's settings."""

    def __init__(self, settings: Settings, client: Any, cache_ttl_s: float) -> None:
        self.settings = settings
        self.client = client
        self._generation = _Cached(cache_ttl_s)
        self._trending = _Cached(cache_ttl_s)
        self._stores: dict[str, RedisStateStore] = {}

    async def ping(self) -> None:
        await self.client.ping()

    async def latest(self, user_id: str) -> tuple[bytes, str]:
        """The user's list as JSON bytes, and its source: ``stored`` or ``cold_start``."""
        store = self._store(await self._generation.get(self._read_generation))
        record = await store.user(user_partition(user_id, self.settings.topic_partitions), user_id)
        if record is not None and record.latest is not None:
            return bytes(record.latest), "stored"

        async def load_trending() -> list[tuple[str, float]]:
            partitions = range(self.settings.topic_partitions)
            return await store.trending(partitions, self.settings.list_size)

        trending = await self._trending.get(load_trending)
        fallback = cold_start_list(user_id, trending, int(time.time() * 1000))
        return encode(fallback), "cold_start"

    async def _read_generation(self) -> str:
        keyspace = Keyspace(self.settings.redis_namespace)
        raw = await self.client.get(keyspace.generation_pointer)
        generation = generation_from(raw)
        if generation is None:
            raise RedisError(f"{keyspace.generation_pointer} holds no valid generation name")
        return generation

    def _store(self, generation: str) -> RedisStateStore:
        store = self._stores.get(generation)
        if store is None:
            store = RedisStateStore(
                self.client,
                Keyspace(self.settings.redis_namespace, generation),
                cluster=self.settings.redis_cluster,
                trending_half_life_s=self.settings.trending_half_life_s,
            )
            self._stores[generation] = store
        return store


READER_KEY = web.AppKey("reader", ListReader)
METRICS_KEY = web.AppKey("metrics", ApiMetrics)
OPENAPI_KEY = web.AppKey("openapi", bytes)


def create_app(settings: Settings, *, cache_ttl_s: float = 1.0) -> web.Application:
    """The read API for ``settings``: its Redis, namespace, partitions and token.

    The Redis client is opened here and closed when the application shuts down.
    """
    metrics = ApiMetrics()
    token = settings.api_token
    app = web.Application(middlewares=[_metrics_middleware(metrics), _auth_middleware(token)])
    client = async_redis(redis_of(settings))
    app[READER_KEY] = ListReader(settings, client, cache_ttl_s)
    app[METRICS_KEY] = metrics
    app[OPENAPI_KEY] = openapi_document()
    app.router.add_get(LIST_ROUTE, _recommendations)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/openapi.json", _openapi)
    add_ui(app, settings, client)

    async def close_redis(_app: web.Application) -> None:
        await client.aclose()

    app.on_cleanup.append(close_redis)
    return app


# --- handlers --------------------------------------------------------------------------


async def _recommendations(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    if not valid_user_id(user_id):
        return _error(400, "invalid_user_id", "user id must match [A-Za-z0-9_.@+=/-]{1,128}")
    reader = request.app[READER_KEY]
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            body, source = await reader.latest(user_id)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("list read failed: %s", type(exc).__name__)
        return _error(503, "unavailable", "the list store could not be read")
    request.app[METRICS_KEY].lists.labels(source).inc()
    return web.Response(
        body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(1.0):
            await request.app[READER_KEY].ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return _error(503, "unavailable", f"Redis did not answer PING ({type(exc).__name__})")
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/json")


def _error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


# --- middlewares -----------------------------------------------------------------------


def _route_of(request: web.Request) -> str:
    """The route pattern a request matched, or ``unmatched``; never the raw path."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


def _metrics_middleware(metrics: ApiMetrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.observe(_route_of(request), status, time.perf_counter() - started)

    return middleware


def _auth_middleware(token: Secret) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            token
            and request.path not in PUBLIC_PATHS
            and not is_public(request.path)
            and not bearer_ok(request.headers.get("Authorization"), token.get())
        ):
            response = _error(401, "unauthorized", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="freshet"'
            return response
        return await handler(request)

    return middleware
