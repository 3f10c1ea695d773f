"""When a live timer re-reads what the batches write: pure rules over change tokens.

The worker's trending and popularity syncs read a change token each tick
(``RedisStateStore.change_token``: the keyspace, then each partition's offset
watermark). The token says not only *whether* the sums moved but *how far*: the
watermarks advance by one per record a batch applied. A re-read costs a round trip
and a merge (trending) or a scan of every count (popularity), and the sums it reads
decay with a half-life of hours, so a handful of events moves nothing a user sees.
``SyncPolicy`` re-reads once enough records were applied, or once anything was and the
last read is old enough.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["SyncPolicy", "records_between"]


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """When a sync whose token moved reads again.

    Args:
        min_records: Read at once when at least this many records were applied since
            the last read (1: on every change, as every tick once did).
        max_age_s: Read when anything was applied and the last read is at least
            this old, however few records came.

    >>> policy = SyncPolicy(min_records=500, max_age_s=10.0)
    >>> policy.due(moved=0, age_s=60.0), policy.due(moved=20, age_s=3.0)
    (False, False)
    >>> policy.due(moved=20, age_s=10.0), policy.due(moved=500, age_s=0.5)
    (True, True)
    >>> policy.due(moved=None, age_s=0.0)  # the distance is unknown: read
    True
    """

    min_records: int = 1
    max_age_s: float = 0.0

    def due(self, moved: int | None, age_s: float) -> bool:
        """Whether to read, ``moved`` records after the last read (None: unknown) and
        ``age_s`` seconds after it."""
        if moved is None:
            return True
        if moved <= 0:
            return False
        return moved >= self.min_records or age_s >= self.max_age_s


def records_between(old: Hashable, new: Hashable) -> int | None:
    """How many records were applied between two change tokens; None when the tokens
    do not say (another keyspace or partition count, a watermark that went back, a
    token of another shape). Equal tokens: 0.

    A token is a tuple: a keyspace name, then each partition's watermark as text
    ("" while the partition has none, which counts as -1).

    >>> records_between(("fr:g1", "5", "9"), ("fr:g1", "7", "9"))
    2
    >>> records_between(("fr:g1", "", "9"), ("fr:g1", "3", "12"))
    7
    >>> records_between(("fr:g1", "5"), ("fr:g2", "6")) is None
    True
    >>> records_between(("fr:g1", "5"), ("fr:g1", "4")) is None  # went back: a reset
    True
    """
    if old == new:
        return 0
    if not (isinstance(old, tuple) and isinstance(new, tuple)):
        return None
    if len(old) != len(new) or not old or old[0] != new[0]:
        return None
    moved = 0
    for before, after in zip(old[1:], new[1:], strict=True):
        try:
            step = _watermark(after) - _watermark(before)
        except (TypeError, ValueError):
            return None
        if step < 0:
            return None
        moved += step
    return moved


def _watermark(value: object) -> int:
    if value in ("", None):
        return -1
    return int(value)  # type: ignore[call-overload]
