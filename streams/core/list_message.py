"""The message a scored user's list goes out as: the list and the event it reflects.

Pure: no clients, no settings.
"""

from __future__ import annotations

from inference.recommend import UserList
from schemas.recommendation import Recommendation
from streams.core.ingest import TouchedUser


def list_message(
    user: TouchedUser, ul: UserList, published_ms: int, model_version: str | None
) -> Recommendation:
    """``ul`` for ``user`` as published at ``published_ms``, naming its source event."""
    source_id, event_ts = source_of(user)
    return Recommendation(
        user_id=user.user_id,
        items=ul.items,
        strategy=ul.strategy,
        model_version=model_version,
        source_event_id=source_id,
        event_ts=event_ts,
        published_ts=published_ms,
    )


def source_of(user: TouchedUser) -> tuple[str | None, int | None]:
    """The event a user's list names: the newest applied one.

    ``last_event`` when the batch carried it; otherwise the state's newest applied
    event (its id and history entry are appended together, so they match).

    >>> from streams.core.state_rules import HistoryEntry, UserState
    >>> state = UserState(history=(HistoryEntry("i1", "view", 5),), recent_event_ids=("e1",))
    >>> source_of(TouchedUser("u", 0, state, None, None, 0))
    ('e1', 5)
    """
    ev = user.last_event
    if ev is not None:
        return ev.event_id, ev.ts
    state = user.state
    if state.recent_event_ids and state.history:
        return state.recent_event_ids[-1], state.history[-1].ts
    return None, None
