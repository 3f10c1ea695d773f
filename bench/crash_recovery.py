"""How fast a worker's partitions move again after ``kill -9``: static vs dynamic membership.

    python -m bench.crash_recovery                      # own broker and Redis, 4 kills each
    python -m bench.crash_recovery --kills 6 --session-timeout 6

Three cases, each on a fresh topic prefix, one worker at a time fed 450 events/s:

- ``restart, static``: kill -9, start a new worker at once (the default settings);
- ``restart, dynamic``: the same with ``FRESHET_STATIC_MEMBERSHIP=false``;
- ``gone, static``: two workers, one killed and not restarted: the survivor's wait.

Each figure is the time from the kill until every partition's Redis watermark passes
the records that were on the topic at the kill plus one newer per partition.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.topics import Topics, event_key

PARTITIONS = 4


class Feed(threading.Thread):
    """Sends simple view events at ``rate`` per second until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.stop = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        from schemas.codec import encode
        from schemas.events import InteractionEvent

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        start, n = time.monotonic(), 0
        while not self.stop.is_set():
            user = f"u{n % 500}"
            ev = InteractionEvent(f"e{n}", user, f"i{n % 300}", "view", int(time.time() * 1000))
            producer.send(self.topic, key=event_key(user), value=encode(ev))
            n += 1
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        producer.close(timeout=5)


class Case:
    """One topic prefix, its Redis namespace and the worker processes on it."""

    def __init__(self, bootstrap: str, redis_url: str, home: Path, env: dict[str, str]) -> None:
        from redis import Redis

        from streams.kafka_io.event_producer import ensure_topics
        from streams.redis_io.keyspace import Keyspace

        prefix = f"cr-{uuid.uuid4().hex[:6]}"
        self.settings = Settings.from_env(
            {},
            kafka_bootstrap=bootstrap,
            redis_url=redis_url,
            topic_prefix=prefix,
            redis_namespace=prefix,
            home=home / prefix,
            topic_partitions=PARTITIONS,
        )
        self.settings.home.mkdir(parents=True)
        ensure_topics(kafka_of(self.settings))
        self.events = Topics(prefix).events
        self.keys = Keyspace(prefix)
        self.redis = Redis.from_url(redis_url)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
        self.env |= {
            "FRESHET_KAFKA_BOOTSTRAP": bootstrap,
            "FRESHET_REDIS_URL": redis_url,
            "FRESHET_TOPIC_PREFIX": prefix,
            "FRESHET_REDIS_NAMESPACE": prefix,
            "FRESHET_TOPIC_PARTITIONS": str(PARTITIONS),
            "FRESHET_CONSUMER_GROUP": f"{prefix}-worker",
            "FRESHET_HOME": str(self.settings.home),
            "FRESHET_REALTIME": "false",
            **env,
        }
        self.feed = Feed(bootstrap, self.events, rate=450)
        self.feed.start()

    def worker(self) -> subprocess.Popen[bytes]:
        log = (self.settings.home / "worker.log").open("ab")
        cmd = [sys.executable, "-m", "freshet.cli", "worker"]
        return subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def marks(self) -> dict[int, int]:
        vals = [self.redis.get(self.keys.watermark(p)) for p in range(PARTITIONS)]
        return {p: -1 if v is None else int(v) for p, v in enumerate(vals)}

    def ends(self) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        try:
            tps = [TopicPartition(self.events, p) for p in range(PARTITIONS)]
            return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def wait_applied(self, since: float, timeout: float = 120) -> float:
        """Seconds from ``since`` until every partition's watermark passes today's ends."""
        at_kill = self.marks()
        ends = self.ends()
        while any(ends[p] - 1 <= at_kill[p] for p in ends):  # one newer record each
            time.sleep(0.1)
            ends = self.ends()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            marks = self.marks()
            if all(marks[p] >= ends[p] - 1 for p in ends):
                return time.monotonic() - since
            time.sleep(0.05)
        raise RuntimeError(f"not applied within {timeout} s; see {self.settings.home}")

    def close(self, *procs: subprocess.Popen[bytes]) -> None:
        self.feed.stop.set()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def restarts(case: Case, kills: int) -> list[float]:
    """kill -9 and restart at once, ``kills`` times: seconds from kill to work resumed."""
    proc = case.worker()
    case.wait_applied(time.monotonic())
    out = []
    for _ in range(kills):
        time.sleep(2.5)
        killed = time.monotonic()
        _kill(proc)
        proc = case.worker()
        out.append(case.wait_applied(killed))
    case.close(proc)
    return out


def gone(case: Case) -> float:
    """Two workers; one is killed and not restarted: seconds until the other covers it."""
    first = case.worker()
    case.wait_applied(time.monotonic())
    second = case.worker()
    time.sleep(12)  # the second joined and took half the partitions
    killed = time.monotonic()
    _kill(first)
    took = case.wait_applied(killed)
    case.close(second)
    return took


def _fmt(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f} s (mean {sum(values) / len(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--session-timeout", type=float, default=Settings().session_timeout_s)
    args = parser.parse_args(argv)
    env = {"FRESHET_SESSION_TIMEOUT_S": str(args.session_timeout)}
    with tempfile.TemporaryDirectory(prefix="freshet-crash-") as tmp:
        base = Path(tmp)
        services: list[object] = []
        bootstrap, redis_url = args.bootstrap, args.redis_url
        if not bootstrap or not redis_url:
            from freshet.services.kafka_local import LocalKafka
            from freshet.services.redis_local import LocalRedis

            kafka = LocalKafka(base / "kafka", home=Settings.from_env().home).start()
            redis = LocalRedis(base / "redis").start()
            services += [kafka, redis]
            bootstrap, redis_url = kafka.bootstrap, redis.url
        print(
            f"Conditions: {platform.node()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; one worker, {PARTITIONS} partitions, 450 events/s, "
            f"state-only path; session timeout {args.session_timeout:g} s; {args.kills} kills"
        )
        try:
            static = restarts(Case(bootstrap, redis_url, base, env), args.kills)
            print(f"restart at once, static membership:  {_fmt(static)}", flush=True)
            dynamic_env = env | {"FRESHET_STATIC_MEMBERSHIP": "false"}
            dynamic = restarts(Case(bootstrap, redis_url, base, dynamic_env), args.kills)
            print(f"restart at once, dynamic membership: {_fmt(dynamic)}", flush=True)
            survivor = gone(Case(bootstrap, redis_url, base, env))
            print(f"killed for good, survivor takes over: {survivor:.1f} s", flush=True)
        finally:
            for service in services:
                service.stop()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
