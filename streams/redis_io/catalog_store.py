"""The catalog store on Redis: item records in one hash, each change on the catalog log.

Every worker tails the log (``read_log``) to keep its in-memory item table and ANN index
in step; the record types and the catalog processor are in ``streams.core.catalog``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from streams.core.catalog import (
    CATALOG_LOG_PAGE,
    SNAPSHOT_PAGE,
    CatalogRecord,
    records_from_json,
)
from streams.redis_io.keyspace import Keyspace


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
        if not records:
            return
        pipe = self.client.pipeline(transaction=False)
        raws = {r.item_id: r.to_json() for r in records}  # each record encoded once
        pipe.hset(self.keys.catalog, mapping=raws)
        for item, raw in raws.items():
            pipe.xadd(
                self.keys.catalog_log,
                {"item_id": item, "record": raw},
                maxlen=self.log_maxlen,
                approximate=True,
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
