"""The state read's client CPU: one HMGET per user against one script call, alternated.

The same local Redis and the same stored states (40 users over 4 partitions, 3 events
each); the per-user path is the store's cluster path (``cluster=True``), which is what
a standalone Redis read was before ``f1bb29b``. Prints process CPU per read.

    .venv/bin/python -m bench.state_read_bench
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from bench.host import cpu_model
from freshet.services.redis_local import LocalRedis
from schemas.events import InteractionEvent
from streams.core.state_rules import StateRules, apply_events
from streams.core.state_store import PartitionRead, PartitionWrite
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_state_store import RedisStateStore


async def compare(url: str) -> None:
    c = Redis.from_url(url)
    keys = Keyspace("ab")
    users = [f"u{i}" for i in range(40)]
    evs = [
        InteractionEvent(f"e{u}{j}", u, f"i{j}", "view", 1000 + j) for u in users for j in range(3)
    ]
    states = apply_events({}, evs, StateRules(), 0).states
    writer = RedisStateStore(c, keys)
    await writer.write(
        [PartitionWrite(p, 10, 0, states={u: states[u] for u in users[p::4]}) for p in range(4)]
    )
    reads = [PartitionRead(p, tuple(users[p::4])) for p in range(4)]
    stores = {
        "HMGET per user": RedisStateStore(c, keys, cluster=True),
        "one script call": RedisStateStore(c, keys),
    }
    res: dict[str, list[float]] = {k: [] for k in stores}
    for _ in range(9):
        for name, st in stores.items():
            t = time.process_time()
            for _ in range(200):
                await st.read(reads)
            res[name].append((time.process_time() - t) / 200)
    print(f"conditions: cores {os.cpu_count()} ({cpu_model()}), local Redis on the same cores;")
    print(f"  load average {list(os.getloadavg())}; 9 alternated rounds of 200 reads each")
    for k, v in res.items():
        best, mid = min(v) * 1e3, sorted(v)[4] * 1e3
        print(f"{k}: {best:.3f} ms client CPU per 40-user read (min of 9), median {mid:.3f}")
    await c.aclose()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        redis = LocalRedis(Path(d)).start()
        try:
            asyncio.run(compare(redis.url))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
