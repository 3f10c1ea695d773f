"""The one rating rule: training, serving and the bench read a rating's value alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from inference.fold_in import event_weights
from schemas.event_weights import TASTE_WEIGHTS, rating_value, taste_weight
from schemas.events import InteractionEvent
from streams.core.file_reader import read_events
from streams.core.state_rules import StateRules
from training.data import build_log


def _ratings(tmp_path: Path, as_interactions: bool) -> list[InteractionEvent]:
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,11,1.0,964982704\n")
    events = read_events(path, items="", ratings_as_interactions=as_interactions)
    return [e for e in events if isinstance(e, InteractionEvent)]


def test_the_rule_gives_the_same_known_answers_in_training_serving_and_fold_in(
    tmp_path: Path,
) -> None:
    """4 and 1 stars: weights 4 and 1 (sums), +0.5 and -1 (vectors); as interactions, 5."""
    for as_interactions, taste, pull in [
        (False, [4.0, 1.0], [0.5, -1.0]),
        (True, [5.0] * 2, [1.0] * 2),
    ]:
        events = _ratings(tmp_path, as_interactions)
        assert [e.value for e in events] == ([None] * 2 if as_interactions else [4.0, 1.0])
        assert build_log(events).weights.tolist() == taste  # the training loss
        assert [StateRules().weight(e) for e in events] == taste  # trending, served
        values = [np.nan if e.value is None else e.value for e in events]
        assert event_weights(["rating"] * 2, values).tolist() == pull  # the fold-in
    # A worker fed valued ratings from Kafka reads them the same way under the option.
    valued = _ratings(tmp_path, False)
    rules = StateRules(ratings_as_interactions=True)
    assert [rules.weight(e) for e in valued] == [5.0, 5.0]
    assert event_weights(["rating"] * 2, [4.0, 1.0], ratings_as_interactions=True).tolist() == [
        1.0,
        1.0,
    ]


@given(st.one_of(st.none(), st.floats(-10, 10)), st.booleans())
def test_sums_and_vectors_read_one_value(value: float | None, as_interactions: bool) -> None:
    """The popularity/loss weight and the fold-in weight are two faces of one value."""
    counted = rating_value(value, as_interactions)
    assert 0.0 <= counted <= 5.0
    taste = taste_weight("rating", value, TASTE_WEIGHTS, as_interactions)
    assert taste == TASTE_WEIGHTS["rating"] * counted
    raw = np.nan if value is None else value
    pull = event_weights(["rating"], [raw], ratings_as_interactions=as_interactions)[0]
    assert np.isclose(pull, (counted - 3.0) / 2.0)
