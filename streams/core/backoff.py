"""Wait at start for Kafka and Redis with capped backoff, saying what is awaited.

A worker, the API or a command started before its broker or Redis must not exit: it
retries with exponential backoff capped at a few seconds, so a service that comes
back is found within about that cap, and it logs each wait with the reason. Errors
that waiting cannot fix (a refused password, a denied topic, a bad setting) are raised
at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final, TypeVar

log = logging.getLogger("freshet.wait")

T = TypeVar("T")

BACKOFF_FIRST_S: Final = 0.25
BACKOFF_CAP_S: Final = 3.0
"""Longest pause between two attempts: a service that is back is found within it."""


def backoff_delays(
    first_s: float = BACKOFF_FIRST_S, cap_s: float = BACKOFF_CAP_S
) -> Iterator[float]:
    """Pauses between attempts: doubling from ``first_s``, then ``cap_s`` for ever.

    >>> from itertools import islice
    >>> list(islice(backoff_delays(0.25, 3.0), 7))
    [0.25, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    """
    delay = first_s
    while True:
        yield min(delay, cap_s)
        delay = min(delay * 2, cap_s)


class _Waits:
    """The backoff and the log lines of one wait, shared by the sync and async loops."""

    def __init__(
        self,
        what: str,
        transient: Callable[[BaseException], bool],
        cap_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.what = what
        self.transient = transient
        self.clock = clock
        self.delays = backoff_delays(cap_s=cap_s)
        self.started = clock()
        self.attempts = 0

    def failed(self, exc: Exception) -> float:
        """The pause before the next attempt; raises ``exc`` if waiting cannot fix it."""
        if not self.transient(exc):
            raise exc
        self.attempts += 1
        delay = next(self.delays)
        log.warning(
            "waiting for %s (attempt %d, %.0f s so far): %s; next try in %.2g s",
            self.what,
            self.attempts,
            self.clock() - self.started,
            _reason(exc),
            delay,
        )
        return delay

    def done(self) -> None:
        if self.attempts:
            log.info("%s is up after %.1f s of waiting", self.what, self.clock() - self.started)


def wait_until_up(
    attempt: Callable[[], T],
    what: str,
    transient: Callable[[BaseException], bool],
    *,
    cap_s: float = BACKOFF_CAP_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``attempt()``'s result once it succeeds, retrying while it fails ``transient``-ly.

    Args:
        attempt: Connects, or does the first thing that needs the service.
        what: The service as the log names it, e.g. ``Kafka at 127.0.0.1:9092``.
        transient: Whether an error may go away by waiting; any other is raised.
        cap_s: Longest pause between attempts.
        sleep: Pauses (injected in tests).
        clock: Measures the wait for the log (injected in tests).
    """
    waits = _Waits(what, transient, cap_s, clock)
    while True:
        try:
            result = attempt()
        except Exception as exc:
            sleep(waits.failed(exc))
            continue
        waits.done()
        return result


async def wait_until_up_async(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    transient: Callable[[BaseException], bool],
    *,
    cap_s: float = BACKOFF_CAP_S,
) -> T:
    """``wait_until_up`` for a coroutine; cancelling it ends the wait."""
    waits = _Waits(what, transient, cap_s, time.monotonic)
    while True:
        try:
            result = await attempt()
        except Exception as exc:
            await asyncio.sleep(waits.failed(exc))
            continue
        waits.done()
        return result


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"
