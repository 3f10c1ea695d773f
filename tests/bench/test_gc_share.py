"""bench.gc_share's summary of per-second samples: whole run, and busy seconds past start-up."""

from __future__ import annotations

from pathlib import Path

from bench.gc_share import summarize


def test_the_busy_share_leaves_start_up_and_idle_seconds_out(tmp_path: Path) -> None:
    samples = tmp_path / "123"
    rows = [  # wall s, process CPU s, collector CPU s, passes per generation
        "0.0 0.0 0.0 [0, 0, 0]",
        "1.0 1.0 0.5 [9, 0, 1]",  # start-up: busy, half of it collecting
        "2.0 1.1 0.5 [9, 0, 1]",  # idle
        "3.0 2.1 0.6 [20, 1, 1]",  # a drain second: 10 % collecting
        "4.0 3.1 0.7 [31, 2, 1]",
    ]
    samples.write_text("python -m freshet.cli worker\n" + "\n".join(rows) + "\n")
    line = summarize(samples, busy_cores=0.5, skip_s=1.0)
    assert "collector 0.70 s of 3.1 s CPU (22.6 %)" in line
    assert "busy seconds: 10.0 % of 2.0 s" in line
    assert "busy seconds: 23.3 % of 3.0 s" in summarize(samples, busy_cores=0.5, skip_s=0.0)
