"""The JSON Schema files and the Python types/codec are the same contract."""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from typing import Any, get_args, get_type_hints

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    DEAD_LETTER_REASONS,
    EVENT_TYPES,
    REASONS,
    STRATEGIES,
    CatalogEvent,
    DeadLetter,
    InteractionEvent,
    Recommendation,
    RecommendedItem,
)
from schemas.codec import (
    DecodeLimits,
    Refusal,
    decode_catalog,
    decode_dead_letter,
    decode_interaction,
    decode_recommendation,
    encode,
)


def load(name: str) -> dict[str, Any]:
    return json.loads(resources.files("schemas").joinpath(f"json/{name}").read_text())


INTERACTION = load("interaction_event.v1.json")
CATALOG = load("catalog_event.v1.json")
RECOMMENDATION = load("recommendation.v1.json")
DEAD_LETTER = load("dead_letter.v1.json")


@pytest.mark.parametrize(
    ("schema", "cls", "renames"),
    [
        (INTERACTION, InteractionEvent, {}),
        (CATALOG, CatalogEvent, {}),
        (RECOMMENDATION, Recommendation, {}),
        (DEAD_LETTER, DeadLetter, {"key": "key_b64", "value": "value_b64"}),
    ],
)
def test_fields_match_schema(schema: dict[str, Any], cls: type, renames: dict[str, str]) -> None:
    names = {renames.get(f.name, f.name) for f in dataclasses.fields(cls)}
    assert names == set(schema["properties"])
    required_in_python = {
        renames.get(f.name, f.name)
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert required_in_python <= set(schema["required"])


def test_enums_match_schema() -> None:
    assert tuple(INTERACTION["properties"]["type"]["enum"]) == EVENT_TYPES
    assert tuple(RECOMMENDATION["properties"]["strategy"]["enum"]) == STRATEGIES
    reason = RECOMMENDATION["properties"]["items"]["items"]["properties"]["reason"]
    assert tuple(reason["enum"]) == REASONS
    assert tuple(DEAD_LETTER["properties"]["reason"]["enum"]) == DEAD_LETTER_REASONS
    hints = get_type_hints(RecommendedItem)
    assert set(get_args(hints["reason"])) == set(REASONS)


def test_frozen() -> None:
    ev = InteractionEvent("e", "u", "i", "view", 1_700_000_000_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.user_id = "x"  # type: ignore[misc]


ids = st.from_regex(r"[A-Za-z0-9_.@+=/-]{1,20}", fullmatch=True)
bad_ids = st.one_of(st.text(max_size=5), st.sampled_from(["u:1", "{x}", "a b", "", "x" * 129]))
scalars = st.one_of(
    st.text(max_size=10), st.integers(-5, 5), st.floats(allow_nan=False), st.booleans()
)
names = st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True)
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6,
)


@st.composite
def interaction_like(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly-valid interaction objects with one field at a time perturbed."""
    obj: dict[str, Any] = {
        "event_id": draw(ids),
        "user_id": draw(ids),
        "item_id": draw(ids),
        "type": draw(st.sampled_from(EVENT_TYPES)),
        "ts": draw(st.integers(631_152_000_000, 4_000_000_000_000)),
    }
    if draw(st.booleans()):
        obj["value"] = draw(st.one_of(st.none(), st.floats(-10, 10), st.integers(0, 5)))
    if draw(st.booleans()):
        obj["context"] = draw(st.dictionaries(names, scalars, max_size=3))
    if draw(st.booleans()):
        field = draw(st.sampled_from([*obj.keys(), "extra", "schema_version"]))
        obj[field] = draw(st.one_of(anything, bad_ids, st.sampled_from(["zap", 1.5, -1, 2])))
    if draw(st.integers(0, 9)) == 0 and obj:
        del obj[draw(st.sampled_from(sorted(obj)))]
    return obj


@settings(max_examples=400, deadline=None)
@given(interaction_like())
def test_codec_agrees_with_json_schema(obj: dict[str, Any]) -> None:
    """Whatever the schema accepts the codec accepts, and vice versa."""
    raw = orjson.dumps(obj)
    decoded = decode_interaction(raw, DecodeLimits(min_ts=0))
    schema_ok = jsonschema.Draft202012Validator(INTERACTION).is_valid(orjson.loads(raw))
    assert isinstance(decoded, InteractionEvent) == schema_ok, (decoded, obj)
    if isinstance(decoded, InteractionEvent):
        again = decode_interaction(encode(decoded), DecodeLimits(min_ts=0))
        assert again == decoded


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_never_raises_on_bytes(raw: bytes) -> None:
    out = decode_interaction(raw)
    assert isinstance(out, InteractionEvent | Refusal)
    out2 = decode_catalog(raw)
    assert isinstance(out2, CatalogEvent | Refusal)


def test_known_refusals() -> None:
    base = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "type": "view",
        "ts": 1_700_000_000_000,
    }
    cases: list[tuple[bytes, str]] = [
        (b"\xff\xfe", "invalid_utf8"),
        (b"{nope", "invalid_json"),
        (b"[1,2]", "not_an_object"),
        (orjson.dumps({k: v for k, v in base.items() if k != "user_id"}), "missing_field"),
        (orjson.dumps({**base, "type": "like"}), "unknown_event_type"),
        (orjson.dumps({**base, "user_id": "u1:seen"}), "invalid_id"),
        (orjson.dumps({**base, "user_id": "{p0}"}), "invalid_id"),
        (orjson.dumps({**base, "ts": "yesterday"}), "wrong_type"),
        (orjson.dumps({**base, "ts": 5}), "timestamp_out_of_range"),
        (
            b'{"event_id":"e","user_id":"u","item_id":"i","type":"view","ts":1700000000000,"value":NaN}',
            "invalid_json",
        ),
        (orjson.dumps({**base, "value": 1e400 if False else "x"}), "wrong_type"),
        (b"[" * 100_000 + b"]" * 100_000, "oversized"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (orjson.dumps({**base, "zzz": 1}), "unknown_field"),
    ]
    for raw, reason in cases:
        out = decode_interaction(raw)
        assert isinstance(out, Refusal), raw[:40]
        assert out.reason == reason, (raw[:60], out)


def test_future_timestamp_refused_only_with_clock() -> None:
    raw = orjson.dumps(
        {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "ts": 4_000_000_000_000}
    )
    assert isinstance(decode_interaction(raw), InteractionEvent)
    out = decode_interaction(raw, now_ms=1_700_000_000_000)
    assert isinstance(out, Refusal) and out.reason == "timestamp_out_of_range"


def test_outputs_validate_against_schemas() -> None:
    rec = Recommendation(
        user_id="u1",
        items=(
            RecommendedItem("i1", 0.5, "personalised"),
            RecommendedItem("i2", 0.1, "similar_to_item", "i9"),
        ),
        strategy="personalised",
        model_version="v1",
        source_event_id="e1",
        event_ts=1,
        published_ts=2,
    )
    jsonschema.validate(orjson.loads(encode(rec)), RECOMMENDATION)
    assert decode_recommendation(encode(rec)) == rec
    dl = DeadLetter("invalid_json", "bad", "t", 0, 5, b"k", b"\x00\xff", 3)
    jsonschema.validate(orjson.loads(encode(dl)), DEAD_LETTER)
    assert decode_dead_letter(encode(dl)) == dl
    cat = CatalogEvent("c1", "upsert", "i1", 1_700_000_000_000, ("books",), {"brand": "x"}, "text")
    jsonschema.validate(orjson.loads(encode(cat)), CATALOG)
    assert decode_catalog(encode(cat)) == cat
    assert not any(math.isnan(it.score) for it in rec.items)
