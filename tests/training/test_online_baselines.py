"""The batch EASE baseline of the prequential loop finds a planted item pair."""

from __future__ import annotations

from schemas.events import InteractionEvent
from streams.core.ingest import TouchedUser
from training.evaluation.online_baselines import BatchEASE
from training.evaluation.prequential import StreamState


def _feed(stream: StreamState, models: list, pairs: list[tuple[str, str]]) -> None:
    for n, (user, item) in enumerate(pairs):
        event = InteractionEvent(f"e{n}", user, item, "view", 1_000 * (n + 1))
        before = stream.apply(event)
        assert before is not None
        for model in models:
            model.observe(event, before)


def _planted() -> list[tuple[str, str]]:
    """Twenty users, each taking both items of one planted pair, plus a popular item z."""
    out = []
    for u in range(20):
        a, b = ("a", "b") if u % 2 else ("c", "d")
        out += [(f"u{u}", "z"), (f"u{u}", a), (f"u{u}", b)]
    return [*out, ("new", "a")]


def _first(model: object, stream: StreamState, user: str) -> str:
    lists = model.refresh([TouchedUser(user, 0, stream.states[user], None, None, 0)], 0)  # type: ignore[attr-defined]
    return stream.ids[int(lists[user][0])]


def test_ease_lists_the_planted_partner_after_a_refit() -> None:
    stream = StreamState()
    ease = BatchEASE(stream, l2=1.0)
    _feed(stream, [ease], _planted())
    assert _first(ease, stream, "new") == "z"  # before any refit: most popular
    ease.swap_bundle(None, 0)
    assert _first(ease, stream, "new") == "b"
    assert len(ease.seconds_fit) == 1
