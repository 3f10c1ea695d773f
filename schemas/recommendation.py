"""Output message: one user's fresh recommendation list (schema version 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Reason = Literal["personalised", "trending", "exploration", "similar_to_item", "new_item"]
REASONS: tuple[Reason, ...] = get_args(Reason)

Strategy = Literal["personalised", "cold_start", "model_free"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    """One slot of a list: the item, its finite score and why it is there."""

    item_id: str
    score: float
    reason: Reason
    reason_item_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "item_id": self.item_id,
            "score": self.score,
            "reason": self.reason,
        }
        if self.reason_item_id is not None:
            out["reason_item_id"] = self.reason_item_id
        return out


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A fresh list for one user; see ``json/recommendation.v1.json``.

    Attributes:
        user_id: The user; also the Kafka key.
        items: Ranked slots, best first.
        strategy: ``personalised``, ``cold_start`` (unknown user) or ``model_free``
            (no usable model bundle: decayed fold-in of item vectors).
        model_version: Version of the bundle that scored the list, if any.
        source_event_id: The newest event that triggered this list.
        event_ts: Event time of that event, epoch ms.
        published_ts: Wall-clock publish time, epoch ms.
    """

    user_id: str
    items: tuple[RecommendedItem, ...]
    strategy: Strategy
    model_version: str | None
    source_event_id: str | None
    event_ts: int | None
    published_ts: int
    schema_version: int = 1

    def to_dict(self) -> dict[str, object]:
        return {
            "schema_version": self.schema_version,
            "user_id": self.user_id,
            # ``RecommendedItem.to_dict`` inlined: a list's 20 slots in one pass, no
            # call per slot (the worker encodes every list it publishes).
            "items": [
                {"item_id": it.item_id, "score": it.score, "reason": it.reason}
                if it.reason_item_id is None
                else {
                    "item_id": it.item_id,
                    "score": it.score,
                    "reason": it.reason,
                    "reason_item_id": it.reason_item_id,
                }
                for it in self.items
            ],
            "strategy": self.strategy,
            "model_version": self.model_version,
            "source_event_id": self.source_event_id,
            "event_ts": self.event_ts,
            "published_ts": self.published_ts,
        }
