"""The freshet contract: message types, their JSON Schemas, encoding, topics and keys.

This package imports nothing else from the project; everything else may import it.
"""

from schemas.dead_letter import DEAD_LETTER_REASONS, DeadLetter, DeadLetterReason
from schemas.events import (
    EVENT_TYPES,
    CatalogEvent,
    CatalogOp,
    EventType,
    InteractionEvent,
)
from schemas.recommendation import (
    REASONS,
    STRATEGIES,
    Reason,
    Recommendation,
    RecommendedItem,
    Strategy,
)

__all__ = [
    "DEAD_LETTER_REASONS",
    "EVENT_TYPES",
    "REASONS",
    "STRATEGIES",
    "CatalogEvent",
    "CatalogOp",
    "DeadLetter",
    "DeadLetterReason",
    "EventType",
    "InteractionEvent",
    "Reason",
    "Recommendation",
    "RecommendedItem",
    "Strategy",
]
