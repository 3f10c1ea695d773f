"""A bench-only flight recorder for the worker: where the slowest events' time went.

``python -m bench.tail_probe OUT.jsonl worker`` runs ``freshet worker`` with a few hooks
installed first; each writes a row (wall-clock ms, ``time.time()``, so rows join the
bench's event stamps and the lists' ``published_ts``) to ``OUT.jsonl``, flushed by a
thread every half second:

- ``chunk``: a fetch's records of one partition put on the agent's ``ChunkQueue``
  (partition, first and last offset): the records reached the worker;
- ``take``: the agent took chunks for a micro-batch (their partitions and offsets);
- ``batch``: the ingest handler ran one micro-batch, from ``t0`` to ``t1``, with its
  stage times (ms) and each partition's offset range;
- ``ack``: a finished batch's chunks acked (its lists delivered, the batch before acked);
- ``slow``: a callback of the event loop that held it at least ``SLOW_MS``: its wall
  and thread-CPU time (wall well above CPU: the process waited for a core, or for the
  GIL held by another thread) and what it was (a task's coroutine, a timer);
- ``gc``: a collection by the garbage collector (generation, wall and thread-CPU ms, the
  thread it ran in).

The hooks cost about a microsecond per loop callback, so the figures of a probed run
are for attribution, not for the curve itself (``bench.tail_breakdown`` joins them).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench.loop_wakeups import _label

SLOW_MS = 2.0
"""A loop callback that holds the loop this long (wall) is recorded."""

_rows: list[dict[str, Any]] = []


def _now() -> float:
    return time.time() * 1000.0


def _ranges(records: Any) -> list[list[int]]:
    """[partition, first offset, last offset] of each partition of ``records``."""
    spans: dict[int, list[int]] = {}
    for r in records:
        span = spans.get(r.partition)
        if span is None:
            spans[r.partition] = [r.partition, r.offset, r.offset]
        else:
            span[1], span[2] = min(span[1], r.offset), max(span[2], r.offset)
    return list(spans.values())


def _chunk_spans(chunks: Any) -> list[list[int]]:
    return [
        [tag[0].partition, items[0].offset, items[-1].offset] for tag, items, _ in chunks if items
    ]


def install() -> None:
    """Hook the chunk queue, the ingest handler, the acks, the loop and the collector."""
    from streams.core.ingest import IngestProcessor
    from streams.core.micro_batches import ChunkQueue
    from streams.runtime.faust_batches import BatchDeliveryConsumer

    rows = _rows
    put_nowait = ChunkQueue.put_nowait

    def _put_nowait(self: Any, tag: Any, items: list[Any], at: float) -> None:
        if items and hasattr(tag[0], "partition"):
            rows.append(
                {"k": "chunk", "t": _now(), "p": tag[0].partition, "o0": items[0].offset,
                 "o1": items[-1].offset}
            )  # fmt: skip
        put_nowait(self, tag, items, at)

    take = ChunkQueue.take

    async def _take(self: Any, most: int | None = None, lane: int = 0) -> Any:
        chunks = await take(self, most, lane)
        if chunks and hasattr(chunks[0][0][0], "partition"):
            rows.append({"k": "take", "t": _now(), "spans": _chunk_spans(chunks)})
        return chunks

    process = IngestProcessor.process

    async def _process(self: Any, records: Any) -> Any:
        t0 = _now()
        stats = await process(self, records)
        rows.append(
            {"k": "batch", "t0": t0, "t1": _now(), "n": len(records), "spans": _ranges(records),
             "stages": {k: round(1000.0 * v, 3) for k, v in stats.stages_s.items()}}
        )  # fmt: skip
        return stats

    ack_chunks = BatchDeliveryConsumer.ack_chunks

    def _ack_chunks(self: Any, chunks: Any) -> int:
        chunks = list(chunks)
        rows.append({"k": "ack", "t": _now(), "spans": _chunk_spans(chunks)})
        return ack_chunks(self, chunks)

    ChunkQueue.put_nowait = _put_nowait  # type: ignore[method-assign]
    ChunkQueue.take = _take  # type: ignore[method-assign]
    IngestProcessor.process = _process  # type: ignore[method-assign]
    BatchDeliveryConsumer.ack_chunks = _ack_chunks  # type: ignore[method-assign]

    run = asyncio.events.Handle._run
    perf, thread_time = time.perf_counter, time.thread_time

    def _run(self: Any) -> None:
        w0, c0 = perf(), thread_time()
        try:
            run(self)
        finally:
            wall = 1000.0 * (perf() - w0)
            if wall >= SLOW_MS:
                rows.append(
                    {"k": "slow", "t": _now() - wall, "ms": round(wall, 3),
                     "cpu": round(1000.0 * (thread_time() - c0), 3),
                     "what": _label(self._callback)}
                )  # fmt: skip

    asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    started: dict[int, tuple[float, float]] = {}

    def _gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[threading.get_ident()] = (perf(), thread_time())
        else:
            begun = started.pop(threading.get_ident(), None)
            if begun is not None:
                ms = 1000.0 * (perf() - begun[0])
                rows.append(
                    {"k": "gc", "t": _now() - ms, "ms": round(ms, 3),
                     "cpu": round(1000.0 * (thread_time() - begun[1]), 3),
                     "gen": info.get("generation"), "collected": info.get("collected"),
                     "thread": threading.current_thread().name}
                )  # fmt: skip

    gc.callbacks.append(_gc)


def _flusher(path: Path) -> None:
    with path.open("ab") as out:
        while True:
            time.sleep(0.5)
            n = len(_rows)
            if n:
                taken = _rows[:n]
                del _rows[:n]
                out.write(b"".join(orjson.dumps(r) + b"\n" for r in taken))
                out.flush()


def main() -> None:
    """``python -m bench.tail_probe OUT.jsonl worker [...]``: the CLI, probed."""
    out = Path(sys.argv[1])
    out.write_bytes(b"")  # this run's rows only
    install()
    threading.Thread(target=_flusher, args=(out,), daemon=True, name="tail-probe").start()
    from freshet.cli import main as cli

    sys.argv = ["freshet", *sys.argv[2:]]
    cli()


if __name__ == "__main__":
    main()
