"""``freshet api`` started before Redis: it serves 503s, says what it waits for, and
serves lists once Redis answers, without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from freshet.services.ports import free_port, port_open
from freshet.services.redis_local import LocalRedis

LATE_S = 8.0


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_api_started_before_redis_waits_and_then_serves(
    make_redis: Callable[..., LocalRedis], tmp_path: Path
) -> None:
    server = make_redis(appendonly=False)
    server.stop()  # configured (its port is known), not running
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
    env |= {
        "FRESHET_REDIS_URL": server.url,
        "FRESHET_HOME": str(tmp_path),
        "FRESHET_LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "freshet.cli", "api", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert _status(f"{base}/healthz") == 200
        assert _status(f"{base}/readyz") == 503
        assert _status(f"{base}/v1/users/alice/recommendations") == 503
        time.sleep(LATE_S)
        assert proc.poll() is None, log_path.read_text()
        server.start()
        back = time.monotonic()
        while _status(f"{base}/readyz") != 200:
            assert time.monotonic() - back < 10, log_path.read_text()
            time.sleep(0.1)
        assert _status(f"{base}/v1/users/alice/recommendations") == 200  # cold start list
        deadline = time.monotonic() + 10  # the watcher's next try is at most 3 s away
        while "is up after" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    text = log_path.read_text()
    waits = text.count(f"waiting for Redis at redis://127.0.0.1:{server.port}/0")
    assert waits >= 3, text  # a line per try, at most 3 s apart, over the 8 s outage
    assert "Traceback" not in text
