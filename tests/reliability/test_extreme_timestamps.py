"""Valid events decades apart in one batch must apply, not overflow the trend sums.

Before the fix, a partition's first batch took its oldest event as the trend reference,
so a 1990 event next to today's made ``2 ** ((today - 1990) / half_life)`` overflow:
the batch raised on every retry and the partition stalled.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from schemas.codec import DecodeLimits, encode
from schemas.dead_letter import DeadLetter
from schemas.events import InteractionEvent
from schemas.topics import event_key
from streams.core.ingest import IngestProcessor, SourceRecord
from streams.core.state_rules import StateRules, replay_states
from streams.core.state_store import InMemoryStateStore

OLDEST = 631_152_000_000  # the earliest accepted time (1990-01-01)
TODAY = 1_764_000_000_000


async def _no_letters(letters: Sequence[DeadLetter]) -> None:
    assert not letters


def test_a_first_batch_spanning_decades_is_applied_with_finite_trends() -> None:
    events = [
        InteractionEvent("e1", "u1", "i1", "view", OLDEST),
        InteractionEvent("e2", "u1", "i2", "purchase", TODAY),
        InteractionEvent("e3", "u2", "i1", "view", OLDEST + 1),
    ]
    records = [
        SourceRecord("t.events", 0, i, event_key(e.user_id), encode(e))
        for i, e in enumerate(events)
    ]
    store = InMemoryStateStore()
    proc = IngestProcessor(store, StateRules(), DecodeLimits(), dead_letter_sink=_no_letters)
    stats = asyncio.run(proc.process(records))
    assert stats.applied == 3
    states, counts = replay_states(events, StateRules())
    assert counts == {"i1": 2, "i2": 1} and states["u1"].n_events == 2
    trend = asyncio.run(store.trending([0], 10))
    assert trend and all(math.isfinite(s) for _, s in trend)
    assert trend[0][0] == "i2"  # today's purchase outweighs two views from 1990
