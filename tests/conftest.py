"""Shared fixtures: the real Kafka broker and Redis server that integration tests use.

The harness starts both itself (fetching the broker jars the first time), so service
tests never skip. Each session gets one broker and one Redis in a temp dir; each test
gets a clean Redis database and a unique topic prefix, so tests do not see each other.
Tests that need to restart a service start their own with ``make_kafka``/``make_redis``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from freshet.services.kafka_local import LocalKafka
from freshet.services.redis_local import LocalRedis
from freshet.settings import Settings

_SERVICE_FIXTURES = {
    "kafka",
    "redis_server",
    "redis_url",
    "redis_client",
    "settings",
    "make_kafka",
    "make_redis",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real service, so ``-m "not services"`` leaves it out."""
    for item in items:
        if _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def _jar_home() -> Path:
    # The broker jars are cached in the user's freshet home, not in the temp dir, so
    # they are fetched once per machine rather than once per test run.
    return Settings.from_env().home


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """One real Kafka 3.9.1 broker for the session; use ``kafka.bootstrap``."""
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka"), home=_jar_home(), die_with_parent=True
    ).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """One real redis-server (appendonly yes) for the session; use ``redis_server.url``."""
    server = LocalRedis(
        tmp_path_factory.mktemp("redis"), appendonly=True, die_with_parent=True
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    """The session Redis, flushed before this test: ``redis://127.0.0.1:<port>/0``."""
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses, e.g. ``t-1a2b3c4d``."""
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(kafka: LocalKafka, redis_url: str, topic_prefix: str, tmp_path: Path) -> Settings:
    """Settings pointing at the real services, with a fresh prefix and home per test."""
    return Settings.from_env(
        {},
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_url,
        topic_prefix=topic_prefix,
        home=tmp_path,
    )


@pytest.fixture
def make_kafka(tmp_path: Path) -> Iterator[Callable[..., LocalKafka]]:
    """A factory for a private, started broker (for restart tests); stopped after the test.

    ``make_kafka(partitions=1)`` takes ``LocalKafka``'s keyword arguments.
    """
    started: list[LocalKafka] = []

    def make(**kwargs: Any) -> LocalKafka:
        kwargs.setdefault("home", _jar_home())
        kwargs.setdefault("die_with_parent", True)
        broker = LocalKafka(tmp_path / f"kafka-{len(started)}", **kwargs)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., LocalRedis]]:
    """A factory for a private, started Redis (for restart or TLS tests); stopped after.

    ``make_redis(appendonly=True, password="s3cret")`` takes ``LocalRedis``'s arguments.
    """
    started: list[LocalRedis] = []

    def make(**kwargs: Any) -> LocalRedis:
        kwargs.setdefault("die_with_parent", True)
        server = LocalRedis(tmp_path / f"redis-{len(started)}", **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client on the clean session database."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
