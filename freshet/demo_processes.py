"""The demo's child processes: a worker and the read API, and waiting for catch-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from freshet.services.ports import free_port
from freshet.settings import Settings
from schemas.topics import Topics


def _child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment without its ``FRESHET_*``, plus the demo's services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
    env.update(
        {
            "FRESHET_HOME": str(settings.home),
            "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "FRESHET_REDIS_URL": settings.redis_url,
            "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
            "FRESHET_REDIS_NAMESPACE": settings.redis_namespace,
            "FRESHET_BUNDLE_DIR": str(settings.bundle_dir),  # the page shows when it was trained
            **extra,
        }
    )
    return env


def start_worker(settings: Settings, log_path: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    env = _child_env(
        settings,
        FRESHET_CONSUMER_GROUP=settings.consumer_group,
        FRESHET_LOG_LEVEL="WARNING",
        FRESHET_METRICS_PORT=str(metrics_port),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "freshet.cli", "worker"],
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_api(
    settings: Settings, log_path: Path, metrics_port: int
) -> tuple[subprocess.Popen[bytes], str]:
    """``freshet api`` with the web view pointed at the worker's metrics; its page URL."""
    port = free_port()
    env = _child_env(
        settings,
        FRESHET_TOPIC_PARTITIONS=str(settings.topic_partitions),
        FRESHET_API_TOKEN=settings.api_token.get(),
        FRESHET_UI_METRICS_URLS=f"http://127.0.0.1:{metrics_port}/metrics",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshet.cli", "api", "--port", str(port)],
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}/ui"


def wait_caught_up(
    settings: Settings, worker: subprocess.Popen[bytes], log: Path, console: Console
) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from redis import Redis

    from freshet.cli.progress_line import ProgressLine
    from streams.redis_io.keyspace import Keyspace

    topics = Topics(settings.topic_prefix)
    # No group: offsets are only read, so nothing to auto-commit (kafka-python warns).
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    parts = range(settings.topic_partitions)
    ends = consumer.end_offsets([TopicPartition(topics.events, p) for p in parts])
    consumer.close()
    client = Redis.from_url(settings.redis_url)
    keys = Keyspace(settings.redis_namespace)
    deadline = time.monotonic() + 600
    progress = ProgressLine(console)
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited; see {log}")
        done = 0
        for tp, end in ends.items():
            wm = client.get(keys.watermark(tp.partition))
            done += min(end, int(wm) + 1) if wm is not None else 0
        total = sum(ends.values())
        progress.show(f"     applied {done:,}/{total:,}")
        if done >= total:
            progress.close()
            return
        time.sleep(0.5)
    raise RuntimeError("worker did not catch up within 10 minutes")
