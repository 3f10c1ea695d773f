"""Users owed a list while nothing can score them yet (no catalog, first bundle loading).

Each user is held once, with the newest state; past ``cap`` the oldest are dropped.

>>> held = HeldUsers[str](cap=2)
>>> held.hold([("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1")])  # past the cap: b goes
>>> held.release(["c"]); held.take(named={"x"})
['a2']
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class HeldUsers(Generic[T]):
    """Held users by id, oldest first; see the module docstring."""

    def __init__(self, cap: int = 1_000_000) -> None:
        self.cap = cap
        self._held: dict[str, T] = {}

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, users: Iterable[tuple[str, T]]) -> None:
        """Hold each user with its newest item (re-inserted: newest last)."""
        held = self._held
        for user_id, item in users:
            held.pop(user_id, None)
            held[user_id] = item
        while len(held) > self.cap:
            del held[next(iter(held))]

    def release(self, user_ids: Iterable[str]) -> None:
        """Forget these users: a newer state of theirs is being scored."""
        for user_id in user_ids:
            self._held.pop(user_id, None)

    def take(self, named: Collection[str] = ()) -> list[T]:
        """Every held item except those of ``named`` users, oldest first; all are released."""
        out = [item for user_id, item in self._held.items() if user_id not in named]
        self._held = {}
        return out
