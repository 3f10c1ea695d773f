"""``decode_catalogs`` gives, value for value, what ``decode_catalog`` gives alone.

The bulk decoder checks a batch column by column and sends any value that misses a
check to the one-by-one decoder, so a bad record keeps its reason and its place. These
tests draw batches of valid records with faults planted one field at a time (wrong
types, bad names, ids with a newline, out-of-range times, non-UTF-8 and cut bytes,
unknown fields, oversized values) and compare the two decoders on every one.
"""

from __future__ import annotations

from typing import Any

from bulk_decode_strategies import NOW, faults, ids, names, planted, scalars
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.bulk_decode import decode_catalogs
from schemas.codec import DecodeLimits, Refusal, decode_catalog, encode
from schemas.events import CATALOG_OPS, CatalogEvent

LIMITS = DecodeLimits(max_bytes=600, min_ts=1_000)

FAULTS = faults(
    ["\ny", "n" * 65, ["ok", 3], ["a\nb"], {"k\n": 1}, "t" * 10_001, "remove"], 2**63 - 1
)


@st.composite
def catalog_values(draw: st.DrawFn) -> bytes:
    """A catalog value: valid, or with one field faulted, or broken bytes."""
    obj: dict[str, Any] = {
        "event_id": draw(ids),
        "op": draw(st.sampled_from(CATALOG_OPS)),
        "item_id": draw(ids),
        "ts": draw(st.integers(1_000, NOW)),
    }
    if draw(st.booleans()):
        obj["categories"] = draw(st.lists(names, max_size=3))
    if draw(st.booleans()):
        obj["attributes"] = draw(st.dictionaries(names, scalars, max_size=3))
    if draw(st.booleans()):
        obj["text"] = draw(st.text(max_size=12))
    return planted(draw, obj, ["schema_version", "extra"], FAULTS)


@settings(max_examples=300, deadline=None)
@given(st.lists(catalog_values(), max_size=12), st.sampled_from([None, NOW]))
def test_bulk_decode_is_the_one_by_one_decode(values: list[bytes], now_ms: int | None) -> None:
    alone = [decode_catalog(v, LIMITS, now_ms) for v in values]
    assert decode_catalogs(values, LIMITS, now_ms) == alone


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80), st.lists(catalog_values(), max_size=4))
def test_arbitrary_bytes_in_a_batch_keep_their_place(junk: bytes, values: list[bytes]) -> None:
    batch = [*values, junk, *values]
    out = decode_catalogs(batch, LIMITS)
    assert out == [decode_catalog(v, LIMITS) for v in batch]
    assert all(isinstance(d, CatalogEvent | Refusal) for d in out)


def test_one_bad_name_leaves_the_rest_of_the_batch_decoded() -> None:
    good = [
        CatalogEvent(f"e{i}", "upsert", f"i{i}", 5_000 + i, ("c",), {"k": i}) for i in range(50)
    ]
    values = [encode(ev) for ev in good]
    values[17] = values[17].replace(b'"i17"', b'"i 17"')
    out = decode_catalogs(values, LIMITS)
    assert out[17] == Refusal("invalid_id", "item_id must match [A-Za-z0-9_.@+=/-]{1,128}")
    assert out[:17] + out[18:] == good[:17] + good[18:]
