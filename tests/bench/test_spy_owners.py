"""bench.spy_owners: each sample counts for the right owner; waiting threads count for none."""

from __future__ import annotations

from pathlib import Path

from bench.spy_owners import LOOP, shares

LOOP_ROOT = "run_forever (asyncio/base_events.py:607);_run_once (asyncio/base_events.py:1922)"
PROFILE = f"""\
{LOOP_ROOT};Handle._run (asyncio/events.py:80);send (aiokafka/conn.py:423);write (asyncio/selector_events.py:1057) 5
{LOOP_ROOT};Handle._run (asyncio/events.py:80);process (streams/core/ingest.py:220);refresh (streams/runtime/live_recommender.py:218);score (inference/recommend.py:10) 3
{LOOP_ROOT};Handle._run (asyncio/events.py:80);read (streams/redis_io/redis_state_store.py:92);execute (redis/asyncio/client.py:1) 2
{LOOP_ROOT};BaseSelectorEventLoop._read_from_self (asyncio/selector_events.py:119) 4
{LOOP_ROOT};EpollSelector.select (selectors.py:468) 100
Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:81) 50
"""  # noqa: E501


def test_known_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text(PROFILE)
    total, counts = shares(path)
    assert total == 14  # the 150 samples of waiting threads are left out
    by_owner = {name.split(" (")[0]: n for name, n in counts.items()}
    assert by_owner == {"aiokafka": 5, "scorer": 3, "redis-py": 2, LOOP.split(" (")[0]: 4}
