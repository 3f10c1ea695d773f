"""``freshet dlq show`` and ``redrive`` against the real broker, and their pure logic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaProducer
from typer.testing import CliRunner

from freshet.cli import app
from freshet.ops.dead_letters import (
    letter_json,
    parse_fix_file,
    plan_redrive,
    preview,
    transformed,
)
from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import DecodeLimits, Refusal, decode_catalog, decode_interaction, encode
from schemas.dead_letter import DeadLetter
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.core.ingest import SourceRecord, decode_records, refuse
from streams.kafka_io.event_producer import ensure_topics
from streams.kafka_io.topic_reader import TopicReader

NOW_MS = 1_700_000_000_000
TOPICS = Topics("t")


def _event(event_id: str, user: str, ts: int = NOW_MS, **extra: object) -> bytes:
    obj = {"event_id": event_id, "user_id": user, "item_id": "i1", "type": "view", "ts": ts}
    return json.dumps(obj | extra).encode()


def _letter(
    reason: str, value: bytes, offset: int, topic: str = "t.events", partition: int = 0
) -> DeadLetter:
    return DeadLetter(reason, "d", topic, partition, offset, None, value, NOW_MS)  # type: ignore[arg-type]


# --- pure logic --------------------------------------------------------------------------


def test_preview_escapes_what_a_terminal_would_act_on() -> None:
    shown = preview('{"a":"\x1b[2J\n\u202eevil\x00"}'.encode())
    assert "\x1b" not in shown and "\n" not in shown and "\u202e" not in shown
    assert "\\x1b[2J" in shown and "\\n" in shown and "\\u202e" in shown and "\\x00" in shown
    assert preview(b"\xff\xfe\x1b") == "<3 bytes, not UTF-8> ff fe 1b"
    assert preview(None) == "(none)"
    assert preview(b"x" * 500, limit=10) == "x" * 10 + "… (+490 chars)"


@given(st.binary(max_size=300))
def test_preview_is_always_printable(data: bytes) -> None:
    assert preview(data).isprintable()


def test_transforms_repair_seconds_and_unknown_fields_only() -> None:
    seconds = _event("e", "u", ts=1_700_000_000, colour="red")
    fixed = json.loads(transformed(seconds, "events", ["ts-seconds-to-ms", "drop-unknown-fields"]))
    assert fixed["ts"] == NOW_MS and "colour" not in fixed and fixed["user_id"] == "u"
    millis = json.loads(transformed(_event("e", "u"), "events", ["ts-seconds-to-ms"]))
    assert millis["ts"] == NOW_MS
    assert transformed(b"{broken", "events", ["drop-unknown-fields"]) == b"{broken"
    cat = b'{"event_id":"c","op":"upsert","item_id":"i","ts":1,"text":"t","x":1}'
    assert "text" in json.loads(transformed(cat, "catalog", ["drop-unknown-fields"]))


def test_fix_file_lines_are_checked() -> None:
    good = {"source_partition": 0, "source_offset": 3, "event": {"a": 1}}
    lines = [
        json.dumps(good),
        "",
        "not json",
        "[1]",
        json.dumps({"source_partition": "0", "source_offset": 3, "event": {}}),
        json.dumps({"source_partition": 0, "source_offset": 4, "event": None}),
        json.dumps(good),  # a second fix for the same record
        json.dumps(good | {"source_topic": "t.catalog"}),  # a different record
    ]
    fixes, problems = parse_fix_file(lines)
    assert [(f.line_no, f.source_topic) for f in fixes] == [(1, None), (8, "t.catalog")]
    assert [n for n, _ in problems] == [3, 4, 5, 6, 7]


def test_plan_uses_fixes_first_then_originals_and_reports_the_rest() -> None:
    letters = [
        _letter("timestamp_out_of_range", _event("e0", "u0", ts=1_700_000_000), 0),
        _letter("invalid_json", b"{oops", 1),
        _letter("invalid_json", b"{oops", 1),  # at-least-once: the same record again
        _letter("invalid_json", b"{nope", 2),
        _letter("unknown_field", _event("e3", "u3", colour="red"), 3),
        _letter("invalid_json", b"{x", 4, topic="other.events"),
        _letter("invalid_json", b"{y", 1, topic="t.catalog"),
    ]
    fix_lines = [
        json.dumps(
            {"source_partition": 0, "source_offset": 1, "event": json.loads(_event("e1", "u1"))}
        ),
        json.dumps({"source_partition": 0, "source_offset": 9, "event": {}}),
        json.dumps(
            {
                "source_topic": "t.catalog",
                "source_partition": 0,
                "source_offset": 1,
                "event": {"event_id": "c1", "op": "remove", "item_id": "i9", "ts": NOW_MS},
            }
        ),
    ]
    fixes, _ = parse_fix_file(fix_lines)
    limits = DecodeLimits()
    plan = plan_redrive(
        letters,
        TOPICS,
        limits=limits,
        now_ms=NOW_MS,
        reasons=frozenset({"invalid_json", "timestamp_out_of_range"}),
        fixes=fixes,
        resend_originals=True,
        transforms=["ts-seconds-to-ms"],
    )
    assert (plan.letters, plan.duplicates, plan.selected) == (6, 1, 5)
    sent = {(r.letter.source_topic, r.letter.source_offset): r for r in plan.to_send}
    assert sent[("t.events", 1)].via == "fix"
    assert sent[("t.events", 1)].event == InteractionEvent("e1", "u1", "i1", "view", NOW_MS)
    assert sent[("t.catalog", 1)].event == CatalogEvent("c1", "remove", "i9", NOW_MS)
    assert sent[("t.events", 0)].via == "original"
    assert plan.refused_by_reason() == {"invalid_json": 1}  # offset 2: no fix, still broken
    assert plan.unknown_source == 1
    assert [f.line_no for f in plan.unmatched_fixes] == [2]
    # Without originals, selected letters with no fix are only counted.
    plan = plan_redrive(letters, TOPICS, limits=limits, now_ms=NOW_MS, fixes=fixes)
    assert plan.sent_by("fix") == 2 and plan.sent_by("original") == 0
    assert plan.no_fix == 3
    with pytest.raises(KeyError):
        plan_redrive(letters, TOPICS, limits=limits, now_ms=NOW_MS, transforms=["nope"])


def test_show_json_line_round_trips_into_a_fix() -> None:
    letter = _letter("unknown_field", _event("e", "u", colour="red"), 7, partition=2)
    line = letter_json(letter, dlq_partition=1, dlq_offset=5)
    assert (line["dlq_partition"], line["dlq_offset"], line["source_offset"]) == (1, 5, 7)
    del line["event"]["colour"]
    fixes, problems = parse_fix_file([json.dumps(line)])
    assert not problems
    plan = plan_redrive([letter], TOPICS, limits=DecodeLimits(), now_ms=NOW_MS, fixes=fixes)
    assert [r.event.event_id for r in plan.to_send] == ["e"]


# --- against the broker -------------------------------------------------------------------


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
        "FRESHET_HOME": str(settings.home),
        "COLUMNS": "240",
    } | extra


def _dead_letter(settings: Settings) -> dict[str, bytes]:
    """Refuse a set of bad records the way the worker does; put them on the DLQ topic."""
    topics = Topics(settings.topic_prefix)
    now = int(time.time() * 1000)
    big = _event("e-big", "u-big", ts=now)[:-1] + b" " * 70_000 + b"}"
    values = {
        "seconds": _event("e-sec", "u-sec", ts=now // 1000),
        "unknown": _event("e-unk", "u-unk", ts=now, colour="red"),
        "mis-keyed": _event("e-key", "u-key", ts=now),
        "broken": b'{"event_id": "e-brk", "user_id": "u-brk"',
        "escape": b'{"x": "\x1b[2J"}',
        "oversized": big,
    }
    records = [
        SourceRecord(topics.events, 0, offset, b"wrong" if name == "mis-keyed" else None, value)
        for offset, (name, value) in enumerate(values.items())
    ]
    limits = DecodeLimits(max_bytes=settings.max_message_bytes)
    good, letters = decode_records(records, limits, now)
    assert not good and len(letters) == len(values)
    bad_op = b'{"event_id":"c-1","op":"rename","item_id":"it-1","ts":%d}' % now
    refusal = decode_catalog(bad_op, limits, now)
    assert isinstance(refusal, Refusal)
    letters.append(refuse(SourceRecord(topics.catalog, 1, 0, b"it-1", bad_op), refusal, now))
    letters.append(letters[0])  # redelivered batch: the same record dead-lettered twice
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_request_size=1 << 20)
    try:
        for letter in letters:
            producer.send(topics.dead_letter, key=letter.key, value=encode(letter))
        producer.send(topics.dead_letter, value=b"not a dead letter")
        producer.flush()
    finally:
        producer.close()
    return values


def _read(settings: Settings, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    with TopicReader(kafka_of(settings), topic, from_beginning=True) as reader:
        return [(r.partition, r.key, r.value) for r in reader.records(until_caught_up=True)]


@pytest.mark.services
def test_dlq_show_lists_reasons_and_shows_originals_safely(settings: Settings) -> None:
    ensure_topics(kafka_of(settings))
    _dead_letter(settings)
    runner = CliRunner()
    result = runner.invoke(app, ["dlq", "show", "--max", "0"], env=_env(settings))
    assert result.exit_code == 0, result.output
    out = result.output
    for reason in ("timestamp_out_of_range", "unknown_field", "key_mismatch", "invalid_json"):
        assert reason in out
    assert "oversized" in out and "unknown_event_type" in out
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert "1 message(s)" in out and "are not dead letters" in out
    assert "all" in out and " 8" in out  # 7 records, one of them twice

    result = runner.invoke(
        app, ["dlq", "show", "--json", "--reason", "key_mismatch"], env=_env(settings)
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 1
    assert lines[0]["reason"] == "key_mismatch" and lines[0]["event"]["user_id"] == "u-key"
    assert lines[0]["source_topic"] == Topics(settings.topic_prefix).events

    result = runner.invoke(app, ["dlq", "show", "--reason", "bogus"], env=_env(settings))
    assert result.exit_code != 0


@pytest.mark.services
def test_dlq_redrive_originals_after_transforms_and_a_limits_change(settings: Settings) -> None:
    ensure_topics(kafka_of(settings))
    values = _dead_letter(settings)
    topics = Topics(settings.topic_prefix)
    runner = CliRunner()

    dry = runner.invoke(
        app, ["dlq", "redrive", "--reason", "oversized", "--dry-run"], env=_env(settings)
    )
    assert dry.exit_code == 0, dry.output
    assert "still refused: oversized" in dry.output
    assert _read(settings, topics.events) == []

    args = ["dlq", "redrive", "--reason", "timestamp_out_of_range", "--reason", "key_mismatch"]
    args += ["--reason", "unknown_field", "--reason", "oversized"]
    args += ["--transform", "ts-seconds-to-ms", "--transform", "drop-unknown-fields"]
    result = runner.invoke(app, args, env=_env(settings, FRESHET_MAX_MESSAGE_BYTES="131072"))
    assert result.exit_code == 0, result.output
    assert "repeats of a source record" in result.output

    sent = _read(settings, topics.events)
    events = {}
    for partition, key, value in sent:
        event = decode_interaction(value, DecodeLimits(max_bytes=131072), int(time.time() * 1000))
        assert isinstance(event, InteractionEvent)
        assert key == event_key(event.user_id)
        assert partition == partition_for(key, settings.topic_partitions)
        events[event.event_id] = event
    assert sorted(events) == ["e-big", "e-key", "e-sec", "e-unk"]
    original_ts = json.loads(values["seconds"])["ts"]
    assert events["e-sec"].ts == original_ts * 1000
    assert events["e-unk"].context is None

    result = runner.invoke(
        app, ["dlq", "redrive", "--transform", "ts-seconds-to-ms"], env=_env(settings)
    )
    assert result.exit_code != 0  # neither a fix file nor a reason: nothing is assumed


@pytest.mark.services
def test_dlq_redrive_from_an_edited_show_json_file(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(kafka_of(settings))
    _dead_letter(settings)
    topics = Topics(settings.topic_prefix)
    runner = CliRunner()
    shown = runner.invoke(
        app,
        ["dlq", "show", "--json", "--reason", "invalid_json", "--reason", "unknown_event_type"],
        env=_env(settings),
    )
    assert shown.exit_code == 0, shown.output
    now = int(time.time() * 1000)
    fixed_lines = []
    for line in shown.stdout.splitlines():
        obj = json.loads(line)
        if obj["reason"] == "unknown_event_type":
            obj["event"]["op"] = "upsert"
        elif obj["event"] is None and b"e-brk" in preview_bytes(obj):
            obj["event"] = json.loads(_event("e-brk", "u-brk", ts=now))
        else:
            continue  # the escape-sequence record is left out: nothing to fix
        fixed_lines.append(json.dumps(obj))
    fixed_lines.append(json.dumps({"source_partition": 9, "source_offset": 9, "event": {}}))
    fix_file = tmp_path / "fixes.jsonl"
    fix_file.write_text("\n".join(fixed_lines) + "\n")

    result = runner.invoke(app, ["dlq", "redrive", "--fix-file", str(fix_file)], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "matching no dead letter" in result.output

    events = _read(settings, topics.events)
    assert [(k, json.loads(v)["event_id"]) for _, k, v in events] == [(b"u-brk", "e-brk")]
    catalog = _read(settings, topics.catalog)
    assert len(catalog) == 1
    partition, key, value = catalog[0]
    assert key == catalog_key("it-1")
    assert partition == partition_for(key, settings.topic_partitions)
    assert json.loads(value)["op"] == "upsert"


def preview_bytes(line: dict[str, object]) -> bytes:
    import base64

    return base64.b64decode(str(line["value_b64"]))
