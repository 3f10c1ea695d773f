"""Per-user debounce of list refreshes: one list per burst, none lost.

Leading edge: a user not refreshed within the window is refreshed at once. Trailing
edge: events inside the window mark the user pending, and one refresh goes out when
the window closes, covering all of them.

Two policies. *Fixed* (an operator's choice): the window is always ``window_ms``, so a
user gets at most one list per window. *Adaptive* (the worker's default): while the
worker keeps up there is no window at all, and each micro-batch's lists go out with
it (a burst inside one batch is coalesced by the batch); once the oldest event of a
batch, and of the batch before it in its lane (the batch agent's partition lanes run
side by side), has waited more than ``behind_ms``, the window (that lane's) is
the shorter of those waits, capped at ``window_ms``: a user is not refreshed more
often than the lists could be fresh.

Two batches in a row, because one batch whose oldest event waited long is most often a
hiccup, not a backlog: the batch before it ran long (a collection, the host's other
work), the events that came meanwhile all went into this one, and the next batch is
caught up again. A window opened there deferred this batch's users that had a list in
the batch before, and in the bench's shop (``bench.stream_bench``) about 84 % of events
come within 50 ms of their user's previous one: a hiccup's whole batch waited for one
more batch, or the timer, past 50 ms. A backlog lasts: every batch of a saturated
drain has waited, so its window opens from the second batch on, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def adaptive_window_ms(
    lag_ms: float, behind_ms: int, cap_ms: int, before_ms: float | None = None
) -> int:
    """The window for a batch whose oldest event waited ``lag_ms`` (``before_ms``: the
    batch before it; behind only when both waited over ``behind_ms``).

    >>> adaptive_window_ms(8, behind_ms=50, cap_ms=200)  # keeping up: no window
    0
    >>> adaptive_window_ms(120, 50, 200), adaptive_window_ms(900, 50, 200)
    (120, 200)
    >>> adaptive_window_ms(120, 50, 200, before_ms=20)  # a lone late batch: a hiccup
    0
    >>> adaptive_window_ms(120, 50, 200, before_ms=90), adaptive_window_ms(900, 50, 200, 900)
    (90, 200)
    """
    if before_ms is not None:
        lag_ms = min(lag_ms, before_ms)
    if cap_ms <= 0 or lag_ms <= behind_ms:
        return 0
    return int(min(lag_ms, cap_ms))


@dataclass
class Debouncer(Generic[T]):
    """Decides which users refresh now and holds the rest until their window closes.

    >>> d = Debouncer[str](window_ms=100)
    >>> d.admit([("u", "e1")], now_ms=0)  # leading edge: at once
    ['e1']
    >>> d.admit([("u", "e2"), ("u", "e3")], now_ms=30)  # inside the window: held
    []
    >>> d.due(now_ms=80), d.due(now_ms=100)  # trailing edge: one, with the newest
    ([], ['e3'])

    Adaptive (``behind_ms`` set): no window unless the batch, and the one before it,
    are behind.

    >>> a = Debouncer[str](window_ms=200, behind_ms=50)
    >>> a.admit([("u", "e1")], now_ms=0, lag_ms=5), a.admit([("u", "e2")], 10, lag_ms=5)
    (['e1'], ['e2'])
    >>> a.admit([("u", "e3")], now_ms=20, lag_ms=80)  # one late batch: a hiccup, no window
    ['e3']
    >>> a.admit([("u", "e4")], now_ms=30, lag_ms=90)  # late again: behind, an 80 ms window
    []
    >>> a.due(now_ms=60), a.due(now_ms=100)
    ([], ['e4'])
    """

    window_ms: int
    max_users: int = 1_000_000
    behind_ms: int | None = None
    """Adaptive when set: the backlog (ms) past which a window opens; ``window_ms`` caps it."""
    last_refresh: dict[str, int] = field(default_factory=dict)
    pending: dict[str, T] = field(default_factory=dict)
    current_ms: dict[int, int] = field(default_factory=dict)
    """Adaptive: the window in force in each lane (its last batch's); none before it."""
    last_lag_ms: dict[int, float] = field(default_factory=dict)
    """Adaptive: how long each lane's last batch's oldest event had waited. Batches of
    lanes side by side interleave: a caught-up lane's must not break a lagging lane's
    run of late batches (its backlog would never open a window)."""

    pending_lane: dict[str, int] = field(default_factory=dict)
    """The lane of each pending user's last batch (whose window ``due`` applies)."""

    def window(self, lane: int = 0) -> int:
        """The window that ``due`` applies now to ``lane``'s users."""
        if self.behind_ms is None or self.window_ms <= 0:
            return self.window_ms
        return self.current_ms.get(lane, self.window_ms)

    def admit(
        self, items: Iterable[tuple[str, T]], now_ms: int, lag_ms: float = 0.0, lane: int = 0
    ) -> list[T]:
        """Items to refresh now; the others become (or stay) pending with the newest item.

        ``lag_ms``: how long the batch's oldest event has waited (adaptive policy only),
        compared with the last batch of the same ``lane``.
        """
        if self.behind_ms is not None:
            before = self.last_lag_ms.get(lane, 0.0)
            self.current_ms[lane] = adaptive_window_ms(
                lag_ms, self.behind_ms, self.window_ms, before
            )
            self.last_lag_ms[lane] = lag_ms
        window = self.window(lane)
        now: list[T] = []
        for user, item in items:
            last = self.last_refresh.get(user)
            if window <= 0 or last is None or now_ms - last >= window:
                self.last_refresh[user] = now_ms
                self.pending.pop(user, None)
                self.pending_lane.pop(user, None)
                now.append(item)
            else:
                self.pending[user] = item
                self.pending_lane[user] = lane
        self._trim()
        return now

    def due(self, now_ms: int) -> list[T]:
        """Pending items whose window has closed; they count as refreshed now."""
        lanes = self.pending_lane
        ready = [
            u
            for u in self.pending
            if now_ms - self.last_refresh.get(u, 0) >= self.window(lanes.get(u, 0))
        ]
        out = []
        for user in ready:
            out.append(self.pending.pop(user))
            lanes.pop(user, None)
            self.last_refresh[user] = now_ms
        return out

    def _trim(self) -> None:
        # Bound memory: forget the oldest refresh times (insertion order) past the cap.
        while len(self.last_refresh) > self.max_users:
            oldest = next(iter(self.last_refresh))
            if oldest in self.pending:
                break
            del self.last_refresh[oldest]
