"""Encode and decode the contract's messages with orjson, validating as we go.

Decoding never raises on input: it returns the typed message or a ``Refusal`` with a
dead-letter reason. The checks mirror the JSON Schema files exactly; a test runs both
on the same generated inputs so the two cannot drift.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from schemas.dead_letter import DeadLetter, DeadLetterReason
from schemas.events import CATALOG_OPS, EVENT_TYPES, CatalogEvent, InteractionEvent
from schemas.recommendation import Recommendation

ID_RE: Final = re.compile(r"[A-Za-z0-9_.@+=/-]{1,128}")
NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TS: Final = 99_999_999_999_999
MAX_SCALAR_STR: Final = 256
MAX_CONTEXT_KEYS: Final = 32
MAX_ATTRIBUTES: Final = 64
MAX_CATEGORIES: Final = 32
MAX_TEXT: Final = 10_000

_INTERACTION_FIELDS: Final = frozenset(
    {"schema_version", "event_id", "user_id", "item_id", "type", "ts", "value", "context"}
)
_CATALOG_FIELDS: Final = frozenset(
    {"schema_version", "event_id", "op", "item_id", "ts", "categories", "attributes", "text"}
)
_INTERACTION_REQUIRED: Final = frozenset({"event_id", "user_id", "item_id", "type", "ts"})
_EVENT_TYPE_SET: Final = frozenset(EVENT_TYPES)
_CATALOG_OP_SET: Final = frozenset(CATALOG_OPS)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds applied on top of the schema when decoding live input.

    Attributes:
        max_bytes: Larger messages are refused before parsing (``oversized``).
        min_ts: Earliest accepted event time, epoch ms.
        max_future_ms: How far past ``now_ms`` an event time may lie.
    """

    max_bytes: int = 64 * 1024
    min_ts: int = 631_152_000_000  # 1990-01-01
    max_future_ms: int = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message could not be decoded; becomes a dead letter."""

    reason: DeadLetterReason
    detail: str


class _Invalid(Exception):
    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _parse(raw: bytes, limits: DecodeLimits) -> dict[str, Any]:
    if len(raw) > limits.max_bytes:
        raise _Invalid("oversized", f"message is {len(raw)} bytes, limit {limits.max_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Invalid("invalid_utf8", f"not UTF-8 at byte {exc.start}") from None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Invalid("invalid_json", f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise _Invalid("invalid_json", "nesting too deep") from None
    if not isinstance(obj, dict):
        raise _Invalid("not_an_object", f"top level is {type(obj).__name__}, expected object")
    return obj


def _check_fields(obj: dict[str, Any], allowed: frozenset[str], required: tuple[str, ...]) -> None:
    for name in required:
        if name not in obj:
            raise _Invalid("missing_field", f"missing required field {name!r}")
    extra = obj.keys() - allowed
    if extra:
        raise _Invalid("unknown_field", f"unknown field {sorted(extra)[0][:64]!r}")
    version = obj.get("schema_version", 1)
    if type(version) is not int or version != 1:
        raise _Invalid("out_of_range", f"unsupported schema_version {str(version)[:32]}")


def _id(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise _Invalid("wrong_type", f"{name} must be a string")
    if ID_RE.fullmatch(value) is None:
        raise _Invalid("invalid_id", f"{name} must match [A-Za-z0-9_.@+=/-]{{1,128}}")
    return value


def _ts(obj: dict[str, Any], limits: DecodeLimits, now_ms: int | None) -> int:
    value = obj["ts"]
    if type(value) is not int:
        if isinstance(value, float) and not math.isfinite(value):
            raise _Invalid("non_finite_number", "ts is not finite")
        raise _Invalid("wrong_type", "ts must be an integer (epoch milliseconds)")
    if value < 0 or value > MAX_TS:
        raise _Invalid("out_of_range", f"ts {value} outside 0..{MAX_TS}")
    if value < limits.min_ts:
        raise _Invalid("timestamp_out_of_range", f"ts {value} before {limits.min_ts}")
    if now_ms is not None and value > now_ms + limits.max_future_ms:
        raise _Invalid(
            "timestamp_out_of_range", f"ts {value} more than {limits.max_future_ms} ms ahead"
        )
    return value


def _scalar_map(value: Any, name: str, max_keys: int) -> dict[str, str | int | float | bool]:
    if not isinstance(value, dict):
        raise _Invalid("wrong_type", f"{name} must be an object")
    if len(value) > max_keys:
        raise _Invalid("too_large", f"{name} has {len(value)} keys, limit {max_keys}")
    for key, item in value.items():
        if NAME_RE.fullmatch(key) is None:
            raise _Invalid("invalid_id", f"{name} key must match [A-Za-z0-9_.-]{{1,64}}")
        if isinstance(item, str):
            if len(item) > MAX_SCALAR_STR:
                raise _Invalid("too_large", f"{name}.{key} longer than {MAX_SCALAR_STR}")
        elif isinstance(item, bool | int):
            pass
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _Invalid("non_finite_number", f"{name}.{key} is not finite")
        else:
            raise _Invalid("wrong_type", f"{name}.{key} must be a string, number or boolean")
    return value


def _interaction(obj: dict[str, Any], limits: DecodeLimits, now_ms: int | None) -> InteractionEvent:
    _check_fields(obj, _INTERACTION_FIELDS, ("event_id", "user_id", "item_id", "type", "ts"))
    event_id = _id(obj, "event_id")
    user_id = _id(obj, "user_id")
    item_id = _id(obj, "item_id")
    etype = obj["type"]
    if not isinstance(etype, str):
        raise _Invalid("wrong_type", "type must be a string")
    if etype not in _EVENT_TYPE_SET:
        raise _Invalid("unknown_event_type", f"unknown event type {etype[:32]!r}")
    ts = _ts(obj, limits, now_ms)
    value = obj.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid("wrong_type", "value must be a number")
        if not math.isfinite(value):
            raise _Invalid("non_finite_number", "value is not finite")
        value = float(value)
    context = obj.get("context")
    if context is not None:
        context = _scalar_map(context, "context", MAX_CONTEXT_KEYS)
    return InteractionEvent(event_id, user_id, item_id, etype, ts, value, context or None)


def _catalog(obj: dict[str, Any], limits: DecodeLimits, now_ms: int | None) -> CatalogEvent:
    _check_fields(obj, _CATALOG_FIELDS, ("event_id", "op", "item_id", "ts"))
    event_id = _id(obj, "event_id")
    op = obj["op"]
    if not isinstance(op, str):
        raise _Invalid("wrong_type", "op must be a string")
    if op not in _CATALOG_OP_SET:
        raise _Invalid("unknown_event_type", f"unknown catalog op {op[:32]!r}")
    item_id = _id(obj, "item_id")
    ts = _ts(obj, limits, now_ms)
    categories = obj.get("categories", [])
    if not isinstance(categories, list):
        raise _Invalid("wrong_type", "categories must be an array")
    if len(categories) > MAX_CATEGORIES:
        raise _Invalid("too_large", f"{len(categories)} categories, limit {MAX_CATEGORIES}")
    for cat in categories:
        if not isinstance(cat, str):
            raise _Invalid("wrong_type", "categories must be strings")
        if NAME_RE.fullmatch(cat) is None:
            raise _Invalid("invalid_id", "category must match [A-Za-z0-9_.-]{1,64}")
    attributes = _scalar_map(obj.get("attributes", {}), "attributes", MAX_ATTRIBUTES)
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise _Invalid("wrong_type", "text must be a string")
    if len(text) > MAX_TEXT:
        raise _Invalid("too_large", f"text longer than {MAX_TEXT}")
    return CatalogEvent(event_id, op, item_id, ts, tuple(categories), attributes, text)


def decode_interaction(
    raw: bytes, limits: DecodeLimits = DecodeLimits(), now_ms: int | None = None
) -> InteractionEvent | Refusal:
    """Decode one events-topic value; never raises on input.

    Args:
        raw: The message value, as bytes.
        limits: Size and time bounds.
        now_ms: Wall clock for the future-timestamp bound; ``None`` skips that bound
            (replays of old data).
    """
    try:
        return _interaction(_parse(raw, limits), limits, now_ms)
    except _Invalid as exc:
        return Refusal(exc.reason, exc.detail)


def decode_catalog(
    raw: bytes, limits: DecodeLimits = DecodeLimits(), now_ms: int | None = None
) -> CatalogEvent | Refusal:
    """Decode one catalog-topic value; never raises on input."""
    try:
        return _catalog(_parse(raw, limits), limits, now_ms)
    except _Invalid as exc:
        return Refusal(exc.reason, exc.detail)


def interaction_from_obj(
    obj: Any, limits: DecodeLimits = DecodeLimits(), now_ms: int | None = None
) -> InteractionEvent | Refusal:
    """Validate an already-parsed JSON object (file readers use this)."""
    if not isinstance(obj, dict):
        return Refusal("not_an_object", f"top level is {type(obj).__name__}, expected object")
    try:
        return _interaction(obj, limits, now_ms)
    except _Invalid as exc:
        return Refusal(exc.reason, exc.detail)


def catalog_from_obj(
    obj: Any, limits: DecodeLimits = DecodeLimits(), now_ms: int | None = None
) -> CatalogEvent | Refusal:
    """Validate an already-parsed catalog JSON object."""
    if not isinstance(obj, dict):
        return Refusal("not_an_object", f"top level is {type(obj).__name__}, expected object")
    try:
        return _catalog(obj, limits, now_ms)
    except _Invalid as exc:
        return Refusal(exc.reason, exc.detail)


def encode(message: InteractionEvent | CatalogEvent | Recommendation | DeadLetter) -> bytes:
    """Serialise a contract message to compact JSON bytes."""
    return orjson.dumps(message.to_dict())


def decode_recommendation(raw: bytes) -> Recommendation:
    """Parse a recommendations-topic value written by freshet (trusted input)."""
    from schemas.recommendation import RecommendedItem

    obj = orjson.loads(raw)
    items = tuple(
        RecommendedItem(it["item_id"], float(it["score"]), it["reason"], it.get("reason_item_id"))
        for it in obj["items"]
    )
    return Recommendation(
        user_id=obj["user_id"],
        items=items,
        strategy=obj["strategy"],
        model_version=obj["model_version"],
        source_event_id=obj["source_event_id"],
        event_ts=obj["event_ts"],
        published_ts=obj["published_ts"],
    )


def decode_dead_letter(raw: bytes) -> DeadLetter:
    """Parse a dead-letter-topic value written by freshet."""
    return DeadLetter.from_dict(orjson.loads(raw))
