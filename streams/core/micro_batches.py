"""Micro-batches from an async stream that sleep while it is idle.

Faust's ``Stream.noack_take(max, within)`` wakes every ``within`` seconds whether or not
anything arrived (a 10 ms timeout loop per agent: the largest part of an idle worker's
CPU). ``micro_batches`` waits for the first item with no timeout at all, and only then
up to ``within_s`` for more, so an idle agent costs nothing and a busy one batches as
before. It holds at most ``max_items`` items: past that it stops pulling from the
source, so back-pressure reaches the consumer as with Faust's take.

The window is only worth waiting while whoever processes the batches is busy: given a
``free`` event (set while the processor waits for work), a batch goes as soon as it is
set, with what has arrived by then. At light load no record waits for a window; under
load the window (or a full batch) closes it as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


async def micro_batches(
    source: AsyncIterable[T],
    max_items: int,
    within_s: float,
    free: asyncio.Event | None = None,
) -> AsyncIterator[list[T]]:
    """Lists of at most ``max_items`` items in source order; each is handed over when
    full, ``within_s`` after its first item arrived, or as soon as ``free`` is set
    (the processor waits for work). Ends when ``source`` does (an error of the source
    is raised once the items before it are handed over).
    """
    buffer: list[T] = []
    arrived, full, room = asyncio.Event(), asyncio.Event(), asyncio.Event()
    room.set()
    ended = False

    async def feed() -> None:
        nonlocal ended
        try:
            async for item in source:
                while len(buffer) >= max_items:
                    room.clear()
                    await room.wait()
                buffer.append(item)
                arrived.set()
                if len(buffer) >= max_items:
                    full.set()
        finally:
            ended = True
            arrived.set()
            full.set()

    feeder = asyncio.ensure_future(feed())
    try:
        while True:
            await arrived.wait()  # no timeout: an idle consumer sleeps here
            if not buffer:
                feeder.result()  # ended: raises the source's error, if any
                return
            if len(buffer) < max_items and not ended and not (free and free.is_set()):
                await _first_of(full, free, within_s)
            batch = buffer[:max_items]
            del buffer[:max_items]
            if not buffer and not ended:
                arrived.clear()
            if len(buffer) < max_items and not ended:
                full.clear()
            room.set()
            yield batch
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder


async def _first_of(full: asyncio.Event, free: asyncio.Event | None, within_s: float) -> None:
    """Wait until ``full`` or ``free`` is set, or ``within_s`` has passed."""
    if free is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(full.wait(), within_s)
        return
    waits = {asyncio.ensure_future(full.wait()), asyncio.ensure_future(free.wait())}
    try:
        await asyncio.wait(waits, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def quiet_take(
    stream: Any, max_items: int, within_s: float, free: asyncio.Event | None = None
) -> AsyncIterator[list[Any]]:
    """``micro_batches`` of a Faust stream's events, none acked (the caller acks)."""
    return micro_batches(stream.noack().events(), max_items, within_s, free)
