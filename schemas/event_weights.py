"""How much each interaction type says about a user's taste: the one table.

Two columns, because two different sums read it:

- ``taste`` weighs an event in the trending sums (``streams.core.state_rules``) and in the
  training loss (``training.data``), which must agree so that what trends live is what
  the model learnt from.
- ``fold_in`` weighs an item's vector in the model-free user vector
  (``inference.fold_in``). It differs on purpose: views count a quarter of a click, so
  that browsing does not outweigh the few purchases that define a taste. These values
  are the ones the prequential benchmark was measured with; changing them is a
  quality change, to be decided on real data.

**The rating rule** (the one place rating values get a meaning; ``docs/design.md``,
"Ratings"): a rating counts by its value clipped to 0..5 (``rating_value``); a rating
without a value, and every rating when ratings are treated as plain interactions
(``FRESHET_RATINGS_AS_INTERACTIONS``, ``--ratings-as-interactions``), counts as a top
rating, 5. A popularity or loss sum weighs a rating ``taste × value``; a sum of vectors
weighs it ``fold_in × (value − 3) / 2``, signed, because it can push *away* from an
item (3 stars neutral, 1 star repels, 5 stars pulls like a click).

Adding an event type means adding its row here (a test checks every type has one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from schemas.events import EventType


@dataclass(frozen=True, slots=True)
class EventWeight:
    """The weights of one event type (see the module docstring)."""

    taste: float
    fold_in: float


EVENT_WEIGHTS: Final[Mapping[EventType, EventWeight]] = MappingProxyType(
    {
        "view": EventWeight(taste=1.0, fold_in=0.25),
        "click": EventWeight(taste=2.0, fold_in=1.0),
        "add_to_cart": EventWeight(taste=3.0, fold_in=2.0),
        "purchase": EventWeight(taste=5.0, fold_in=4.0),
        "rating": EventWeight(taste=1.0, fold_in=1.0),  # times the rating (see above)
    }
)

RATING_TOP: Final = 5.0
"""A rating's scale: values are clipped to 0..5, and a plain interaction counts as 5."""
RATING_NEUTRAL: Final = 3.0
"""The rating that neither pulls nor pushes a sum of vectors."""


def rating_value(value: float | None, as_interactions: bool = False) -> float:
    """What a rating counts as under the rating rule (see the module docstring).

    >>> rating_value(4.0), rating_value(9.0), rating_value(None), rating_value(1.0, True)
    (4.0, 5.0, 5.0, 5.0)
    """
    if value is None or as_interactions or not math.isfinite(value):
        return RATING_TOP
    return max(0.0, min(float(value), RATING_TOP))


TASTE_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {t: w.taste for t, w in EVENT_WEIGHTS.items()}
)
FOLD_IN_WEIGHTS: Final[Mapping[EventType, float]] = MappingProxyType(
    {t: w.fold_in for t, w in EVENT_WEIGHTS.items()}
)


def taste_weight(
    event_type: str,
    value: float | None,
    table: Mapping[str, float] = TASTE_WEIGHTS,
    ratings_as_interactions: bool = False,
) -> float:
    """The ``taste`` weight of one event; an unknown type weighs 1.

    >>> taste_weight("purchase", None), taste_weight("rating", 4.0), taste_weight("rating", 9)
    (5.0, 4.0, 5.0)
    >>> taste_weight("rating", 1.0), taste_weight("rating", 1.0, ratings_as_interactions=True)
    (1.0, 5.0)
    """
    base = table.get(event_type, 1.0)
    if event_type == "rating":
        return base * rating_value(value, ratings_as_interactions)
    return base
