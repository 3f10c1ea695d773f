"""Pre-built record batches straight to their partition leaders, one produce request
per broker, past aiokafka's accumulator and sender task.

At light load each micro-batch publishes a list or a few, and through the producer's
``send_batch`` one list cost 12 passes of the event loop from ``enqueue_lists`` to
``delivered()`` done (the sender task woken twice, a produce task, the batch's shielded
future, the hand-over task) and about 1.5 ms of the loop's CPU on a 2-core host. Here
the calling task builds the request, writes it and reads the reply itself, and the same
span takes 6 passes (the median that ``tests/streams/test_direct_produce.py`` counts and
bounds at 7, and ``bench.list_publish_costs`` reports). What this path does not take
goes to the producer: ``batches`` declines a partition with no known leader and lists
that outgrow one batch, and ``send`` returns the partitions the broker refused, or all
of a request that failed, for the caller to hand to the producer, whose retries,
backoff and metadata refresh then apply as to its own batches. The caller keeps order
by sending here only while the producer holds none of its records for the topic
(``streams.runtime.list_sinks``).

Batches carry no producer id or sequence: the producer this replaces for lists is not
idempotent (acks all, retries until its request timeout), so a retried list may land
twice, as it could before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

__all__ = ["DirectProduce"]

MAGIC = 2  # record batch format v2 (Kafka 0.11+), as aiokafka's batches
NO_COMPRESSION = 0

Pairs = Sequence[tuple[bytes, bytes]]  # (key, value) in send order


class DirectProduce:
    """Produce requests of pre-built batches on an aiokafka client's connections.

    Args:
        client: The started producer's ``AIOKafkaClient`` (its metadata and connections).
        topic: The one topic this sends to.
        acks: Required acks (-1: all in-sync replicas); 0 is not taken here.
        timeout_ms: How long the broker may wait for the replicas.
        batch_bytes: Largest record batch, as the producer's ``max_batch_size``.
    """

    def __init__(
        self, client: Any, topic: str, *, acks: int, timeout_ms: int, batch_bytes: int
    ) -> None:
        if acks == 0:
            raise ValueError("acks=0 has no reply to wait for; use the producer")
        self.client = client
        self.topic = topic
        self.acks = acks
        self.timeout_ms = timeout_ms
        self.batch_bytes = batch_bytes

    def batches(self, by_part: Mapping[int, Pairs]) -> dict[int, list[tuple[int, bytes]]] | None:
        """Each partition's records as one record batch, grouped by leader node; None
        if a partition's leader is unknown or its records outgrow one batch."""
        cluster = self.client.cluster
        by_node: dict[int, list[tuple[int, bytes]]] = {}
        for partition, pairs in by_part.items():
            leader = cluster.leader_for_partition(TopicPartition(self.topic, partition))
            if leader is None or leader < 0:
                return None
            builder = DefaultRecordBatchBuilder(
                MAGIC, NO_COMPRESSION, 0, -1, -1, -1, self.batch_bytes
            )
            for offset, (key, value) in enumerate(pairs):
                if builder.append(offset, None, key, value, []) is None:
                    return None  # full: the producer splits it
            by_node.setdefault(leader, []).append((partition, bytes(builder.build())))
        return by_node

    async def send(self, by_node: Mapping[int, list[tuple[int, bytes]]]) -> list[int]:
        """Send each node's batches in one request and wait for the replies; returns
        the partitions not written (refused, or their request failed), for a retry."""
        nodes = list(by_node.items())
        if len(nodes) == 1:
            return await self._request(*nodes[0])
        replies = await asyncio.gather(*(self._request(*node) for node in nodes))
        return [p for failed in replies for p in failed]

    async def _request(self, node: int, parts: list[tuple[int, bytes]]) -> list[int]:
        request = ProduceRequest(None, self.acks, self.timeout_ms, [(self.topic, parts)])
        try:
            response = await self.client.send(node, request)
        except KafkaError:
            self.client.force_metadata_update()
            return [p for p, _ in parts]
        written = {info[0] for _, infos in response.topics for info in infos if info[1] == 0}
        failed = [p for p, _ in parts if p not in written]
        if failed:
            self.client.force_metadata_update()
        return failed
