"""Where per-user and per-partition state lives: the protocol and its two backends.

``InMemoryStateStore`` is the in-process fake used by unit tests and pure benchmarks;
``RedisStateStore`` (in ``streams/redis_io/redis_state_store.py``) is the real one. One contract
suite in the tests runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streams.core.state_rules import PopularityDelta, UserState


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user's stored state, embedding (float32 bytes) and latest list (JSON bytes)."""

    state: UserState
    embedding: bytes | None = None
    latest: bytes | None = None


_RECORD_SETTERS = tuple(vars(UserRecord)[name].__set__ for name in ("state", "embedding", "latest"))


def user_record(state: UserState, embedding: bytes | None, latest: bytes | None) -> UserRecord:
    """``UserRecord(state, embedding, latest)`` through its slots, at about half the cost
    of a frozen dataclass's ``__init__``: a batch's read builds one per user.

    >>> user_record(UserState(), b"e", None) == UserRecord(UserState(), b"e")
    True
    """
    rec = object.__new__(UserRecord)
    s_state, s_embedding, s_latest = _RECORD_SETTERS
    s_state(rec, state)
    s_embedding(rec, embedding)
    s_latest(rec, latest)
    return rec


@dataclass(frozen=True, slots=True)
class PartitionRead:
    """Which users of one partition a batch needs."""

    partition: int
    user_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    """A partition's offset watermark, trend reference time, and the users asked for."""

    partition: int
    watermark: int  # -1: nothing applied yet
    trend_ref_ms: int | None
    users: dict[str, UserRecord]


@dataclass(frozen=True, slots=True)
class PartitionWrite:
    """Everything one batch changes in one partition, applied atomically.

    Attributes:
        watermark: Offset of the last source record covered by this write.
        trend_ref_ms: The partition's trend reference time after this write.
        rebase_factor: If set, existing trend sums are multiplied by it first.
    """

    partition: int
    watermark: int
    trend_ref_ms: int
    states: dict[str, UserState] = field(default_factory=dict)
    embeddings: dict[str, bytes] = field(default_factory=dict)
    latest: dict[str, bytes] = field(default_factory=dict)
    popularity: PopularityDelta = field(default_factory=lambda: PopularityDelta({}, {}))
    rebase_factor: float | None = None
    expected_watermark: int | None = None


class StaleWatermark(RuntimeError):
    """A partition's watermark moved since the batch read it: another writer got there.

    Raised instead of writing, so a worker that lost a partition in a rebalance (and
    still finishes a buffered batch) cannot apply records the new owner applied too.
    The batch is retried: it re-reads the watermark and finds the records done.
    """


class StateStore(Protocol):
    """Batch reads and atomic per-partition writes of freshet's state."""

    async def read(self, reads: Sequence[PartitionRead]) -> dict[int, PartitionSnapshot]: ...

    async def write(self, writes: Sequence[PartitionWrite]) -> None: ...

    async def user(self, partition: int, user_id: str) -> UserRecord | None: ...

    async def set_latest(self, partition: int, lists: dict[str, bytes]) -> None: ...

    async def trending(self, partitions: Sequence[int], k: int) -> list[tuple[str, float]]: ...

    async def counts(self, partitions: Sequence[int]) -> dict[str, int]: ...


TREND_FLOOR = 1e-12


class InMemoryStateStore:
    """The in-process fake: same semantics as Redis, held in dicts."""

    def __init__(self, trending_half_life_s: float = 6 * 3600.0) -> None:
        self.half_life_s = trending_half_life_s
        self.users: dict[tuple[int, str], UserRecord] = {}
        self.watermarks: dict[int, int] = {}
        self.trend_refs: dict[int, int] = {}
        self.trend: dict[int, dict[str, float]] = {}
        self.item_counts: dict[int, dict[str, int]] = {}
        self.writes = 0

    async def read(self, reads: Sequence[PartitionRead]) -> dict[int, PartitionSnapshot]:
        out: dict[int, PartitionSnapshot] = {}
        for r in reads:
            users = {uid: rec for uid in r.user_ids if (rec := self.users.get((r.partition, uid)))}
            out[r.partition] = PartitionSnapshot(
                r.partition,
                self.watermarks.get(r.partition, -1),
                self.trend_refs.get(r.partition),
                users,
            )
        return out

    async def change_token(self, partitions: Sequence[int]) -> tuple[str, ...]:
        """Changes whenever a batch is written to one of ``partitions`` (its watermark)."""
        return ("memory", *(str(self.watermarks.get(p, "")) for p in partitions))

    async def write(self, writes: Sequence[PartitionWrite]) -> None:
        for w in writes:
            current = self.watermarks.get(w.partition, -1)
            if w.expected_watermark is not None and current != w.expected_watermark:
                raise StaleWatermark(
                    f"partition {w.partition}: watermark {current}, "
                    f"batch read {w.expected_watermark}"
                )
        for w in writes:
            self.writes += 1
            trend = self.trend.setdefault(w.partition, {})
            if w.rebase_factor is not None:
                factor = w.rebase_factor
                for item in list(trend):
                    trend[item] *= factor
                    if trend[item] < TREND_FLOOR:
                        del trend[item]
            for item, inc in w.popularity.trend.items():
                trend[item] = trend.get(item, 0.0) + inc
            counts = self.item_counts.setdefault(w.partition, {})
            for item, n in w.popularity.counts.items():
                counts[item] = counts.get(item, 0) + n
            for uid in w.states.keys() | w.embeddings.keys() | w.latest.keys():
                old = self.users.get((w.partition, uid))
                self.users[(w.partition, uid)] = UserRecord(
                    state=w.states.get(uid) or (old.state if old else UserState()),
                    embedding=w.embeddings.get(uid) or (old.embedding if old else None),
                    latest=w.latest.get(uid) or (old.latest if old else None),
                )
            self.watermarks[w.partition] = max(self.watermarks.get(w.partition, -1), w.watermark)
            self.trend_refs[w.partition] = w.trend_ref_ms

    async def user(self, partition: int, user_id: str) -> UserRecord | None:
        return self.users.get((partition, user_id))

    async def set_latest(self, partition: int, lists: dict[str, bytes]) -> None:
        for uid, raw in lists.items():
            old = self.users.get((partition, uid))
            self.users[(partition, uid)] = UserRecord(
                old.state if old else UserState(), old.embedding if old else None, raw
            )

    async def trending(self, partitions: Sequence[int], k: int) -> list[tuple[str, float]]:
        sums = [self.trend.get(p, {}) for p in partitions]
        return merge_trending(sums, self.trend_refs, partitions, k, self.half_life_s)

    async def counts(self, partitions: Sequence[int]) -> dict[str, int]:
        total: dict[str, int] = {}
        for p in partitions:
            for item, n in self.item_counts.get(p, {}).items():
                total[item] = total.get(item, 0) + n
        return total


def merge_trending(
    per_partition: Sequence[dict[str, float]],
    refs: dict[int, int],
    partitions: Sequence[int],
    k: int,
    half_life_s: float,
) -> list[tuple[str, float]]:
    """Sum partitions' trend sums on a common reference time; the top k, best first.

    Each partition scales its sums to its own reference time, so they are brought to
    the newest one before adding.
    """
    from streams.core.state_rules import rebase_factor

    newest = max((refs[p] for p in partitions if p in refs), default=0)
    total: dict[str, float] = {}
    for p, sums in zip(partitions, per_partition, strict=True):
        factor = rebase_factor(refs.get(p, newest), newest, half_life_s)
        for item, s in sums.items():
            total[item] = total.get(item, 0.0) + s * factor
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
