"""Stored state blobs to ``UserState`` and back, remembering the recent ones.

A store keeps each user's state as JSON bytes. Decoding a heavy user's blob (50 history
entries, hundreds of seen items and event ids) costs tens of microseconds, and the
users who come back batch after batch are exactly the heavy ones. So the blobs a worker
wrote or read lately are kept with their decoded state: reading the same bytes again
returns the same (immutable) state without parsing. Bytes decide, so a blob another
writer changed is decoded afresh; the memo only ever skips work that would give an
equal result (``UserState.from_obj`` inverts ``to_obj``).
"""

from __future__ import annotations

import orjson

from streams.core.state_rules import UserState

DEFAULT_BUDGET_BYTES = 32 << 20
"""Blob bytes remembered at most (oldest forgotten first)."""


class StateBlobs:
    """``decode`` and ``encode`` of stored states, with the recent blobs remembered.

    >>> blobs = StateBlobs()
    >>> raw = blobs.encode(UserState(seen=("i1",), n_events=1))
    >>> blobs.decode(raw) is blobs.decode(raw), blobs.decode(raw).seen
    (True, ('i1',))
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._known: dict[bytes, UserState] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def decode(self, blob: bytes) -> UserState:
        """The state ``blob`` holds."""
        state = self._known.get(blob)
        if state is not None:
            self.hits += 1
            return state
        self.misses += 1
        state = UserState.from_obj(orjson.loads(blob))
        self._remember(blob, state)
        return state

    def encode(self, state: UserState) -> bytes:
        """The blob of ``state``, remembered so that reading it back costs no parse."""
        blob = orjson.dumps(state.to_obj())
        self._remember(blob, state)
        return blob

    def _remember(self, blob: bytes, state: UserState) -> None:
        if len(blob) > self.budget_bytes or blob in self._known:
            return
        self._known[blob] = state
        self._bytes += len(blob)
        known = self._known
        while self._bytes > self.budget_bytes:  # dicts keep insertion order: oldest first
            old = next(iter(known))
            del known[old]
            self._bytes -= len(old)
