"""Hypothesis strategies for malformed events and catalog messages, each with its reason.

Every drawn message has exactly one defect on top of a valid base record, so the
dead-letter reason it must get is known by construction (the contract's order of
checks: size, UTF-8, JSON, object, required fields, unknown fields, version, ids,
type, timestamp, value, context), not by asking the decoder. ``draw_corpus`` runs the
strategies under a fixed seed, so every run sends the same messages.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.dead_letter import DeadLetterReason
from schemas.events import CATALOG_OPS, EVENT_TYPES

TS = 1_704_067_200_000  # 2024-01-01, inside every accepted window
MIN_TS = 631_152_000_000  # the default FRESHET_MIN_EVENT_TS_MS (1990-01-01)
MAX_TS = 99_999_999_999_999
LIMIT = 64 * 1024  # the default FRESHET_MAX_MESSAGE_BYTES
FAR_FUTURE = 4_102_444_800_000  # 2100: far past now + FRESHET_MAX_FUTURE_MS

#: Ids that try to reach other Redis keys (``<ns>:<gen>:{<gen>.p<N>}:u:<id>``) or to
#: smuggle a command through an inline protocol; the contract forbids all of them.
INJECTION_IDS = (
    "u1:s",
    "u1:e",
    "{p0}",
    "{g1.p0}",
    "*",
    "u\r\nFLUSHALL",
    "u1\r\n*1\r\n$8\r\nFLUSHALL\r\n",
    "fr:g1:{g1.p0}:u:alice",
    "alice:wm",
    "a b",
    "u1\x00",
    "ü",
    "",
    "x" * 129,
)
_FORBIDDEN = ":{}*?[] \t\r\n\x00\"'\\,;|#%&<>!~`$^()ü€\u2028"
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@+=/-"
_NAN_SPELLINGS = (
    "NaN",
    "-NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "+Infinity",
    "inf",
    "-inf",
    "1e999",
    "-1e999",
    "1E400",
)

Fault = tuple[bytes | None, bytes, DeadLetterReason]  # record key, value, reason

_valid_ids = st.text(_ID_CHARS, min_size=1, max_size=24)
_int64 = st.integers(-(2**63), 2**63 - 1)


def _bad_id() -> st.SearchStrategy[str]:
    planted = st.sampled_from(INJECTION_IDS)
    spliced = st.builds(
        lambda a, bad, b: a + bad + b, _valid_ids, st.sampled_from(_FORBIDDEN), _valid_ids
    )
    return st.one_of(planted, spliced)


def _oversize() -> st.SearchStrategy[int]:
    """Lengths past 64 KiB: one in twenty near the broker's 1 MB, the rest under 128 KiB."""
    return st.integers(0, 19).flatmap(
        lambda r: st.integers(700_000, 1_000_000) if r == 0 else st.integers(LIMIT + 1, 2 * LIMIT)
    )


def _dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


# --- interaction events ----------------------------------------------------------------


@st.composite
def interaction_base(draw: st.DrawFn) -> dict[str, Any]:
    """A valid interaction object (keys in contract order)."""
    obj: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "bad-" + draw(_valid_ids),
        "user_id": "ub-" + draw(_valid_ids),
        "item_id": "i" + str(draw(st.integers(0, 500))),
        "type": draw(st.sampled_from(["view", "click", "purchase"])),
        "ts": TS + draw(st.integers(0, 10**9)),
    }
    if draw(st.booleans()):
        obj["context"] = {"device": draw(st.sampled_from(["ios", "web"]))}
    return obj


def _swap(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(obj)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _key_of(obj: dict[str, Any], field: str) -> bytes:
    value = obj.get(field)
    return value.encode() if isinstance(value, str) else b"u-bad"


@st.composite
def malformed_interaction(draw: st.DrawFn) -> Fault:
    """One malformed events-topic record (key, value) and the reason it must get."""
    base = draw(interaction_base())
    key: bytes | None = _key_of(base, "user_id")
    kind = draw(st.integers(0, 24))
    raw: bytes
    reason: DeadLetterReason
    value: Any
    change: dict[str, Any]
    if kind == 0:  # truncated JSON: any proper prefix of an object is not JSON
        full = _dumps(base)
        raw, reason = full[: draw(st.integers(1, len(full) - 1))], "invalid_json"
    elif kind == 1:  # NaN / infinity spellings in a number slot
        field = draw(st.sampled_from(["value", "ts"]))
        spelled = draw(st.sampled_from(_NAN_SPELLINGS))
        raw = _dumps(_swap(base, **{field: 7})).replace(
            f'"{field}":7'.encode(), f'"{field}":{spelled}'.encode()
        )
        reason = "invalid_json"
    elif kind == 2:  # nesting past the parser's depth limit (1024)
        depth = draw(st.integers(1_025, 10_000))  # still under 64 KiB
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        raw, reason = opener * depth + b"1" + closer * depth, "invalid_json"
    elif kind == 3:  # bytes that are not UTF-8, spliced into valid JSON
        full = _dumps(base)
        at = draw(st.integers(0, len(full)))
        bad = draw(
            st.sampled_from([b"\x80", b"\xbf", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xfe"])
        )
        raw, reason = full[:at] + bad + full[at:], "invalid_utf8"
    elif kind == 4:  # valid JSON, not an object
        other = draw(
            st.one_of(
                st.lists(_int64, max_size=4),
                st.text(max_size=20),
                _int64,
                st.booleans(),
                st.none(),
            )
        )
        raw, reason = orjson.dumps(other), "not_an_object"
    elif kind == 5:  # a required field missing
        field = draw(st.sampled_from(["event_id", "user_id", "item_id", "type", "ts"]))
        raw, reason = _dumps(_swap(base, **{field: ...})), "missing_field"
    elif kind == 6:  # an unknown field
        name = draw(st.text(min_size=1, max_size=12).filter(lambda s: s not in _INTERACTION_FIELDS))
        raw, reason = _dumps(_swap(base, **{name: draw(_int64)})), "unknown_field"
    elif kind == 7:  # ids of the wrong type
        field = draw(st.sampled_from(["event_id", "user_id", "item_id"]))
        value = draw(st.one_of(_int64, st.none(), st.booleans(), st.lists(_int64, max_size=2)))
        raw, reason = _dumps(_swap(base, **{field: value})), "wrong_type"
    elif kind == 8:  # ts not an integer: string, fraction, bool, past 64 bits
        value = draw(
            st.one_of(
                st.sampled_from(["2024-01-01T00:00:00Z", "NaN", "Infinity", "now"]),
                st.floats(1.0, 1e13, allow_nan=False).map(lambda f: f + 0.5),
                st.booleans(),
            )
        )
        raw = _dumps(_swap(base, ts=value))
        if draw(st.booleans()):
            raw = _big_ts(base, draw(st.integers(2**64, 2**80)))
        reason = "wrong_type"
    elif kind == 9:  # value / type / context of the wrong type
        change = draw(
            st.sampled_from(
                [
                    {"value": "five"},
                    {"value": "NaN"},
                    {"value": "Infinity"},
                    {"value": True},
                    {"value": [1]},
                    {"type": 3},
                    {"type": None},
                    {"context": ["a"]},
                    {"context": "ios"},
                    {"context": {"a": {"b": 1}}},
                    {"context": {"a": [1, 2]}},
                    {"context": {"a": None}},
                ]
            )
        )
        raw, reason = _dumps(_swap(base, **change)), "wrong_type"
    elif kind in (10, 11, 12):  # ids that would address other keys
        field = draw(st.sampled_from(["event_id", "user_id", "item_id"]))
        value = draw(_bad_id())
        obj = _swap(base, **{field: value})
        key = value.encode() if field == "user_id" else key
        raw, reason = _dumps(obj), "invalid_id"
    elif kind == 13:  # a context key outside the name pattern
        raw, reason = _dumps(_swap(base, context={draw(_bad_id()) or ":": 1})), "invalid_id"
    elif kind == 14:  # unknown event types
        etype = draw(st.text(max_size=40).filter(lambda s: s not in EVENT_TYPES))
        raw, reason = _dumps(_swap(base, type=etype)), "unknown_event_type"
    elif kind == 15:  # timestamps outside what any clock allows, or an unknown version
        change = draw(
            st.one_of(
                st.integers(-(2**62), -1).map(lambda t: {"ts": t}),
                st.integers(MAX_TS + 1, 2**62).map(lambda t: {"ts": t}),
                st.sampled_from(
                    [{"schema_version": 2}, {"schema_version": "1"}, {"schema_version": 0}]
                ),
            )
        )
        raw, reason = _dumps(_swap(base, **change)), "out_of_range"
    elif kind == 16:  # far past (before 1990) or far future (past now + 24 h)
        ts = draw(st.one_of(st.integers(0, MIN_TS - 1), st.integers(FAR_FUTURE, MAX_TS)))
        raw, reason = _dumps(_swap(base, ts=ts)), "timestamp_out_of_range"
    elif kind == 17:  # huge strings and too many keys inside the size limit
        if draw(st.booleans()):
            n = draw(st.integers(257, 60_000))
            raw = _dumps(_swap(base, context={"note": "x" * n}))
        else:
            n = draw(st.integers(33, 400))
            raw = _dumps(_swap(base, context={f"k{i}": i for i in range(n)}))
        reason = "too_large"
    elif kind == 18:  # oversized: past 64 KiB, up to the broker's 1 MB
        n = draw(_oversize())
        raw = draw(
            st.sampled_from(
                [
                    _dumps(_swap(base, context={"blob": "y" * n})),
                    b"\xff" * n,  # refused on size before UTF-8 is even looked at
                    b"[" * n,
                ]
            )
        )
        reason = "oversized"
    elif kind == 19:  # a valid event keyed by something else: would split the user
        key = draw(
            st.one_of(st.none(), st.binary(max_size=16), st.sampled_from([b"u1:s", b"*", b"{p0}"]))
        )
        if key == _key_of(base, "user_id"):
            key = b"someone-else"
        raw, reason = _dumps(base), "key_mismatch"
    elif kind == 20:  # duplicate keys: JSON keeps the last; a missing one is still missing
        raw = _dumps(_swap(base, user_id=...))[:-1] + b',"item_id":"i2"}'
        reason = "missing_field"
    elif kind == 21:  # arbitrary printable garbage starting like an object
        raw = b"{" + draw(st.text(_ID_CHARS + ' ,"', max_size=40)).encode() + b"\x00"
        reason = "invalid_json"
    elif kind == 22:  # empty and whitespace-only values
        raw, reason = draw(st.sampled_from([b"", b" ", b"\t\r\n", b"null"])), "invalid_json"
        if raw == b"null":
            reason = "not_an_object"
    elif kind == 23:  # a context string past the scalar limit
        raw, reason = (
            _dumps(_swap(base, context={"q": "z" * draw(st.integers(257, 2_000))})),
            "too_large",
        )
    else:  # a context value that is not finite can only be spelled as invalid JSON
        raw = _dumps(_swap(base, context={"score": 7})).replace(
            b'"score":7', b'"score":' + draw(st.sampled_from(_NAN_SPELLINGS)).encode()
        )
        reason = "invalid_json"
    return key, raw, reason


_INTERACTION_FIELDS = frozenset(
    {"schema_version", "event_id", "user_id", "item_id", "type", "ts", "value", "context"}
)


def _big_ts(base: dict[str, Any], value: int) -> bytes:
    # orjson will not write integers past 64 bits; splice the digits in.
    return _dumps(_swap(base, ts=7)).replace(b'"ts":7', b'"ts":' + str(value).encode())


# --- catalog events --------------------------------------------------------------------


@st.composite
def catalog_base(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": "cbad-" + draw(_valid_ids),
        "op": "upsert",
        "item_id": "ibad-" + draw(_valid_ids),
        "ts": TS + draw(st.integers(0, 10**9)),
        "categories": ["c1"],
        "attributes": {"brand": "b"},
        "text": "a thing",
    }


@st.composite
def malformed_catalog(draw: st.DrawFn) -> Fault:
    """One malformed catalog-topic record (key, value) and the reason it must get."""
    base = draw(catalog_base())
    key: bytes | None = base["item_id"].encode()
    kind = draw(st.integers(0, 12))
    reason: DeadLetterReason
    change: dict[str, Any]
    if kind == 0:
        full = _dumps(base)
        raw, reason = full[: draw(st.integers(1, len(full) - 1))], "invalid_json"
    elif kind == 1:
        raw, reason = _dumps(_swap(base, op=...)), "missing_field"
    elif kind == 2:
        op = draw(st.text(max_size=20).filter(lambda s: s not in CATALOG_OPS))
        raw, reason = _dumps(_swap(base, op=op)), "unknown_event_type"
    elif kind == 3:
        change = draw(
            st.sampled_from(
                [
                    {"categories": "c1"},
                    {"categories": [1]},
                    {"attributes": ["a"]},
                    {"text": 5},
                    {"op": 1},
                ]
            )
        )
        raw, reason = _dumps(_swap(base, **change)), "wrong_type"
    elif kind == 4:
        raw, reason = (
            _dumps(_swap(base, categories=[f"c{i}" for i in range(draw(st.integers(33, 300)))])),
            "too_large",
        )
    elif kind == 5:
        raw, reason = _dumps(_swap(base, text="t" * draw(st.integers(10_001, 60_000)))), "too_large"
    elif kind == 6:
        raw, reason = _dumps(_swap(base, categories=[draw(_bad_id()) or ":"])), "invalid_id"
    elif kind == 7:
        value = draw(_bad_id())
        raw, reason, key = _dumps(_swap(base, item_id=value)), "invalid_id", value.encode()
    elif kind == 8:
        ts = draw(st.one_of(st.integers(0, MIN_TS - 1), st.integers(FAR_FUTURE, MAX_TS)))
        raw, reason = _dumps(_swap(base, ts=ts)), "timestamp_out_of_range"
    elif kind == 9:
        n = draw(_oversize())
        raw, reason = _dumps(_swap(base, text="w" * n)), "oversized"
    elif kind == 10:
        full = _dumps(base)
        at = draw(st.integers(0, len(full)))
        raw, reason = full[:at] + b"\xc3" + full[at:], "invalid_utf8"
    elif kind == 11:
        key = draw(st.one_of(st.none(), st.sampled_from([b"", b"*", b"i1:s"])))
        raw, reason = _dumps(base), "key_mismatch"
    else:
        raw, reason = _dumps(_swap(base, attributes={f"a{i}": i for i in range(65)})), "too_large"
    return key, raw, reason


# --- drawing a corpus --------------------------------------------------------------------


def draw_corpus(
    strategy: st.SearchStrategy[Fault], n: int, seed_value: int, batch: int = 50
) -> list[Fault]:
    """At least ``n`` messages from ``strategy``, the same ones on every run for a seed.

    Hypothesis draws them in batches of ``batch`` through a seeded ``@given`` run with
    only the generate phase (no shrinking, no example database).
    """
    out: list[Fault] = []

    @seed(seed_value)
    @hsettings(
        max_examples=n // batch + 20,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=batch, max_size=batch))
    def collect(drawn: list[Fault]) -> None:
        out.extend(drawn)

    collect()
    return out
