"""Run ``freshet worker`` as a real subprocess against the test services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from freshet.settings import Settings


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
    env.update(
        {
            "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "FRESHET_REDIS_URL": settings.redis_url,
            "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
            "FRESHET_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "FRESHET_CONSUMER_GROUP": f"{settings.topic_prefix}-worker",
            "FRESHET_HOME": str(settings.home),
            "FRESHET_BUNDLE_DIR": str(settings.bundle_dir),
            "FRESHET_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class WorkerProcess:
    """One ``freshet worker`` process with its log file."""

    def __init__(self, settings: Settings, log_path: Path, **extra_env: str) -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "freshet.cli", "worker"],
            env=worker_env(settings, **extra_env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no cleanup, no final commit."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, proc: WorkerProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and not proc.alive():
            raise AssertionError(f"worker died while waiting for {what}:\n{proc.tail()}")
        time.sleep(0.25)
    tail = proc.tail() if proc is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")
