"""Which Redis generation a worker writes, and the pause that lets replay switch it.

Replay builds a whole new generation next to the live one, then switches readers and
writers over in three steps: set the pause flag, drain the topic into the new
generation up to the end offsets read after the pause, point ``<ns>:gen`` at it, and
clear the pause. Workers check the flag and the pointer at the start of every batch,
so after the switch they write the new generation from exactly where replay stopped.
Writes are fenced on partition watermarks (``RedisStateStore.write``), so a replayer
and a worker writing the same generation never apply a record twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.redis_io.keyspace import Keyspace

DEFAULT_GENERATION = "g1"
_GEN_RE = re.compile(r"g[1-9][0-9]{0,8}")


def parse_generation(raw: bytes | str | None) -> str:
    """The generation a pointer value names; ``g1`` when unset; ValueError if garbled."""
    if raw is None:
        return DEFAULT_GENERATION
    value = raw.decode() if isinstance(raw, bytes) else raw
    if _GEN_RE.fullmatch(value) is None:
        raise ValueError(f"generation pointer holds {value[:40]!r}, not g<N>")
    return value


def next_generation(current: str) -> str:
    """``g1`` → ``g2``: the name replay builds into."""
    return f"g{int(parse_generation(current)[1:]) + 1}"


def pause_key(keys: Keyspace) -> str:
    """While this key exists, workers hold their batches (replay is switching)."""
    return f"{keys.namespace}:pause"


@dataclass
class GenerationFollower:
    """Keeps a worker's stores on the current generation; holds batches while paused.

    Args:
        client: asyncio Redis client.
        namespace: The deployment's key namespace.
        on_switch: Called with the new generation name when it changes.
        poll_s: Sleep between checks while paused.
    """

    client: Any
    namespace: str
    on_switch: Callable[[str], None]
    poll_s: float = 0.05
    generation: str = DEFAULT_GENERATION
    paused_batches: int = 0

    def queue(self, pipe: Any) -> None:
        """Queue the check's two reads, pause first, on ``pipe``.

        The worker's state read carries them (``RedisStateStore.guard``), so a batch
        pays no round trip of its own for the check; ``admit`` then judges the read.
        Two GETs, not MGET: in a Redis Cluster the keys sit in different slots. A
        pointer read after "not paused" is the old one only if the pause began in
        between, which the replay's grace period and fence cover.
        """
        for key in self.read_keys():
            pipe.get(key)

    def read_keys(self) -> tuple[str, str]:
        """The keys the check reads, in ``admit``'s order: the pause flag, the pointer."""
        keys = Keyspace(self.namespace)
        return pause_key(keys), keys.generation_pointer

    async def admit(self, paused: Any, pointer: Any) -> bool:
        """Whether a read that carried ``queue``'s values stands.

        It stands when no pause was set and the pointer names the generation this
        worker writes. Otherwise this waits out the pause, follows the pointer and
        returns False: the caller reads again, under the current generation's keys.
        """
        if paused is None and parse_generation(pointer) == self.generation:
            return True
        await self._settle(paused, pointer)
        return False

    async def before_batch(self) -> str:
        """Wait out a pause, follow a switched pointer; returns the generation to write."""
        await self._settle(*await self._check())
        return self.generation

    async def _check(self) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        self.queue(pipe)
        return list(await pipe.execute())

    async def _settle(self, paused: Any, pointer: Any) -> None:
        if paused is not None:
            self.paused_batches += 1
            while paused is not None:
                await asyncio.sleep(self.poll_s)
                paused, pointer = await self._check()
        generation = parse_generation(pointer)
        if generation != self.generation:
            self.generation = generation
            self.on_switch(generation)
