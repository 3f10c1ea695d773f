"""The one path by which fresh lists leave a worker: stamp, store, then publish.

Ingest, the debounce trailing edge and replay's republish all hand their lists here.
A list rides in its partition's fenced state write when the batch changes that
partition's state (so list and state land together, or neither); a list with no
state write beside it (a trailing-edge or republished list) is stored on its own.
Only after the store has the lists are they sent, so a reader never sees a list on
Kafka that Redis does not hold. ``published_ts`` is stamped once, here, so the copy
in Redis and the one on Kafka are the same bytes. Since the list is stored before it
is sent, the stamp is the moment the list is committed, just before the store write:
it leaves out the write and the send (a Redis round trip and an acked produce), which
the topic's own record timestamps still show.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from schemas.codec import encode
from schemas.recommendation import Recommendation
from streams.core.state_store import PartitionWrite, StateStore


def stamped(rec: Recommendation, published_ts: int) -> Recommendation:
    """``rec`` as published at ``published_ts``.

    ``dataclasses.replace`` without its per-call look at the fields (it cost about as
    much as encoding the list); every field is passed on, in declaration order.

    >>> import dataclasses
    >>> rec = Recommendation("u1", (), "cold_start", None, "e1", 5, 0)
    >>> stamped(rec, 9) == dataclasses.replace(rec, published_ts=9)
    True
    """
    return Recommendation(
        rec.user_id,
        rec.items,
        rec.strategy,
        rec.model_version,
        rec.source_event_id,
        rec.event_ts,
        published_ts,
        rec.schema_version,
    )


class Committed(NamedTuple):
    """A list as committed: the record, and its bytes as the store holds them.

    Sinks send ``raw`` as it is, so a list is encoded once and the copy on Kafka is
    the copy in Redis, byte for byte.
    """

    rec: Recommendation
    raw: bytes


ListSink = Callable[[Sequence[Committed]], Awaitable[None]]


@dataclass(slots=True)
class Refresh:
    """What the refresher adds to a batch's write: embeddings and fresh lists."""

    embeddings: dict[str, bytes] = field(default_factory=dict)
    lists: dict[str, Recommendation] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    """Partitions of listed users the batch did not touch (trailing edges riding it)."""


class ListPublisher:
    """Writes a batch's state with its lists and embeddings, then publishes the lists."""

    def __init__(
        self,
        store: StateStore,
        sink: ListSink | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sink = sink
        self.clock = clock

    async def commit(
        self,
        writes: Sequence[PartitionWrite],
        partition_of: Mapping[str, int],
        refresh: Refresh | None = None,
        stages_s: dict[str, float] | None = None,
    ) -> list[Recommendation]:
        """Store ``writes`` with ``refresh`` attached, then publish; returns the lists sent.

        Args:
            writes: The batch's state writes (fenced by their expected watermarks);
                empty when no state changes (trailing edge, republish).
            partition_of: Each touched user's partition (others: ``refresh.partitions``).
            refresh: Embeddings and lists; an embedding is kept only with a state write.
            stages_s: If given, the seconds spent storing (``redis_write``) and sending
                (``publish``) are added to it.
        """
        refresh = refresh or Refresh()
        now = int(self.clock() * 1000)
        lists = [stamped(r, now) for r in refresh.lists.values()]
        committed = [Committed(rec, encode(rec)) for rec in lists]
        by_p = {w.partition: w for w in writes}
        alone: dict[int, dict[str, bytes]] = {}
        for uid, emb in refresh.embeddings.items():
            w = by_p.get(partition_of.get(uid, -1))  # only with the user's own state write
            if w is not None:
                w.embeddings[uid] = emb
        for rec, raw in committed:
            uid = rec.user_id
            p = partition_of[uid] if uid in partition_of else refresh.partitions[uid]
            if p in by_p:
                by_p[p].latest[rec.user_id] = raw
            else:
                alone.setdefault(p, {})[rec.user_id] = raw
        t0 = time.perf_counter()
        if writes:
            await self.store.write(writes)
        for p, latest in alone.items():
            await self.store.set_latest(p, latest)
        t1 = time.perf_counter()
        if committed and self.sink is not None:
            await self.sink(committed)
        if stages_s is not None:
            stages_s["redis_write"] = stages_s.get("redis_write", 0.0) + t1 - t0
            stages_s["publish"] = stages_s.get("publish", 0.0) + time.perf_counter() - t1
        return lists
