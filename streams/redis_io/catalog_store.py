"""The catalog store on Redis: item records in one hash, each change on the catalog log.

Every worker tails the log (``read_log``) to keep its in-memory item table and ANN index
in step; the record types and the catalog processor are in ``streams.core.catalog``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Sequence
from typing import Any

from streams.core.catalog import (
    CATALOG_LOG_PAGE,
    SNAPSHOT_PAGE,
    CatalogRecord,
    records_from_json,
)
from streams.redis_io.keyspace import Keyspace

WAIT_GRACE_S = 5.0
"""How much longer than its block a log wait may take before it is given up, on a client
with no read timeout (Redis late or gone: the connection is dropped, the caller retries)."""
BLOCK_SHARE = 0.6
"""A log wait blocks at most this share of the client's read timeout (``socket_timeout``,
5 s by redis-py's default: 3 s), so an event-loop stall of up to the rest (2 s there)
between Redis's answer and the read does not time the read out and drop the connection."""

LOG_CHUNK = 5_000
"""Log entries appended per script call (Redis runs nothing else meanwhile)."""

_APPEND_LOG = """
local last
for i = 2, #ARGV, 2 do
    last = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                      'item_id', ARGV[i], 'record', ARGV[i + 1])
end
return last
"""


class RedisCatalogStore:
    """Item records in one hash, each change appended to the catalog log stream."""

    def __init__(self, client: Any, keyspace: Keyspace, log_maxlen: int = 1_000_000) -> None:
        self.client = client
        self.keys = keyspace
        self.log_maxlen = log_maxlen
        self.last_entry: str | None = None  # the log entry of the newest record put here

    async def get(self, item_ids: Sequence[str]) -> dict[str, CatalogRecord]:
        if not item_ids:
            return {}
        raws = await self.client.hmget(self.keys.catalog, list(item_ids))
        return {i: CatalogRecord.from_json(r) for i, r in zip(item_ids, raws, strict=True) if r}

    async def put(self, records: Sequence[CatalogRecord]) -> None:
        """Store the records and append one log entry each, in order, in one round trip.

        The entries are appended by a script, ``LOG_CHUNK`` records a call: a bulk
        load's batch of 20,000 records was 20,000 ``XADD`` commands to pack and as many
        replies to parse in the client; the entries are the same.
        """
        if not records:
            return
        raws = {r.item_id: r.to_json() for r in records}  # each record encoded once
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.catalog, mapping=raws)
        flat = [x for pair in raws.items() for x in pair]
        for lo in range(0, len(flat), 2 * LOG_CHUNK):
            # EVAL, not a registered script: a cluster pipeline loads no scripts, and
            # the text is a few hundred bytes against a chunk's megabytes.
            pipe.eval(
                _APPEND_LOG,
                1,
                self.keys.catalog_log,
                self.log_maxlen,
                *flat[lo : lo + 2 * LOG_CHUNK],
            )
        done = await pipe.execute()
        self.last_entry = _s(done[-1])

    async def read_log(
        self, after: str, count: int = CATALOG_LOG_PAGE
    ) -> list[tuple[str, CatalogRecord]]:
        """Changes after stream id ``after`` ('0' for all), oldest first."""
        entries = await self.client.xread({self.keys.catalog_log: after}, count=count)
        out: list[tuple[str, CatalogRecord]] = []
        for _stream, items in entries:
            for entry_id, fields in items:
                rec = fields.get(b"record") or fields.get("record")
                out.append((_s(entry_id), CatalogRecord.from_json(rec)))
        return out

    async def wait_log(self, after: str, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for a log entry after stream id ``after``; True once
        there is one (at once if there already is), False when the wait ran out.

        One blocking ``XREAD`` (``BLOCK``, ``COUNT 1``): Redis answers when an entry is
        appended, so the worker learns of a catalog change a round trip after it is
        logged with no poll in between. It holds a connection of the pool while it
        waits (other calls take others). redis-py bounds every read by the client's
        ``socket_timeout`` (5 s unless set) and drops the connection when it runs out,
        so the block is kept to ``BLOCK_SHARE`` of it: a wait may return before
        ``wait_s`` (False, as a wait that ran out). A client with no read timeout is
        bounded here instead, ``WAIT_GRACE_S`` past the block.
        """
        limit = read_timeout_of(self.client)
        block_s = wait_s if limit is None else min(wait_s, limit * BLOCK_SHARE)
        block_ms = max(1, int(block_s * 1000))
        async with asyncio.timeout(None if limit else block_s + WAIT_GRACE_S):
            entries = await self.client.xread(
                {self.keys.catalog_log: after}, count=1, block=block_ms
            )
        return any(items for _stream, items in entries or ())

    async def log_head(self) -> str:
        """The id of the newest log entry ('0' while the log is empty)."""
        newest = await self.client.xrevrange(self.keys.catalog_log, count=1)
        return _s(newest[0][0]) if newest else "0"

    async def log_entry(self, entry_id: str) -> str | None:
        """The item id of log entry ``entry_id``; None if the log does not hold it
        (trimmed, or another log: a flushed and refilled Redis)."""
        found = await self.client.xrange(self.keys.catalog_log, entry_id, entry_id, count=1)
        if not found:
            return None
        fields = found[0][1]
        item = fields.get(b"item_id") or fields.get("item_id")
        return None if item is None else _s(item)

    async def scan(self, page: int = SNAPSHOT_PAGE) -> AsyncIterator[list[CatalogRecord]]:
        """Every stored record, ``page`` at a time (HSCAN; a record may come twice).

        Reading the hash costs a fifth of reading the log entry by entry, and holds
        only the newest record of each item.
        """
        cursor = 0
        while True:
            cursor, fields = await self.client.hscan(self.keys.catalog, cursor, count=page)
            if fields:
                yield records_from_json(list(fields.values()))
            if not cursor:
                return


def read_timeout_of(client: Any) -> float | None:
    """The read timeout of ``client``'s connections (``socket_timeout``): as its pool (or a
    cluster's nodes) passes it, else its connection class's default; None or 0: none.

    >>> from redis.asyncio import Redis
    >>> read_timeout_of(Redis.from_url("redis://h:1/0")), read_timeout_of(Redis(socket_timeout=9))
    (5, 9)
    """
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if kwargs is None:  # a cluster client: its nodes' connection options
        kwargs = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", {})
    if "socket_timeout" in kwargs:
        return kwargs["socket_timeout"] or None
    connection_class = kwargs.get("connection_class") or getattr(pool, "connection_class", None)
    for cls in getattr(connection_class, "__mro__", ()):  # whose __init__ names it
        param = inspect.signature(cls.__init__).parameters.get("socket_timeout")
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default or None
    return None


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
