"""Notice when Redis comes back without freshet's state (restarted empty, flushed).

Exactly-once state rests on Redis keeping what it acknowledged. A Redis that restarts
without persistence answers again, empty, and the worker would go on applying new
records onto empty state from Kafka's committed offsets: earlier events are silently
gone. The guard makes that loud. Each worker remembers the store's epoch, a random
marker written once under ``Keyspace.meta``; a timer reads it back every few seconds.
A marker that vanished or changed means the data under it is not the data the worker
was writing to: it logs an ERROR ``Redis lost freshet state`` and raises its flag.

It detects, it does not repair: rebuilding state needs replay into a new generation,
which is not built yet. A loss while no worker runs is not noticed (a fresh start and a
wiped store look the same).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from streams.redis_io.keyspace import Keyspace

log = logging.getLogger("freshet.worker")

EPOCH_FIELD = "epoch"


class EpochCheck(Enum):
    """What one read of the epoch marker says."""

    UNKNOWN = "unknown"  # this worker has not established the epoch yet
    SAME = "same"
    LOST = "lost"  # the marker is gone or another one took its place


def judge(remembered: str | None, found: str | None) -> EpochCheck:
    """Compare the epoch this worker remembers with the one Redis holds now."""
    if remembered is None:
        return EpochCheck.UNKNOWN
    return EpochCheck.SAME if found == remembered else EpochCheck.LOST


@dataclass
class StateGuard:
    """Per-worker watch on the store's epoch; ``lost`` stays raised once a loss is seen."""

    redis: Any
    keys: Keyspace
    epoch: str | None = None
    lost: bool = False
    losses: int = 0

    async def _establish(self) -> str:
        """The store's epoch: the one there, or a new one if there is none."""
        await self.redis.hsetnx(self.keys.meta, EPOCH_FIELD, uuid.uuid4().hex)
        raw = await self.redis.hget(self.keys.meta, EPOCH_FIELD)
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def check(self) -> EpochCheck:
        """Read the marker once; on a loss, log it, raise the flag and adopt a new epoch."""
        raw = await self.redis.hget(self.keys.meta, EPOCH_FIELD)
        found = raw.decode() if isinstance(raw, bytes) else raw
        verdict = judge(self.epoch, found)
        if verdict is EpochCheck.LOST:
            self.lost = True
            self.losses += 1
            log.error(
                "Redis lost freshet state: store epoch %s is now %s; state written before "
                "is gone and events applied before it will not be replayed",
                self.epoch,
                found or "missing",
            )
        if verdict is not EpochCheck.SAME:
            # Adopt the current epoch, so a second loss is seen as well.
            self.epoch = await self._establish()
        return verdict


def add_state_guard(app: Any, redis: Any, keys: Keyspace, interval_s: float = 2.0) -> StateGuard:
    """Register a Faust timer that checks the store epoch every ``interval_s``."""
    guard = StateGuard(redis, keys)

    async def state_guard() -> None:
        try:
            await guard.check()
        except Exception as exc:  # Redis down: nothing to judge, the batch retries report it
            log.debug("state guard check failed: %s", exc)

    app.timer(interval_s, name="state_guard")(state_guard)
    return guard
