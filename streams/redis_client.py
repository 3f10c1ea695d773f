"""Build the asyncio Redis client from settings: auth, TLS and cluster mode."""

from __future__ import annotations

from typing import Any

from freshet.settings import Settings


def redis_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options beyond the URL; the password never sits in the URL we log."""
    kwargs: dict[str, Any] = {"health_check_interval": 15, "socket_keepalive": True}
    if settings.redis_password:
        kwargs["password"] = settings.redis_password.get()
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    if settings.redis_ssl_ca_certs:
        kwargs["ssl_ca_certs"] = settings.redis_ssl_ca_certs
    return kwargs


def async_redis(settings: Settings) -> Any:
    """An asyncio client (single node or cluster) for ``settings.redis_url``."""
    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url, **redis_kwargs(settings))
    from redis.asyncio import Redis

    return Redis.from_url(settings.redis_url, **redis_kwargs(settings))


def sync_redis(settings: Settings) -> Any:
    """A blocking client, for command-line tools and tests."""
    if settings.redis_cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url, **redis_kwargs(settings))
    from redis import Redis

    return Redis.from_url(settings.redis_url, **redis_kwargs(settings))
