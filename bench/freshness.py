"""How soon after each event a list reflecting it was published: the freshness figure.

A list reflects an event when it is the same user's and its ``event_ts`` (the newest
event its state had seen) is at or after the event's time. An event is *leading* when
its user had no list published in the debounce window before it, so the worker owes it
an immediate refresh; otherwise it is *deferred* to the window's trailing refresh.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Freshness:
    """Event-to-reflecting-list delays (ms), split by debounce role; unreflected events."""

    leading: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    unreflected: int = 0

    @property
    def all(self) -> list[int]:
        return self.leading + self.deferred


def _reflecting(
    lists: Iterable[tuple[str, int, int]],
) -> tuple[dict[str, list[int]], dict[str, list[tuple[int, int]]]]:
    """Per user: the lists' publish stamps in order, and (running max of event_ts, stamp).

    The first list at or after a time t that reflects an event of time e is the first
    one whose running max of ``event_ts`` reaches e.
    """
    by_user: dict[str, list[tuple[int, int]]] = {}
    for user, ets, pts in lists:
        by_user.setdefault(user, []).append((pts, ets))
    published: dict[str, list[int]] = {}
    reflecting: dict[str, list[tuple[int, int]]] = {}
    for user, rows in by_user.items():
        rows.sort()
        published[user] = [p for p, _ in rows]
        best = -1
        acc: list[tuple[int, int]] = []
        for pts, ets in rows:
            best = max(best, ets)
            acc.append((best, pts))
        reflecting[user] = acc
    return published, reflecting


def reflecting_stamps(
    events: Iterable[tuple[str, int]], lists: Iterable[tuple[str, int, int]]
) -> list[int | None]:
    """Per event, the ``published_ts`` of the first list of its user reflecting it (None: none).

    >>> reflecting_stamps([("a", 5), ("a", 9), ("b", 1)], [("a", 5, 12), ("a", 9, 20)])
    [12, 20, None]
    """
    _, reflecting = _reflecting(lists)
    out: list[int | None] = []
    for user, ets in events:
        rows = reflecting.get(user, [])
        i = bisect.bisect_left(rows, (ets, -(2**62)))
        out.append(None if i == len(rows) else rows[i][1])
    return out


def event_freshness(
    events: Iterable[tuple[str, int]],
    lists: Iterable[tuple[str, int, int]],
    window_ms: int,
) -> Freshness:
    """Delay from each event to the first list of its user that reflects it.

    Args:
        events: ``(user_id, event_ts_ms)`` of the events sent.
        lists: ``(user_id, event_ts_ms, published_ts_ms)`` of the lists published.
        window_ms: The worker's debounce window.
    """
    lists = list(lists)
    events = list(events)
    published, _ = _reflecting(lists)
    out = Freshness()
    for (user, ets), stamp in zip(events, reflecting_stamps(events, lists), strict=True):
        if stamp is None:
            out.unreflected += 1
            continue
        pubs = published.get(user, [])
        j = bisect.bisect_left(pubs, ets)
        recent = j > 0 and ets - pubs[j - 1] < window_ms
        (out.deferred if recent else out.leading).append(stamp - ets)
    return out
