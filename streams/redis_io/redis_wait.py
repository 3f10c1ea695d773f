"""Wait for Redis with capped backoff (``streams.core.backoff``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from streams.core.backoff import wait_until_up
from streams.redis_io.redis_client import RedisConfig, sync_redis


def redis_transient(exc: BaseException) -> bool:
    """Whether a redis-py error may go away by waiting (not a refused password)."""
    from redis.exceptions import AuthenticationError, ClusterDownError, RedisClusterException
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, AuthenticationError):
        return False
    up_soon = (RedisConnectionError, RedisTimeoutError, ClusterDownError, RedisClusterException)
    return isinstance(exc, (*up_soon, OSError))


def redis_where(config: RedisConfig) -> str:
    """The Redis URL's scheme, host, port and path, without credentials."""
    url = urlsplit(config.url)
    if url.scheme == "unix":
        return f"Redis at unix://{url.path}"
    return f"Redis at {url.scheme}://{url.hostname}:{url.port or 6379}{url.path}"


def wait_for_redis(config: RedisConfig) -> None:
    """Return once Redis answers PING with the configured credentials."""

    def ping() -> None:
        client = sync_redis(config)
        try:
            client.ping()
        finally:
            client.close()

    wait_until_up(ping, redis_where(config), redis_transient)
