"""The hiredis command packer: byte-identical to redis-py's, and used by the worker's client
on ``redis://`` only; ``rediss://`` and ``unix://`` clients keep their scheme's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError
from self_signed import self_signed_cert

from freshet.services.redis_local import LocalRedis, RedisTLS
from freshet.settings import Secret, Settings
from freshet.wiring import redis_of
from streams.redis_io.redis_client import (
    HiredisPackConnection,
    async_redis,
    connection_class_of,
    sync_redis,
)

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
    pool_class, got, n = _round_trip(Settings(redis_url=redis_url))
    assert pool_class is HiredisPackConnection
    assert got == [b"1.5", b"\x00\xff", "é".encode(), 1]
    assert n == 502


def _round_trip(settings: Settings) -> tuple[type, list[Any], int]:
    """The worker's asyncio client on ``settings``: its connection class, a pipeline, a script."""

    async def run() -> tuple[type, list[Any], int]:
        client = async_redis(redis_of(settings))
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

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", HiredisPackConnection),
        ("REDIS://127.0.0.1:6379/0", HiredisPackConnection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///tmp/redis.sock?db=0", UnixDomainSocketConnection),
    ],
)
def test_each_scheme_keeps_its_connection_class(url: str, expected: type) -> None:
    client = async_redis(redis_of(Settings(redis_url=url, redis_ssl_ca_certs="/dev/null")))
    assert client.connection_pool.connection_class is expected
    assert connection_class_of(url) == (
        {"connection_class": expected} if expected is HiredisPackConnection else {}
    )


def test_clients_on_tcp_tls_and_unix_socket_redis(
    make_redis: Callable[..., LocalRedis], tmp_path: Path
) -> None:
    """One real server with a password, on TCP, TLS and a Unix socket: every scheme works.

    With ``connection_class`` passed for every URL (redis-py 8.2 lets it beat the
    scheme), the TLS client failed with ``TypeError: ... unexpected keyword argument
    'ssl_ca_certs'`` and the socket client with ``... unexpected keyword argument 'path'``.
    """
    cert, key = self_signed_cert(tmp_path)
    # A short folder: a Unix socket path must stay under ~100 bytes.
    sock_dir = Path(tempfile.mkdtemp(prefix="fr-", dir="/tmp"))
    password = "pw-for/the+test"
    server = make_redis(
        password=password,
        appendonly=False,
        tls=RedisTLS(cert_file=cert, key_file=key, ca_file=cert),
        unix_socket=sock_dir / "r.sock",
    )
    base = Settings(redis_password=Secret(password), redis_ssl_ca_certs=str(cert))
    urls = {
        HiredisPackConnection: f"redis://127.0.0.1:{server.port}/0",
        SSLConnection: f"rediss://127.0.0.1:{server.tls_port}/0",
        UnixDomainSocketConnection: f"unix://{sock_dir / 'r.sock'}?db=0",
    }
    try:
        for expected, url in urls.items():
            settings = base.with_(redis_url=url)
            assert _round_trip(settings) == (expected, [b"1.5", b"\x00\xff", "é".encode(), 1], 502)
            blocking = sync_redis(redis_of(settings))
            try:
                assert blocking.ping() is True
            finally:
                blocking.close()
    finally:
        server.stop()
        for leftover in sock_dir.iterdir():
            leftover.unlink()
        sock_dir.rmdir()


def test_a_command_is_sent_without_a_task_of_its_own(redis_url: str) -> None:
    """redis-py bounds a send with ``asyncio.wait_for``, which on Python 3.11 starts a
    task per command; the worker's connection bounds it with a timeout scope. On the
    old connection each of the 50 calls below started one task (50 counted)."""

    async def run() -> tuple[int, int]:
        client = async_redis(redis_of(Settings(redis_url=redis_url)))
        loop = asyncio.get_running_loop()
        started = [0]

        def count(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            started[0] += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        try:
            await client.set("t:k", b"v")  # connects outside the count
            loop.set_task_factory(count)
            got = [await client.get("t:k") for _ in range(50)]
            loop.set_task_factory(None)
            assert got == [b"v"] * 50
            assert client.connection_pool.connection_class is HiredisPackConnection
            return started[0], len(got)
        finally:
            loop.set_task_factory(None)
            await client.delete("t:k")
            await client.aclose()

    started, calls = asyncio.run(run())
    assert calls == 50
    assert started == 0


@contextlib.asynccontextmanager
async def silent_server(**options: Any) -> AsyncIterator[HiredisPackConnection]:
    """A connected ``HiredisPackConnection`` to a server that accepts, never reads and
    never answers (RESP2, no client name: connecting asks nothing of the server)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = HiredisPackConnection(
        host="127.0.0.1", port=port, protocol=2, driver_info=None, **options
    )
    await conn.connect()
    try:
        yield conn
    finally:
        await conn.disconnect()
        server.close()
        for w in held:
            w.close()


def test_a_send_that_stalls_still_times_out_and_drops_the_connection() -> None:
    """A server that accepts and never reads: the socket's buffers fill, the send waits,
    and after ``socket_timeout`` redis-py's ``TimeoutError`` comes, as with ``wait_for``."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    async def run() -> tuple[float, bool]:
        async with silent_server(socket_timeout=0.5) as conn:
            start = time.perf_counter()
            with pytest.raises(RedisTimeoutError):
                await conn.send_command("SET", "k", b"x" * (64 << 20), check_health=False)
            return time.perf_counter() - start, conn.is_connected

    took, connected = asyncio.run(run())
    assert 0.4 <= took < 5.0
    assert not connected


def test_a_health_check_that_gets_no_pong_times_out_on_its_own_read() -> None:
    """The health check's PING is read with the connection's own timeout, outside the
    send's scope: a server that never answers gives redis-py's read timeout. When the
    scope covered the check too, the PING's read waited without a timeout and the
    scope's expiry came back as a write timeout."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    async def run() -> str:
        async with silent_server(socket_timeout=0.3, health_check_interval=1) as conn:
            conn.next_health_check = -1.0  # the check is due on the next command
            with pytest.raises(RedisTimeoutError) as caught:
                await conn.send_command("GET", "k")
            return str(caught.value)

    message = asyncio.run(run())
    assert "reading" in message.lower(), message
