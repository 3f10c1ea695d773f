"""The producer benchmark delivers every event to the real broker, and says which CRC ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import producer_bench
from freshet.services.kafka_local import LocalKafka


def test_every_event_is_delivered_and_checksummed_in_c(kafka: LocalKafka, tmp_path: Path) -> None:
    out = tmp_path / "producer.json"
    result = producer_bench.main(
        ["--events=3000", "--repeats=1", f"--bootstrap={kafka.bootstrap}", f"--out={out}"]
    )
    # the crc32c dependency is installed, so kafka-python does not fall back to pure Python
    assert result["conditions"]["crc32c"] == "C (crc32c package)"
    assert result["conditions"]["events"] > 2000
    assert result["events_per_s_median"] > 0
    assert json.loads(out.read_text()) == result


def test_the_ab_switch_really_runs_the_pure_python_crc(kafka: LocalKafka, tmp_path: Path) -> None:
    out = tmp_path / "producer.json"
    cmd = [sys.executable, "-m", "bench.producer_bench", "--events=1000", "--repeats=1"]
    cmd += [f"--bootstrap={kafka.bootstrap}", "--pure-python-crc", f"--out={out}"]
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    assert json.loads(out.read_text())["conditions"]["crc32c"] == "pure Python"
