"""Where a worker's CPU goes, by owner, from py-spy profiles (raw, collapsed stacks).

Each busy sample counts for the leafmost frame of a known owner: the scorer, Faust and
mode, aiokafka, redis-py, prometheus_client and our metrics, our own modules. asyncio
frames count for the frame that called into them (a socket write under aiokafka is
aiokafka's); what runs straight under the event loop with no owner above it is the
loop's own. Samples of threads that wait (epoll, an idle pool thread, the metrics HTTP
server) are left out. Profiles come from ``bench.stream_bench --profile-curve DIR``.

    .venv/bin/python -m bench.spy_owners DIR/00_rate_10.txt DIR/01_rate_100.txt

Without ``py-spy --native`` the native threads of ONNX Runtime and faiss are not seen,
and a thread that waits for the GIL or for a core counts as busy: read the shares as
where the Python work is, not as exact CPU time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

OWNERS: list[tuple[str, re.Pattern[str]]] = [
    (
        "scorer (inference, live scorer and recommender, onnxruntime, faiss, numpy)",
        re.compile(
            r"\((inference|training)/|live_scorer|live_recommender|live_catalog|onnx|faiss|numpy"
        ),
    ),
    ("metrics (prometheus_client, our metrics)", re.compile(r"prometheus_client|runtime/metrics")),
    ("redis-py", re.compile(r"\(redis/|hiredis")),
    ("aiokafka", re.compile(r"\((aiokafka|kafka)/")),
    ("faust / mode", re.compile(r"\((faust|mode)/")),
    ("ours: schemas (decode, encode, orjson)", re.compile(r"\(schemas/")),
    ("ours: streams/core (ingest, rules, publish, batches)", re.compile(r"\(streams/core/")),
    ("ours: agent, sinks, Redis stores", re.compile(r"\((streams|freshet)/")),
]
LOOP = "the asyncio loop itself (run_once, handles, self-pipe)"
IDLE = re.compile(
    r"EpollSelector\.select|_PollLikeSelector\.select|^_worker \(concurrent/futures/thread\.py"
)


def owner(stack: str) -> str:
    """The owner of one sample: its leafmost owned frame below the event loop."""
    for frame in reversed(stack.split(";")):
        if "_run_once" in frame and "base_events.py" in frame:
            break  # above this, a callback the loop runs; nothing of an owner in it
        for name, pattern in OWNERS:
            if pattern.search(frame):
                return name
    return LOOP


def shares(path: Path) -> tuple[int, Counter[str]]:
    """Busy samples of a profile, and how many each owner holds."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or IDLE.search(stack.split(";")[-1]):
            continue
        total += int(n)
        counts[owner(stack)] += int(n)
    return total, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.profiles:
        total, counts = shares(path)
        print(f"{path}: {total} busy samples")
        for name, n in counts.most_common():
            print(f"  {100 * n / max(total, 1):5.1f}%  {n:6d}  {name}")


if __name__ == "__main__":
    main()
