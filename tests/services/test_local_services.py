"""The local services are real: records go through the broker, data survives restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from freshet.services.errors import ServiceSetupError
from freshet.services.kafka_local import LocalKafka, new_cluster_id
from freshet.services.ports import free_port
from freshet.services.redis_local import LocalRedis, RedisTLS
from freshet.services.registry import read_endpoints
from freshet.settings import Settings

pytestmark = pytest.mark.services


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    try:
        for i, value in enumerate(values):
            producer.send(topic, key=str(i).encode(), value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume_all(
    bootstrap: str, topic: str, expected: int, timeout_ms: int = 20_000
) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
    )
    try:
        partitions = None
        for _ in range(50):
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                break
            consumer.poll(timeout_ms=200)
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        got: list[bytes] = []
        for record in consumer:
            got.append(record.value)
            if len(got) >= expected:
                break
        return got
    finally:
        consumer.close()


def test_record_goes_through_the_broker(kafka: LocalKafka, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.roundtrip"
    values = [f"event-{i}".encode() for i in range(20)]
    _produce(kafka.bootstrap, topic, values)
    got = _consume_all(kafka.bootstrap, topic, expected=len(values))
    assert sorted(got) == sorted(values)


def test_auto_created_topics_get_the_configured_partitions(
    kafka: LocalKafka, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.parts"
    _produce(kafka.bootstrap, topic, [b"x"])
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        consumer.close()


def test_redis_ping_set_get(redis_client: redis.Redis) -> None:
    assert redis_client.ping() is True
    assert redis_client.dbsize() == 0  # the fixture flushed whatever earlier tests wrote
    redis_client.set("fr:test", b"v1")
    assert redis_client.get("fr:test") == b"v1"


@pytest.mark.parametrize("appendonly", [True, False])
def test_redis_restart_keeps_data_only_with_appendonly(
    make_redis: Callable[..., LocalRedis], appendonly: bool
) -> None:
    server = make_redis(appendonly=appendonly, appendfsync="always")
    client = server.client()
    client.set("fr:kept", b"yes")
    client.close()
    port, pid = server.port, server.pid

    server.restart()

    assert server.port == port and server.pid != pid
    client = server.client()
    try:
        # RDB snapshots are off, so only the AOF can bring the key back.
        assert client.get("fr:kept") == (b"yes" if appendonly else None)
    finally:
        client.close()


def test_redis_requirepass(make_redis: Callable[..., LocalRedis]) -> None:
    server = make_redis(password="s3cret word")
    anonymous = redis.Redis(host="127.0.0.1", port=server.port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    client = server.client()  # the URL carries the password
    assert client.ping() is True
    client.close()


def test_kafka_restart_keeps_a_topics_records(make_kafka: Callable[..., LocalKafka]) -> None:
    broker = make_kafka(partitions=2)
    topic = f"t-{uuid.uuid4().hex[:8]}.durable"
    values = [f"r{i}".encode() for i in range(50)]
    _produce(broker.bootstrap, topic, values)
    bootstrap, pid = broker.bootstrap, broker.pid

    broker.restart()

    assert broker.alive() and broker.bootstrap == bootstrap and broker.pid != pid
    assert sorted(_consume_all(broker.bootstrap, topic, expected=len(values))) == sorted(values)


def test_stopped_services_are_not_alive(
    make_kafka: Callable[..., LocalKafka], make_redis: Callable[..., LocalRedis]
) -> None:
    broker, server = make_kafka(), make_redis()
    assert broker.alive() and server.alive()
    # A second handle on the same folder finds the running process through its files.
    assert LocalKafka(broker.base_dir, home=broker.home).pid == broker.pid
    broker.stop()
    server.stop()
    assert not broker.alive() and not server.alive()
    assert broker.pid is None and server.pid is None


def test_missing_redis_server_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceSetupError, match="apt-get install redis-server"):
        LocalRedis(tmp_path / "r").start()


def test_cluster_id_is_16_bytes_base64url() -> None:
    ids = {new_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    for cid in ids:
        assert len(cid) == 22 and "=" not in cid and "+" not in cid and "/" not in cid


def test_a_cluster_id_that_begins_with_a_dash_formats_and_starts(
    make_kafka: Callable[..., LocalKafka], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One id in 64 begins with "-" (base64url); the storage tool once read it as a flag
    ("argument --cluster-id/-t: expected one argument") and the broker never started."""
    import freshet.services.kafka_local as kafka_local

    monkeypatch.setattr(kafka_local, "new_cluster_id", lambda: "-" + "Ab1_" * 5 + "Q")
    broker = make_kafka()
    assert broker.cluster_id.startswith("-") and broker.alive()
    topic = f"t-{uuid.uuid4().hex[:8]}.dash"
    _produce(broker.bootstrap, topic, [b"r0"])
    assert _consume_all(broker.bootstrap, topic, expected=1) == [b"r0"]


def _freshet(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
    env.update(
        FRESHET_HOME=str(home),
        # Reuse the machine's jar cache rather than fetching into the temp home.
        FRESHET_SERVICES_JAR_CACHE=str(Settings.from_env().home),
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-c", "from freshet.cli import main; main()", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_services_up_status_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        first = _freshet(home, "services", "up")
        assert first.returncode == 0, first.stdout + first.stderr
        endpoints = read_endpoints(home)
        assert endpoints is not None
        # The services outlive the command that started them.
        client = redis.Redis.from_url(endpoints.redis_url)
        assert client.ping() is True
        client.close()
        consumer = KafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap)
        assert isinstance(consumer.topics(), set)
        consumer.close()

        again = _freshet(home, "services", "up")
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count("already running") == 2
        assert read_endpoints(home) == endpoints

        status = _freshet(home, "services", "status")
        assert status.returncode == 0
        assert status.stdout.count("running") == 2
        assert endpoints.kafka_bootstrap in status.stdout
    finally:
        down = _freshet(home, "services", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert read_endpoints(home) is None
    assert not LocalKafka(home / "services" / "kafka").alive()
    assert not LocalRedis(home / "services" / "redis").alive()
    status = _freshet(home, "services", "status")
    assert status.stdout.count("stopped") == 2


def test_redis_tls_listener(tmp_path: Path, make_redis: Callable[..., LocalRedis]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    # One self-signed certificate serves as both the server's and the trusted CA.
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", *args],
        check=True,
        capture_output=True,
    )
    server = make_redis(tls=RedisTLS(cert_file=cert, key_file=key, ca_file=cert))
    assert server.tls_url.startswith("rediss://127.0.0.1:")
    client = redis.Redis.from_url(server.tls_url, ssl_ca_certs=str(cert))
    try:
        client.set("fr:tls", b"ok")
        assert client.get("fr:tls") == b"ok"
    finally:
        client.close()
    # The TLS port does not speak plain RESP.
    plain = redis.Redis(host="127.0.0.1", port=server.tls_port, socket_timeout=2)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    plain.close()


def test_a_running_service_is_not_started_twice_on_another_port(
    make_redis: Callable[..., LocalRedis],
) -> None:
    server = make_redis()
    same = LocalRedis(server.base_dir).start()  # same folder, remembered port: a no-op
    assert same.pid == server.pid
    with pytest.raises(ServiceSetupError, match="already runs on port"):
        LocalRedis(server.base_dir, port=free_port()).start()
    assert server.alive()
