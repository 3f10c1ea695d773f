"""Per-user debounce of list refreshes: one list per burst, none lost.

Leading edge: a user not refreshed within the window is refreshed at once. Trailing
edge: events inside the window mark the user pending, and one refresh goes out when
the window closes, covering all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


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
    """

    window_ms: int
    max_users: int = 1_000_000
    last_refresh: dict[str, int] = field(default_factory=dict)
    pending: dict[str, T] = field(default_factory=dict)

    def admit(self, items: Iterable[tuple[str, T]], now_ms: int) -> list[T]:
        """Items to refresh now; the others become (or stay) pending with the newest item."""
        now: list[T] = []
        for user, item in items:
            last = self.last_refresh.get(user)
            if self.window_ms <= 0 or last is None or now_ms - last >= self.window_ms:
                self.last_refresh[user] = now_ms
                self.pending.pop(user, None)
                now.append(item)
            else:
                self.pending[user] = item
        self._trim()
        return now

    def due(self, now_ms: int) -> list[T]:
        """Pending items whose window has closed; they count as refreshed now."""
        ready = [u for u in self.pending if now_ms - self.last_refresh.get(u, 0) >= self.window_ms]
        out = []
        for user in ready:
            out.append(self.pending.pop(user))
            self.last_refresh[user] = now_ms
        return out

    def _trim(self) -> None:
        # Bound memory: forget the oldest refresh times (insertion order) past the cap.
        while len(self.last_refresh) > self.max_users:
            oldest = next(iter(self.last_refresh))
            if oldest in self.pending:
                break
            del self.last_refresh[oldest]
