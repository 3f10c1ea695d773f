"""The hiredis command packer: byte-identical to redis-py's, and used by the worker's client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from freshet.settings import Settings
from streams.redis_client import HiredisPackConnection, async_redis

ARG = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=32),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
)


def packed(conn: Connection, *args: Any) -> bytes:
    return b"".join(conn.pack_command(*args))


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["SET", "EVALSHA", b"HSET", "CONFIG GET", b"CLIENT SETNAME"]),
    rest=st.lists(ARG, max_size=40),
)
def test_packs_the_same_bytes_as_redis_py(name: str | bytes, rest: list[Any]) -> None:
    ours, theirs = HiredisPackConnection(), Connection()
    try:
        expected = packed(theirs, name, *rest)
    except UnicodeEncodeError:  # lone surrogates: both must refuse
        with pytest.raises(UnicodeEncodeError):
            packed(ours, name, *rest)
        return
    assert packed(ours, name, *rest) == expected


def test_arguments_hiredis_cannot_take_keep_redis_py_behaviour() -> None:
    ours, theirs = HiredisPackConnection(), Connection()
    view = memoryview(b"abc" * 10_000)  # large memoryviews are sent as separate chunks
    assert packed(ours, "SET", "k", view) == packed(theirs, "SET", "k", view)
    with pytest.raises(DataError):
        ours.pack_command("SET", "k", True)
    latin = HiredisPackConnection(encoding="latin-1")
    assert packed(latin, "SET", "k", "é") == packed(Connection(encoding="latin-1"), "SET", "k", "é")


def test_worker_client_round_trips_through_the_real_redis(redis_url: str) -> None:
    async def run() -> tuple[Any, ...]:
        client = async_redis(Settings(redis_url=redis_url))
        try:
            pool_class = client.connection_pool.connection_class
            await client.hset("t:h", mapping={"a": 1.5, "b": b"\x00\xff", "c": "é"})
            async with client.pipeline(transaction=True) as pipe:
                pipe.hget("t:h", "a").hget("t:h", "b").hget("t:h", "c").delete("t:h")
                got = await pipe.execute()
            script = client.register_script("return #ARGV + #KEYS")
            n = await script(keys=["x", "y"], args=list(range(500)))
            return pool_class, got, n
        finally:
            await client.aclose()

    pool_class, got, n = asyncio.run(run())
    assert pool_class is HiredisPackConnection
    assert got == [b"1.5", b"\x00\xff", "é".encode(), 1]
    assert n == 502
