"""``freshet simulate`` and ``freshet produce`` end to end, into the real broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from freshet.cli import app
from freshet.cli.sending import Pacer
from freshet.settings import Settings
from freshet.simulator.faults import malformed_messages
from schemas.codec import Refusal, decode_interaction
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics
from streams.core.file_reader import read_file


def _count(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        seen = 0
        deadline = time.monotonic() + timeout_s
        while seen < expected and time.monotonic() < deadline:
            seen += sum(len(r) for r in consumer.poll(timeout_ms=500).values())
        return seen
    finally:
        consumer.close()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
        "FRESHET_HOME": str(settings.home),
        "COLUMNS": "200",
    }


@pytest.mark.services
def test_simulate_to_file_then_produce_the_file(settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "sim.jsonl"
    env = _env(settings) | {"FRESHET_SIM_SEED": "5", "FRESHET_SIM_MALFORMED": "12"}
    result = runner.invoke(
        app,
        ["simulate", "--users", "50", "--items", "30", "--events", "800", "--out", str(out)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    read = [r for _, r in read_file(out)]
    # The one empty malformed message, if drawn, reads back as a blank line.
    assert sum(isinstance(r, Refusal) for r in read) == sum(
        1 for raw, _ in malformed_messages(12, seed=5) if raw
    )
    assert sum(isinstance(r, InteractionEvent) for r in read) == 800
    n_catalog = sum(isinstance(r, CatalogEvent) for r in read)
    assert "sent in all" in result.output

    result = runner.invoke(app, ["produce", str(out)], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "refused" in result.output and "rate achieved" in result.output
    topics = Topics(settings.topic_prefix)
    assert _count(settings, topics.events, 800) == 800
    assert _count(settings, topics.catalog, n_catalog) == n_catalog


@pytest.mark.services
def test_produce_movielens_with_a_bad_row_exits_clean_and_reports_it(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::978300760\n1::11::x::978300761\n2::10::3::978300762\n")
    result = CliRunner().invoke(app, ["produce", str(path), "--rate", "100"], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "wrong_type" in result.output
    assert _count(settings, Topics(settings.topic_prefix).events, 2) == 2


@pytest.mark.services
def test_produce_ratings_as_interactions_sends_ratings_without_their_values(
    settings: Settings, tmp_path: Path
) -> None:
    """The file's ratings reach the events topic as plain interactions (value None),
    the rule ``freshet train`` and ``evaluate`` read the same file with."""
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n1,10,1.0,978300760\n1,11,4.5,978300761\n"
        "2,10,3.0,978300762\n"
    )
    assert {r.value for _, r in read_file(path) if isinstance(r, InteractionEvent)} == {
        1.0,
        4.5,
        3.0,
    }
    result = CliRunner().invoke(
        app, ["produce", str(path), "--ratings-as-interactions"], env=_env(settings)
    )
    assert result.exit_code == 0, result.output
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        topic = Topics(settings.topic_prefix).events
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: list[InteractionEvent] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [
                    e
                    for r in records
                    if isinstance(e := decode_interaction(r.value), InteractionEvent)
                ]
    finally:
        consumer.close()
    assert sorted((e.user_id, e.item_id, e.type, e.value) for e in got) == [
        ("1", "10", "rating", None),
        ("1", "11", "rating", None),
        ("2", "10", "rating", None),
    ]


def test_pacer_sleeps_until_each_item_is_due() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    for n in range(5):
        pacer.wait(n)
    assert now[0] == pytest.approx(100.4)
    Pacer(0.0, clock=lambda: now[0], sleep=sleep).wait(1000)
    assert len(slept) == 4
