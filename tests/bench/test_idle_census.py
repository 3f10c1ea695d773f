"""bench.idle_census: the quietest window of a run, per thread, from a real child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.idle_census import by_thread, quietest


def test_the_quietest_window_is_the_one_with_least_cpu_per_second() -> None:
    rows = [  # a busy start, an idle stretch, a busy end
        {"wall_s": t, "process_s": cpu}
        for t, cpu in [(0, 0.0), (1, 0.9), (2, 1.8), (3, 1.81), (4, 1.82), (5, 1.83), (6, 2.8)]
    ]
    assert quietest(rows, 2.0) == (2, 4)
    assert quietest(rows, 3.0) == (2, 5)
    with pytest.raises(ValueError):
        quietest(rows, 10.0)


def test_threads_are_named_by_their_python_name_and_sorted_by_cpu() -> None:
    before = {"wall_s": 0.0, "threads": {"python:1": 1.0, "python:2": 0.5}, "names": {}}
    after = {
        "wall_s": 2.0,
        "threads": {"python:1": 1.01, "python:2": 0.53, "python:3": 0.002},
        "names": {"1": "MainThread", "3": "serve"},
    }
    rows = by_thread(before, after)
    assert [name for name, _ in rows] == ["python:2", "MainThread:1", "serve:3"]
    assert rows[0][1] == pytest.approx(15.0)  # 30 ms over 2 s


def test_a_matching_child_writes_snapshots_of_its_loop_and_threads(tmp_path: Path) -> None:
    child = (
        "import asyncio\n"
        "async def tick():\n"
        "    for _ in range(30):\n"
        "        await asyncio.sleep(0.1)\n"
        "asyncio.run(tick())  # census-probe\n"
    )
    out = tmp_path / "census"
    run = subprocess.run(
        [sys.executable, "-m", "bench.idle_census", "--out", str(out), "--every-s", "0.5",
         "--window-s", "1", "--match", "census-probe", "--", sys.executable, "-c", child],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    files = list(out.glob("census-*.jsonl"))
    assert len(files) == 1, run.stdout  # the child only: the wrapper does not match
    rows = [orjson.loads(line) for line in files[0].read_bytes().splitlines()]
    assert len(rows) >= 4
    assert rows[-1]["counts"].get("task tick", 0) >= 10  # the loop's wake-ups, counted
    assert "MainThread" in rows[-1]["names"].values()
    assert "task tick" in run.stdout  # the window printed, its callbacks by name
