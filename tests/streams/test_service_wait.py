"""Waiting for a late service: capped backoff, what is logged, what is never waited out."""

from __future__ import annotations

import asyncio
import doctest
import logging
from itertools import islice

import pytest
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)
from redis.exceptions import AuthenticationError, BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

import streams.core.backoff
from freshet.settings import Settings
from freshet.wiring import redis_of
from streams.core.backoff import backoff_delays, wait_until_up, wait_until_up_async
from streams.kafka_io.kafka_wait import kafka_transient
from streams.redis_io.redis_wait import redis_transient, redis_where


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_backoff_doubles_then_stays_at_the_cap() -> None:
    assert list(islice(backoff_delays(0.25, 3.0), 8)) == [0.25, 0.5, 1, 2, 3, 3, 3, 3]
    assert max(islice(backoff_delays(0.1, 2.0), 1000)) == 2.0
    assert doctest.testmod(streams.core.backoff).failed == 0


def test_waits_out_a_late_service_and_logs_each_wait(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    refusals = iter([KafkaConnectionError(), KafkaTimeoutError("Unable to bootstrap")] * 10)

    def attempt() -> str:
        exc = next(refusals, None)
        if exc is not None:
            raise exc
        return "topics"

    with caplog.at_level(logging.INFO, logger="freshet.wait"):
        got = wait_until_up(
            attempt, "Kafka at b:9092", kafka_transient, sleep=clock.sleep, clock=lambda: clock.now
        )
    assert got == "topics"
    assert len(clock.pauses) == 20
    assert max(clock.pauses) == 3.0  # the cap: a broker that is back is tried within 3 s
    waits = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(waits) == 20
    assert waits[0].startswith("waiting for Kafka at b:9092 (attempt 1, 0 s so far)")
    assert "KafkaTimeoutError" in waits[1]
    assert f"Kafka at b:9092 is up after {sum(clock.pauses):.1f} s" in caplog.text


@pytest.mark.parametrize(
    "exc", [SaslAuthenticationFailedError("bad password"), TopicAuthorizationFailedError()]
)
def test_kafka_errors_waiting_cannot_fix_are_raised_at_once(exc: Exception) -> None:
    clock = FakeClock()

    def attempt() -> None:
        raise exc

    with pytest.raises(type(exc)):
        wait_until_up(attempt, "Kafka", kafka_transient, sleep=clock.sleep)
    assert clock.pauses == []


def test_what_counts_as_a_late_service() -> None:
    assert kafka_transient(KafkaConnectionError())
    assert kafka_transient(ConnectionRefusedError())
    assert not kafka_transient(ValueError("FRESHET_KAFKA_BOOTSTRAP is empty"))
    assert redis_transient(RedisConnectionError("Connection refused"))
    assert redis_transient(BusyLoadingError("loading the AOF"))
    assert not redis_transient(AuthenticationError("invalid password"))
    assert not redis_transient(ValueError("Redis URL must specify one of the schemes"))


def test_async_wait_retries_until_the_coroutine_succeeds() -> None:
    calls: list[int] = []

    async def ping() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise RedisConnectionError("Connection refused")
        return True

    assert asyncio.run(wait_until_up_async(ping, "Redis", redis_transient, cap_s=0.01)) is True
    assert len(calls) == 3


def test_redis_where_never_shows_credentials() -> None:
    settings = Settings().with_(redis_url="rediss://:pw@cache.example:6380/2")
    assert redis_where(redis_of(settings)) == "Redis at rediss://cache.example:6380/2"
    unix = Settings().with_(redis_url="unix://:pw@/run/redis.sock?db=0")
    assert redis_where(redis_of(unix)) == "Redis at unix:///run/redis.sock"
