"""A batch's delivery, followed by callbacks (``list_sinks._chained``), ends when and as
``_on_broker`` does: after the hand-over and every batch it handed to the broker, with
the first failure of either."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.runtime.list_sinks import _chained, _on_broker


async def both(batches: int, fail: str | None) -> list[tuple[bool, Any]]:
    """Run ``_chained`` and ``_on_broker`` side by side over the same futures; each
    one's (done before the last step, outcome)."""
    loop = asyncio.get_running_loop()
    handing: asyncio.Future[list[Any]] = loop.create_future()
    on_broker = [loop.create_future() for _ in range(batches)]
    chained = _chained(handing)
    old = asyncio.ensure_future(_on_broker([handing]))
    if fail == "hand-over":
        handing.set_exception(RuntimeError("hand-over"))
    else:
        handing.set_result(on_broker)
        for i, f in enumerate(on_broker[:-1]):
            if fail == "first" and i == 0:
                f.set_exception(RuntimeError("first"))
            else:
                f.set_result(i)
    for _ in range(5):
        await asyncio.sleep(0)
    early = [chained.done(), old.done()]
    if on_broker and fail != "hand-over":
        on_broker[-1].set_result(-1)
    out = []
    for fut, was in zip((chained, old), early, strict=True):
        try:
            out.append((was, await fut))
        except RuntimeError as exc:
            out.append((was, str(exc)))
    return out


@pytest.mark.parametrize("batches", [0, 1, 3])
async def test_it_ends_once_every_batch_is_on_the_broker(batches: int) -> None:
    (chained_early, chained), (old_early, old) = await both(batches, None)
    assert chained is None and old is None
    assert chained_early == old_early == (batches == 0)  # waits for the last batch


@pytest.mark.parametrize("fail", ["hand-over", "first"])
async def test_it_fails_as_the_first_failure(fail: str) -> None:
    (_, chained), (_, old) = await both(3, fail)
    assert chained == old == fail
