"""The stream bench's ingest-only mode: its timing of events against watermarks, and one
small run end to end on the real broker and Redis (worker with lists off, Faust's no-op
agent after it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.ingest_only import WatermarkPoller, freshness
from bench.stream_bench import missing_fields
from freshet.services.kafka_local import LocalKafka
from freshet.settings import Settings


def filled_poller() -> WatermarkPoller:
    """A poller of two partitions with three samples, not started (no Redis needed)."""
    poller = WatermarkPoller(Settings.from_env({}, topic_partitions=2))
    poller.times = [1000.0, 1005.0, 1010.0]
    poller.marks = [[-1, 3, 9], [4, 4, 5]]
    return poller


def test_an_event_is_applied_at_the_first_sample_whose_watermark_covers_it() -> None:
    poller = filled_poller()
    assert poller.applied_at(0, 0) == 1005.0  # partition 0 had nothing at 1000
    assert poller.applied_at(0, 3) == 1005.0
    assert poller.applied_at(0, 4) == 1010.0
    assert poller.applied_at(1, 4) == 1000.0
    assert poller.applied_at(1, 6) is None  # never seen applied
    assert poller.first_advance([-1, 4]) == 1005.0
    assert poller.first_advance([9, 5]) is None


def test_freshness_counts_every_event_and_the_ones_never_applied() -> None:
    q, never = freshness(filled_poller(), [(0, 2, 990), (0, 9, 1001), (1, 5, 1010), (1, 7, 0)])
    assert never == 1
    assert q["n"] == 3
    assert (q["p50"], q["p99"]) == (9.0, 15.0)  # 15, 9, 0 ms


def test_ingest_only_run_end_to_end(kafka: LocalKafka, redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    env = {**os.environ, "FRESHET_HOME": str(tmp_path / "home")}
    cmd = [
        sys.executable, "-m", "bench.stream_bench", "--ingest-only",
        "--bootstrap", kafka.bootstrap, "--redis-url", redis_url,
        "--items", "300", "--users", "60", "--warm", "200", "--events", "6000",
        "--rate", "200", "--curve", "400", "--curve-events", "200",
        "--idle-s", "1", "--repeats", "2", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "of Faust's no-op ceiling" in proc.stdout
    report = json.loads(out.read_text())
    assert missing_fields(report) == []
    assert report["conditions"]["worker_env"] == {"FRESHET_REALTIME": "false"}
    f = report["figures"]
    for phase in [f["paced_worker"], *f["curve"]]:
        assert phase["events_never_applied"] == 0
        assert phase["freshness_ms_all_events"]["n"] == 200  # --curve-events each
        assert phase["lists_published"] == 0  # lists off
        assert phase["worker_cpu_ms_per_event"] > 0
    pairs = f["saturated_worker"]["repeats"]
    assert len(pairs) == 2
    for sat in pairs:
        assert sat["events"] == 3000 and sat["events_never_applied"] == 0
        assert sat["events_per_s"] > 0 and sat["faust_noop_events_per_s"] > 0
        assert sat["ratio_to_faust_noop"] == sat["events_per_s"] / sat["faust_noop_events_per_s"]
        assert sat["committed_after_acked_s"] is not None  # the group's commit covered it
        want = sat["faust_noop_cpu_ms_per_event"] / sat["worker_cpu_ms_per_event"]
        assert sat["cpu_ratio_to_faust_noop"] == want > 0
    ratios = sorted(p["ratio_to_faust_noop"] for p in pairs)
    assert f["ratio_to_faust_noop"] in ratios
