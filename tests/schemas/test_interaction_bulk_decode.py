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

from schemas.bulk_decode import decode_catalogs, decode_interactions
from schemas.codec import DecodeLimits, Refusal, decode_interaction, encode
from schemas.events import EVENT_TYPES, CatalogEvent, InteractionEvent

LIMITS = DecodeLimits(max_bytes=400, min_ts=1_000)

FAULTS = faults(["a\nb", False, {"k\nj": 1}, {f"k{i}": i for i in range(33)}, "view"], 2**64 - 1)


@st.composite
def interaction_values(draw: st.DrawFn) -> bytes:
    """An events-topic value: valid, or with one field faulted, or broken bytes."""
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
    return planted(draw, obj, ["schema_version", "value", "context", "extra"], FAULTS)


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
