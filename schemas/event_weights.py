"""How much each interaction type says about a user's taste: the one table.

Two columns, because two different sums read it:

- ``taste`` weighs an event in the trending sums (``streams.core.state_rules``) and in the
  training loss (``training.data``), which must agree so that what trends live is what
  the model learnt from. A rating weighs its value, clipped to 0..5.
- ``fold_in`` weighs an item's vector in the model-free user vector
  (``inference.fold_in``). It differs on purpose: a sum of vectors can be pushed *away*
  from an item, so a rating scales by the signed ``(value - 3) / 2`` (3 stars neutral,
  1 star repels), which a popularity sum cannot express; and views count a quarter of
  a click, so that browsing does not outweigh the few purchases that define a taste.
  These values are the ones the prequential benchmark was measured with; changing
  them is a quality change, to be decided on real data.

Adding an event type means adding its row here (a test checks every type has one).
"""

from __future__ import annotations

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

TASTE_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {t: w.taste for t, w in EVENT_WEIGHTS.items()}
)
FOLD_IN_WEIGHTS: Final[Mapping[EventType, float]] = MappingProxyType(
    {t: w.fold_in for t, w in EVENT_WEIGHTS.items()}
)


def taste_weight(
    event_type: str, value: float | None, table: Mapping[str, float] = TASTE_WEIGHTS
) -> float:
    """The ``taste`` weight of one event; an unknown type weighs 1.

    >>> taste_weight("purchase", None), taste_weight("rating", 4.0), taste_weight("rating", 9)
    (5.0, 4.0, 5.0)
    """
    base = table.get(event_type, 1.0)
    if event_type == "rating" and value is not None:
        return base * max(0.0, min(float(value), 5.0))
    return base
