"""Micro-batches from an async stream that sleep while it is idle.

Faust's ``Stream.noack_take(max, within)`` wakes every ``within`` seconds whether or not
anything arrived (a 10 ms timeout loop per agent: the largest part of an idle worker's
CPU). ``micro_batches`` waits for the first item with no timeout at all, and only then
up to ``within_s`` for more, so an idle agent costs nothing and a busy one batches as
before. It holds at most ``max_items`` items: past that it stops pulling from the
source, so back-pressure reaches the consumer as with Faust's take.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


async def micro_batches(
    source: AsyncIterable[T], max_items: int, within_s: float
) -> AsyncIterator[list[T]]:
    """Lists of at most ``max_items`` items in source order; each is handed over when
    full, or ``within_s`` after its first item arrived. Ends when ``source`` does (an
    error of the source is raised once the items before it are handed over).
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
            if len(buffer) < max_items and not ended:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(full.wait(), within_s)
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


def quiet_take(stream: Any, max_items: int, within_s: float) -> AsyncIterator[list[Any]]:
    """``micro_batches`` of a Faust stream's events, none acked (the caller acks)."""
    return micro_batches(stream.noack().events(), max_items, within_s)
