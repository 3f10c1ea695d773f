"""What the read API answers for a user: pure rules, no client here."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.codec import ID_RE
from schemas.recommendation import Recommendation, RecommendedItem
from schemas.topics import event_key, partition_for
from streams.redis_io.generation import parse_generation


def valid_user_id(user_id: str) -> bool:
    """Whether the id matches the contract's id pattern (so it can name a key)."""
    return ID_RE.fullmatch(user_id) is not None


def user_partition(user_id: str, partitions: int) -> int:
    """The events partition a user's state lives with: the partition of its key."""
    return partition_for(event_key(user_id), partitions)


def generation_from(pointer: bytes | str | None) -> str | None:
    """The generation a pointer value names (``streams.redis_io.generation.parse_generation``).

    Returns ``None`` for a value the worker would refuse too, so a corrupt pointer is
    reported rather than used.
    """
    try:
        return parse_generation(pointer)
    except ValueError:  # UnicodeDecodeError included
        return None


def cold_start_list(
    user_id: str, trending: Sequence[tuple[str, float]], now_ms: int
) -> Recommendation:
    """A list for a user without one: the trending items, best first.

    It has the contract's shape, so clients need no second parser: strategy
    ``cold_start``, reason ``trending`` on every slot, no model version and no source
    event, and ``published_ts`` the time of the answer.
    """
    return Recommendation(
        user_id=user_id,
        items=tuple(RecommendedItem(item, float(score), "trending") for item, score in trending),
        strategy="cold_start",
        model_version=None,
        source_event_id=None,
        event_ts=None,
        published_ts=now_ms,
    )
