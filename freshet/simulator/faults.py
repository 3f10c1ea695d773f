"""Malformed raw messages for fault-injection tests, each with the refusal it must get.

Every message is bytes as it would arrive on the events topic, paired with the
dead-letter reason that ``schemas.codec.decode_interaction`` (default limits, no clock)
gives it. None contains a newline byte, so they can also be written as JSONL lines
(the one empty message then reads as a blank line, which file readers skip).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson

from schemas.dead_letter import DeadLetterReason

Fault = tuple[bytes, DeadLetterReason]

_TS = 1_704_067_200_000


def _event(rng: np.random.Generator, **changes: object) -> dict[str, object]:
    """A valid interaction object, then ``changes`` (a value of ``...`` drops the field)."""
    n = int(rng.integers(0, 1_000_000))
    obj: dict[str, object] = {
        "schema_version": 1,
        "event_id": f"bad-{n}",
        "user_id": f"u{n % 997}",
        "item_id": f"i{n % 991}",
        "type": "view",
        "ts": _TS + n,
    }
    for key, value in changes.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def _json(rng: np.random.Generator, **changes: object) -> bytes:
    return orjson.dumps(_event(rng, **changes))


def _deep(depth: int) -> bytes:
    return b'{"event_id":"e1","user_id":"u1","item_id":"i1","type":"view","ts":1,"context":' + (
        b"[" * depth + b"]" * depth + b"}"
    )


# Each maker returns one malformed message; the list covers every reason the decoder
# can give from bytes alone (``key_mismatch`` needs the Kafka key, so it is not here).
_MAKERS: tuple[Callable[[np.random.Generator], Fault], ...] = (
    lambda r: (b'{"event_id": "e1", "user_id": ', "invalid_json"),
    lambda r: (_json(r)[:-1], "invalid_json"),
    lambda r: (b"", "invalid_json"),
    lambda r: (b"\x00\x01binary\x02", "invalid_json"),
    lambda r: (_json(r, value=1.0).replace(b"1.0", b"NaN"), "invalid_json"),
    lambda r: (_json(r, value=1.0).replace(b"1.0", b"Infinity"), "invalid_json"),
    lambda r: (_json(r, value=1.0).replace(b"1.0", b"1e999"), "invalid_json"),
    lambda r: (_deep(5000), "invalid_json"),
    lambda r: (_json(r).replace(b'"view"', b'"vi\xffew"'), "invalid_utf8"),
    lambda r: (b"\xc3\x28" + _json(r), "invalid_utf8"),
    lambda r: (orjson.dumps([_event(r)]), "not_an_object"),
    lambda r: (b'"just a string"', "not_an_object"),
    lambda r: (b"42", "not_an_object"),
    lambda r: (_json(r, event_id=...), "missing_field"),
    lambda r: (_json(r, user_id=...), "missing_field"),
    lambda r: (_json(r, item_id=...), "missing_field"),
    lambda r: (_json(r, ts=...), "missing_field"),
    lambda r: (_json(r, admin=True), "unknown_field"),
    lambda r: (_json(r, user_id=12345), "wrong_type"),
    lambda r: (_json(r, item_id=None), "wrong_type"),
    lambda r: (_json(r, ts="2024-01-01T00:00:00Z"), "wrong_type"),
    lambda r: (_json(r, ts=1.7e12), "wrong_type"),
    lambda r: (_json(r, value="five"), "wrong_type"),
    lambda r: (_json(r, value=True), "wrong_type"),
    lambda r: (_json(r, context=["a", "b"]), "wrong_type"),
    lambda r: (_json(r, context={"nested": {"a": 1}}), "wrong_type"),
    lambda r: (_json(r, type=3), "wrong_type"),
    lambda r: (_json(r, user_id="u1:seen"), "invalid_id"),
    lambda r: (_json(r, user_id="{x}"), "invalid_id"),
    lambda r: (_json(r, item_id="i1 OR 1=1"), "invalid_id"),
    lambda r: (_json(r, event_id=""), "invalid_id"),
    lambda r: (_json(r, user_id="u" * 200), "invalid_id"),
    lambda r: (_json(r, item_id="fr:user:u1"), "invalid_id"),
    lambda r: (_json(r, user_id="*"), "invalid_id"),
    lambda r: (_json(r, context={"bad key!": 1}), "invalid_id"),
    lambda r: (_json(r, type="like"), "unknown_event_type"),
    lambda r: (_json(r, type="VIEW"), "unknown_event_type"),
    lambda r: (_json(r, ts=-5), "out_of_range"),
    lambda r: (_json(r, ts=10**15), "out_of_range"),
    lambda r: (_json(r, schema_version=2), "out_of_range"),
    lambda r: (_json(r, ts=1_000), "timestamp_out_of_range"),
    lambda r: (_json(r, ts=0), "timestamp_out_of_range"),
    lambda r: (_json(r, context={"note": "x" * 300}), "too_large"),
    lambda r: (_json(r, context={f"k{i}": i for i in range(40)}), "too_large"),
    lambda r: (_json(r, context={"blob": "x" * 70_000}), "oversized"),
    lambda r: (b" " * (64 * 1024 + 1), "oversized"),
)


def malformed_messages(n: int | None = None, seed: int = 0) -> list[Fault]:
    """Malformed events-topic values, each with its expected dead-letter reason.

    Args:
        n: How many; every kind appears once before any repeats, in an order shuffled
            by ``seed``. ``None`` gives each kind exactly once.
        seed: Seed of the order and of the ids inside the messages.
    """
    rng = np.random.default_rng(seed)
    count = len(_MAKERS) if n is None else n
    out: list[Fault] = []
    while len(out) < count:
        for k in rng.permutation(len(_MAKERS))[: count - len(out)]:
            out.append(_MAKERS[int(k)](rng))
    return out


def fault_kinds() -> int:
    """Number of distinct malformed-message kinds ``malformed_messages`` produces."""
    return len(_MAKERS)
