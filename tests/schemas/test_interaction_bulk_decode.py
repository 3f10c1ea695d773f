"""``decode_interactions`` gives, value for value, what ``decode_interaction`` gives alone.

The worker decodes each micro-batch with the bulk decoder; a value that misses one of
its checks goes to the one-by-one decoder, so a refused record keeps its reason and its
place. Batches of valid events get one fault planted in a field (wrong types, ids with
a newline or a space, bools and non-finite numbers as values, out-of-range times,
context keys and values the contract refuses, unknown and missing fields, cut or
non-UTF-8 bytes), and the two decoders are compared on every one.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from bulk_decode_strategies import NOW, faults, ids, names, planted, scalars
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.bulk_decode import _column_interactions, decode_catalogs, decode_interactions
from schemas.codec import MAX_TS, DecodeLimits, Refusal, decode_interaction, encode
from schemas.events import EVENT_TYPES, CatalogEvent, InteractionEvent

LIMITS = DecodeLimits(max_bytes=400, min_ts=1_000)

FAULTS = faults(["a\nb", False, {"k\nj": 1}, {f"k{i}": i for i in range(33)}, "view"], 2**64 - 1)


def interaction_obj(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event as a JSON object, each optional field there or not."""
    obj: dict[str, Any] = {
        "event_id": draw(ids),
        "user_id": draw(ids),
        "item_id": draw(ids),
        "type": draw(st.sampled_from(EVENT_TYPES)),
        "ts": draw(st.integers(1_000, NOW)),
    }
    if draw(st.booleans()):
        obj["value"] = draw(st.one_of(st.integers(-9, 9), st.floats(-5, 5)))
    if draw(st.booleans()):
        obj["context"] = draw(st.dictionaries(names, scalars, max_size=3))
    if draw(st.booleans()):
        obj["schema_version"] = 1
    return obj


@st.composite
def interaction_values(draw: st.DrawFn) -> bytes:
    """An events-topic value: valid, or with one field faulted, or broken bytes."""
    return planted(
        draw, interaction_obj(draw), ["schema_version", "value", "context", "extra"], FAULTS
    )


@st.composite
def mostly_valid_batches(draw: st.DrawFn) -> list[bytes]:
    """A batch of valid values of mixed shapes, with (one time in two) one value
    faulted: what the column-at-a-time path takes or must leave to the per-value one."""
    values = [orjson.dumps(interaction_obj(draw)) for _ in range(draw(st.integers(1, 12)))]
    if draw(st.booleans()):
        values[draw(st.integers(0, len(values) - 1))] = draw(interaction_values())
    return values


def _same(a: list[InteractionEvent | Refusal], b: list[InteractionEvent | Refusal]) -> bool:
    """Equal lists, a NaN-free comparison included (``value`` is finite when present)."""
    return len(a) == len(b) and all(
        x == y and (not isinstance(x, InteractionEvent) or type(x.value) is type(y.value))  # type: ignore[union-attr]
        for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(interaction_values(), max_size=12), st.sampled_from([None, NOW]))
def test_bulk_decode_is_the_one_by_one_decode(values: list[bytes], now_ms: int | None) -> None:
    alone = [decode_interaction(v, LIMITS, now_ms) for v in values]
    assert _same(decode_interactions(values, LIMITS, now_ms), alone)


@settings(max_examples=300, deadline=None)
@given(mostly_valid_batches(), st.sampled_from([None, NOW]))
def test_the_column_path_takes_only_batches_it_decodes_as_one_by_one(
    values: list[bytes], now_ms: int | None
) -> None:
    alone = [decode_interaction(v, LIMITS, now_ms) for v in values]
    high = MAX_TS if now_ms is None else now_ms + LIMITS.max_future_ms
    columns = _column_interactions(values, LIMITS.max_bytes, LIMITS.min_ts, high)
    if columns is not None:
        assert _same(columns, alone)
    elif all(isinstance(d, InteractionEvent) for d in alone):
        # Only a null given for an optional field sends a batch of events past it.
        assert any(None in orjson.loads(v).values() for v in values)
    assert _same(decode_interactions(values, LIMITS, now_ms), alone)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80), st.lists(interaction_values(), max_size=4))
def test_arbitrary_bytes_in_a_batch_keep_their_place(junk: bytes, values: list[bytes]) -> None:
    batch = [*values, junk, *values]
    out = decode_interactions(batch, LIMITS)
    assert _same(out, [decode_interaction(v, LIMITS) for v in batch])
    assert all(isinstance(d, InteractionEvent | Refusal) for d in out)


def test_an_id_with_a_newline_is_refused_not_split_into_two_lines() -> None:
    good = [InteractionEvent(f"e{i}", f"u{i}", f"i{i}", "view", 5_000 + i) for i in range(20)]
    values = [encode(ev) for ev in good]
    values[7] = values[7].replace(b'"u7"', b'"u\\n7"')
    out = decode_interactions(values, LIMITS)
    assert out[7] == Refusal("invalid_id", "user_id must match [A-Za-z0-9_.@+=/-]{1,128}")
    assert out[:7] + out[8:] == good[:7] + good[8:]
    catalog = encode(CatalogEvent("e1", "upsert", "i1", 5_000)).replace(b'"i1"', b'"i\\n1"')
    assert isinstance(decode_catalogs([catalog], LIMITS)[0], Refusal)  # the shared check


def test_values_come_out_as_floats() -> None:
    raw = encode(InteractionEvent("e", "u", "i", "rating", 5_000, 4.0)).replace(b"4.0", b"4")
    (event,) = decode_interactions([raw], LIMITS)
    assert isinstance(event, InteractionEvent) and type(event.value) is float
    assert math.isclose(event.value, 4.0)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["context", "value", "schema_version"]),
    st.sampled_from([[], {}, 0, 0.0, "", False, None, [1], "x", True, 1, 2.5]),
)
def test_optional_fields_with_falsy_or_odd_values_decode_as_alone(field: str, odd: Any) -> None:
    """The bulk decoder reads the optional fields only when a value has more than the
    five required ones: an empty, falsy or ill-typed optional field must still get the
    one-by-one decoder's answer (``[]`` or ``0`` as a context is refused, ``{}`` is none)."""
    obj: dict[str, Any] = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "type": "rating",
        "ts": 5_000,
        field: odd,
    }
    raw = orjson.dumps(obj)
    assert _same(decode_interactions([raw], LIMITS), [decode_interaction(raw, LIMITS)])


GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": 5_000}
ONE_FAULT = [
    {"context": {"k": "v" * 257}},
    {"context": {f"k{i}": i for i in range(33)}},
    {"context": {"bad key": 1}},
    {"context": {"k": [1]}},
    {"ts": 999},
    {"ts": True},
    {"schema_version": 2},
    {"schema_version": True},
    {"value": True},
    {"value": "1"},
    {"type": "zap"},
    {"item_id": "a b"},
    {"extra": 1},
]


def test_each_fault_in_a_batch_of_good_values_leaves_the_column_path() -> None:
    good = {**GOOD, "value": 2, "context": {"s": "x" * 256, "f": 0.5}, "schema_version": 1}
    for fault in ONE_FAULT:
        values = [orjson.dumps(good), orjson.dumps(GOOD), orjson.dumps({**good, **fault})]
        assert _column_interactions(values, LIMITS.max_bytes, LIMITS.min_ts, MAX_TS) is None
        out = decode_interactions(values, LIMITS)
        assert isinstance(out[2], Refusal), fault
        assert _same(out, [decode_interaction(v, LIMITS) for v in values])
    events = _column_interactions(values[:2], LIMITS.max_bytes, LIMITS.min_ts, MAX_TS)
    assert events is not None and events[0].value == 2.0 and type(events[0].value) is float
