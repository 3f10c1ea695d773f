"""Redis key layout: one namespace, generations for replay, hash tags per partition.

Every key of one Kafka partition carries the hash tag ``{<gen>.p<N>}``, so all state a
micro-batch of that partition touches (its users, its offset watermark, its popularity)
lives in one Redis Cluster slot and is written by one atomic script call (fenced on the
partition's watermark; ``streams.redis_io.redis_state_store``). A user lives in the
partition of its key (``schemas.topics.partition_for``), hence on one shard.

Ids are validated by the contract (no ``:``, ``{``, ``}`` or whitespace); the builders
check again, so no id can address another user's keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.codec import ID_RE

_ID_LINES = re.compile(f"(?:(?:{ID_RE.pattern})\n)*")


class InvalidKeyId(ValueError):
    """An id that cannot be part of a key."""


def _checked(value: str) -> str:
    if ID_RE.fullmatch(value) is None:
        raise InvalidKeyId(f"id not allowed in a Redis key: {value[:64]!r}")
    return value


@dataclass(frozen=True, slots=True)
class Keyspace:
    """The keys of one generation of one namespace."""

    namespace: str = "fr"
    generation: str = "g1"

    # --- namespace-wide (not generation-bound) -------------------------------------
    @property
    def generation_pointer(self) -> str:
        """Holds the generation readers should use; switched atomically by replay."""
        return f"{self.namespace}:gen"

    @property
    def meta(self) -> str:
        """Deployment facts: partition count, store epoch."""
        return f"{self.namespace}:meta"

    # --- per partition ---------------------------------------------------------------
    def _p(self, partition: int) -> str:
        return f"{self.namespace}:{self.generation}:{{{self.generation}.p{partition}}}"

    def user(self, partition: int, user_id: str) -> str:
        """Hash with the user's state blob, embedding and latest list."""
        return f"{self._p(partition)}:u:{_checked(user_id)}"

    def users(self, partition: int, user_ids: Sequence[str]) -> list[str]:
        """``user`` of each id, the ids checked by one match over them all.

        >>> Keyspace("ns").users(3, ["a", "b"]) == [Keyspace("ns").user(3, u) for u in "ab"]
        True
        """
        lines = "".join([f"{u}\n" for u in user_ids])
        if _ID_LINES.fullmatch(lines) is None or lines.count("\n") != len(user_ids):
            for uid in user_ids:
                _checked(uid)  # raises for the first id not allowed
        prefix = f"{self._p(partition)}:u:"
        return [prefix + uid for uid in user_ids]

    def watermark(self, partition: int) -> str:
        """Offset of the last applied source record of the partition."""
        return f"{self._p(partition)}:wm"

    def trend(self, partition: int) -> str:
        """Sorted set: decayed popularity sums of the partition's events."""
        return f"{self._p(partition)}:trend"

    def counts(self, partition: int) -> str:
        """Hash: item id → interaction count from the partition's events."""
        return f"{self._p(partition)}:cnt"

    def partition_meta(self, partition: int) -> str:
        """Hash: trend reference time and other per-partition facts."""
        return f"{self._p(partition)}:meta"

    def partition_pattern(self) -> str:
        """Glob of every per-partition key of this generation (for cleanup)."""
        return f"{self.namespace}:{self.generation}:*"

    # --- catalog (global) ------------------------------------------------------------
    @property
    def catalog(self) -> str:
        """Hash: item id → catalog record (JSON)."""
        return f"{self.namespace}:{self.generation}:catalog"

    @property
    def catalog_log(self) -> str:
        """Stream of catalog changes that every worker tails to update its index."""
        return f"{self.namespace}:{self.generation}:catalog:log"

    def with_generation(self, generation: str) -> Keyspace:
        return Keyspace(self.namespace, generation)
