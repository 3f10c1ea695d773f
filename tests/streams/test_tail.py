"""``freshet tail`` against the real broker, and how it formats a list."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from kafka import KafkaProducer
from rich.console import Console
from typer.testing import CliRunner

from freshet.cli import app
from freshet.ops.tail_format import decode_list, json_line, latency_ms, render_list
from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import encode
from schemas.recommendation import Recommendation, RecommendedItem
from schemas.topics import Topics, event_key
from streams.kafka_io.event_producer import ensure_topics
from streams.kafka_io.topic_reader import TopicMissing, TopicReader

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas/json/recommendation.v1.json").read_text()
)


def _list(user: str, n: int, event_ts: int | None = 1_700_000_000_000) -> Recommendation:
    items = [RecommendedItem(f"item-{user}-{i}", 1.0 / (i + 1), "personalised") for i in range(n)]
    items[0] = RecommendedItem(items[0].item_id, 1.0, "similar_to_item", "seed-item")
    return Recommendation(
        user_id=user,
        items=tuple(items),
        strategy="personalised",
        model_version="v3",
        source_event_id=f"ev-{user}",
        event_ts=event_ts,
        published_ts=1_700_000_000_042,
    )


def _text(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_render_shows_user_strategy_model_latency_and_reasons() -> None:
    text = _text(render_list(_list("alice", 12), partition=2, offset=17, top=3))
    assert "alice" in text and "personalised" in text and "model v3" in text
    assert "42 ms event→publish" in text and "p2@17" in text
    assert "similar_to_item ← seed-item" in text
    assert "item-alice-2" in text and "item-alice-3" not in text
    assert "and 9 more" in text


def test_render_takes_ids_as_plain_text_and_handles_no_event() -> None:
    rec = _list("[bold]x", 1, event_ts=None)
    assert latency_ms(rec) is None
    text = _text(render_list(rec, partition=0, offset=0))
    assert "[bold]x" in text and "- event→publish" in text


def test_decode_list_refuses_anything_else_quietly() -> None:
    rec = _list("bob", 2)
    assert decode_list(encode(rec)) == rec
    assert json.loads(json_line(rec)) == rec.to_dict()
    for raw in (b"", b"\xff", b"[]", b'{"user_id": "x"}', b'{"items": 3}'):
        assert decode_list(raw) is None


def _env(settings: Settings) -> dict[str, str]:
    return {
        "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
        "FRESHET_HOME": str(settings.home),
        "COLUMNS": "200",
    }


def _publish(settings: Settings, values: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        for key, value in values:
            producer.send(Topics(settings.topic_prefix).recommendations, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


@pytest.mark.services
def test_tail_from_beginning_with_user_filter_and_json(settings: Settings) -> None:
    ensure_topics(kafka_of(settings))
    users = ["alice", "bob", "carol", "bob", "dave", "bob"]
    lists = [_list(u, 3 + n) for n, u in enumerate(users)]
    _publish(settings, [(event_key(r.user_id), encode(r)) for r in lists])
    _publish(settings, [(event_key("bob"), b"not a list")])
    runner = CliRunner()

    args = ["tail", "--from-beginning", "--json", "--user", "bob", "--timeout", "5"]
    result = runner.invoke(app, args, env=_env(settings))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [r.to_dict() for r in lists if r.user_id == "bob"]
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert "1 undecodable" in result.stderr

    result = runner.invoke(
        app, ["tail", "--from-beginning", "--max", "6", "--top", "2"], env=_env(settings)
    )
    assert result.exit_code == 0, result.output
    assert "6 list(s) shown" in result.stderr
    for user in ("alice", "carol", "dave"):
        assert user in result.stdout
    assert "42 ms event→publish" in result.stdout and "model v3" in result.stdout

    result = runner.invoke(app, ["tail", "--user", "a b", "--max", "1"], env=_env(settings))
    assert result.exit_code != 0


@pytest.mark.services
def test_tail_from_now_skips_what_was_there(settings: Settings) -> None:
    ensure_topics(kafka_of(settings))
    _publish(settings, [(event_key("old"), encode(_list("old", 2)))])
    with TopicReader(
        kafka_of(settings), Topics(settings.topic_prefix).recommendations, from_beginning=False
    ) as reader:
        _publish(settings, [(event_key("new"), encode(_list("new", 2)))])
        got = []
        for record in reader.records(timeout_s=15):
            got.append(decode_list(record.value))
            break
    assert [r.user_id for r in got if r is not None] == ["new"]


@pytest.mark.services
def test_tail_of_a_missing_topic_says_so(settings: Settings) -> None:
    with (
        pytest.raises(TopicMissing),
        TopicReader(kafka_of(settings), f"{settings.topic_prefix}.absent", from_beginning=True),
    ):
        pass
    result = CliRunner().invoke(app, ["tail", "--max", "1", "--timeout", "2"], env=_env(settings))
    assert result.exit_code == 1 and "does not exist" in result.output
