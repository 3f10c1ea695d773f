"""One pooled Redis connection kept checked out for a store's own calls.

redis-py 8's ``execute_command`` checks a connection out of the pool and back in for
every command: the pool's lock twice, a connect check and a non-blocking read of the
socket (``can_read``), the retry wrapper and its awaited observability hooks. At 10
ev/s every event is its own batch and every call runs cold, 100 ms after the last, so
that bookkeeping is paid cold twice an event (the state read and the fenced write):
a bare script call cost 1,161 µs of the loop's CPU through the pool and 738 µs on a
held connection, and a batch of one's read and write together 1,500-2,293 µs against
1,221-1,777 (medians, alternated, 100 ms apart, on a loaded 2-core Xeon host;
``bench.batch_path_costs --held-pairs``).

The connection is taken from the client's own pool, so it has the pool's options
(auth, TLS, timeouts, the health check's PING after ``health_check_interval`` idle),
and replies are parsed by the client's ``parse_response``, as ``execute_command``
parses them. Calls made while it is in use (another lane's batch, a timer) go through
the pool as before. A call that fails on the connection (a connection error or a
timeout) drops it, disconnected, back to the pool and is made again through the pool,
under the client's retry policy: what redis-py itself does after such an error. Any
other interruption (a cancellation) drops it and raises: a reply left unread never
reaches the next call. An error reply (``ResponseError``, ``NoScriptError``) is read
whole, so the connection stays.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class HeldConnection:
    """Runs commands on one connection of ``client``'s pool, held between calls.

    Args:
        client: A ``redis.asyncio.Redis`` (a single node).
        hold: False, or a client without a connection pool (a cluster client): every
            call goes through ``client.execute_command``, as it is.
    """

    def __init__(self, client: Any, *, hold: bool = True) -> None:
        self.client = client
        self.pool: Any = getattr(client, "connection_pool", None) if hold else None
        self._conn: Any = None
        self._busy = False
        self.dropped = 0  # connections given back after a failed or interrupted call
        self.shared = 0  # calls sent through the pool while the held one was in use

    async def execute(self, *args: Any) -> Any:
        """The reply to one command (``args[0]`` its name), as ``execute_command``'s."""
        if self.pool is None or self._busy:
            self.shared += self.pool is not None
            return await self.client.execute_command(*args)
        self._busy = True
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = await self.pool.get_connection()
            try:
                await conn.send_command(*args)
                return await self.client.parse_response(conn, args[0])
            except ResponseError:
                raise  # an error reply, read whole: the connection is in step
            except BaseException as exc:
                await self._drop(conn)
                if not isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
                    raise
        finally:
            self._busy = False
        return await self.client.execute_command(*args)  # the pool's path, and its retries

    async def _drop(self, conn: Any) -> None:
        """Give ``conn`` back to the pool disconnected; the next call takes another."""
        self._conn = None
        self.dropped += 1
        try:
            await conn.disconnect(nowait=True)
        finally:
            await self.pool.release(conn)
