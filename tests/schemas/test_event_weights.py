"""One event-weight table: every type has a row, and every reader takes it from there."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from inference.fold_in import event_weights
from schemas.event_weights import EVENT_WEIGHTS
from schemas.events import EVENT_TYPES, InteractionEvent
from streams.core.state_rules import StateRules
from training.data import DEFAULT_TYPE_WEIGHTS, event_weight


def test_every_event_type_has_its_weights() -> None:
    assert set(EVENT_WEIGHTS) == set(EVENT_TYPES)


@given(st.sampled_from(EVENT_TYPES), st.one_of(st.none(), st.floats(-10, 10)))
def test_trending_and_training_weigh_an_event_alike(kind: str, value: float | None) -> None:
    ev = InteractionEvent("e", "u", "i", kind, 1, value=value if kind == "rating" else None)  # type: ignore[arg-type]
    assert StateRules().weight(ev) == event_weight(ev, DEFAULT_TYPE_WEIGHTS)


def test_the_fold_in_reads_its_column() -> None:
    kinds = list(EVENT_TYPES)
    expected = [EVENT_WEIGHTS[k].fold_in for k in kinds]  # type: ignore[index]
    np.testing.assert_allclose(event_weights(kinds), expected)
    # a rating's fold-in weight is signed: 1 star pushes away, 3 is neutral, 5 pulls
    np.testing.assert_allclose(event_weights(["rating"] * 3, [1.0, 3.0, 5.0]), [-1.0, 0.0, 1.0])
