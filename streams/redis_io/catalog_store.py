"""The catalog store on Redis: item records in one hash, each change on the catalog log.

Every worker tails the log (``read_log``) to keep its in-memory item table and ANN index
in step; the record types and the catalog processor are in ``streams.core.catalog``.
"""

from __future__ import annotations

import asyncio
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
"""How much longer than its block a log wait may take before it is given up (Redis late
or gone: the connection is dropped and the caller tries again)."""

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
        waits (other calls take others). The client has no read timeout, so the wait is
        bounded here: past ``wait_s`` + ``WAIT_GRACE_S`` it is cancelled, and redis-py
        drops the connection it was read on rather than hand it back mid-reply.
        """
        block_ms = max(1, int(wait_s * 1000))
        async with asyncio.timeout(wait_s + WAIT_GRACE_S):
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


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
