"""Topic names, message keys and the partitioning rule, in one place.

Interaction events and recommendations are keyed by ``user_id``, so one user's events
land in one partition, in order, and are handled by one worker. The partition of a key
is Kafka's default: murmur2 of the key bytes, positive, modulo the partition count,
which is what kafka-python, aiokafka and the Java client all compute.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """The four topics of a freshet deployment, named from one prefix."""

    prefix: str = "freshet"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def catalog(self) -> str:
        return f"{self.prefix}.catalog"

    @property
    def recommendations(self) -> str:
        return f"{self.prefix}.recommendations"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    def all(self) -> tuple[str, str, str, str]:
        return (self.events, self.catalog, self.recommendations, self.dead_letter)


def event_key(user_id: str) -> bytes:
    """The Kafka key of an interaction event or recommendation: the user id."""
    return user_id.encode("utf-8")


def catalog_key(item_id: str) -> bytes:
    """The Kafka key of a catalog event: the item id."""
    return item_id.encode("utf-8")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (32-bit, seed 0x9747b28c), as a signed int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length4 * 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, num_partitions: int) -> int:
    """Kafka's default partition for a non-null key.

    ``murmur2`` gives Kafka's own test values (``UtilsTest.testMurmur2``):

    >>> murmur2(b"21"), murmur2(b"foobar")
    (-973932308, -790332482)
    >>> partition_for(b"foobar", 4)
    2
    """
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
