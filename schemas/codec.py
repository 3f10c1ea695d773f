"""Encode and decode the contract's messages with orjson, validating as we go.

Decoding never raises on input: it returns the typed message or a ``Refusal`` with a
dead-letter reason. The checks mirror the JSON Schema files exactly; a test runs both
on the same generated inputs so the two cannot drift.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Sequence
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


_ID_LINES: Final = re.compile(r"(?:[A-Za-z0-9_.@+=/-]{1,128}\n)*")
_NAME_LINES: Final = re.compile(r"(?:[A-Za-z0-9_.-]{1,64}\n)*")


def decode_catalogs(
    raws: Sequence[bytes], limits: DecodeLimits = DecodeLimits(), now_ms: int | None = None
) -> list[CatalogEvent | Refusal]:
    """``decode_catalog`` of each value, in one pass over the batch (a bulk load).

    Every value is parsed and given cheap type checks; the ids, category names and
    attribute keys of the batch are then matched by one regular expression per
    column, not one per string. A value that misses any check goes through
    ``decode_catalog`` itself, so it gets the very refusal (and reason) it would get
    alone; the result is the same list, about three times faster.

    >>> good = b'{"event_id":"e1","op":"upsert","item_id":"i1","ts":1704067200000}'
    >>> [type(d).__name__ for d in decode_catalogs([good, b"{", b'{"event_id":"e 2"}'])]
    ['CatalogEvent', 'Refusal', 'Refusal']
    """
    out: list[CatalogEvent | Refusal] = []
    low = max(0, limits.min_ts)
    high = MAX_TS if now_ms is None else min(MAX_TS, now_ms + limits.max_future_ms)
    ids: list[str] = []  # two a value: event_id, item_id
    names: list[str] = []  # category names and attribute keys
    collecting = gc.isenabled()
    gc.disable()  # the batch makes no cycles: spare it collections over its new objects
    try:
        for raw in raws:
            obj = _plain_catalog(raw, limits.max_bytes, low, high)
            if obj is None:
                out.append(decode_catalog(raw, limits, now_ms))
                continue
            ev = CatalogEvent(
                obj["event_id"],
                obj["op"],
                obj["item_id"],
                obj["ts"],
                tuple(obj.get("categories", ())),
                obj.get("attributes", {}),
                obj.get("text", ""),
            )
            out.append(ev)
            ids.append(ev.event_id)
            ids.append(ev.item_id)
            names.extend(ev.categories)
            names.extend(ev.attributes)
    finally:
        if collecting:
            gc.enable()
    if not _lines_match(_ID_LINES, ids) or not _lines_match(_NAME_LINES, names):
        # Some name is bad: the rare path finds which.
        out = [
            d if isinstance(d, Refusal) else decode_catalog(r, limits, now_ms)
            for d, r in zip(out, raws, strict=True)
        ]
    return out


def _lines_match(pattern: re.Pattern[str], values: list[str]) -> bool:
    """Whether every value matches ``pattern``'s line; a value holding a newline does
    not pass as two lines (the count of lines must be the count of values)."""
    if not values:
        return True
    lines = "\n".join(values) + "\n"
    return pattern.fullmatch(lines) is not None and lines.count("\n") == len(values)


def decode_interactions(
    raws: Sequence[bytes], limits: DecodeLimits = DecodeLimits(), now_ms: int | None = None
) -> list[InteractionEvent | Refusal]:
    """``decode_interaction`` of each value, in one pass over the batch (a micro-batch).

    As ``decode_catalogs``: cheap type checks per value, then one regular expression
    per column for the ids and context keys; a value that misses any check goes
    through ``decode_interaction`` itself, so it gets the refusal it would get alone.

    >>> good = b'{"event_id":"e1","user_id":"u1","item_id":"i1","type":"view","ts":1704067200000}'
    >>> bad_id = good.replace(b"u1", b"u 1")
    >>> [type(d).__name__ for d in decode_interactions([good, b"[]", bad_id])]
    ['InteractionEvent', 'Refusal', 'Refusal']
    """
    out: list[InteractionEvent | Refusal | None] = [None] * len(raws)
    low = max(0, limits.min_ts)
    high = MAX_TS if now_ms is None else min(MAX_TS, now_ms + limits.max_future_ms)
    fast: list[tuple[int, dict[str, Any]]] = []
    ids: list[str] = []  # three a value: event_id, user_id, item_id
    names: list[str] = []  # context keys
    for i, raw in enumerate(raws):
        obj = _plain_interaction(raw, limits.max_bytes, low, high)
        if obj is None:
            out[i] = decode_interaction(raw, limits, now_ms)
            continue
        fast.append((i, obj))
        ids += (obj["event_id"], obj["user_id"], obj["item_id"])
        context = obj.get("context")
        if context:
            names.extend(context)
    if not _lines_match(_ID_LINES, ids) or not _lines_match(_NAME_LINES, names):
        for i, _obj in fast:  # some id or key is bad: the rare path finds which
            out[i] = decode_interaction(raws[i], limits, now_ms)
        fast = []
    for i, obj in fast:
        value = obj.get("value")
        out[i] = InteractionEvent(
            obj["event_id"],
            obj["user_id"],
            obj["item_id"],
            obj["type"],
            obj["ts"],
            None if value is None else float(value),
            obj.get("context") or None,
        )
    return out  # type: ignore[return-value]  # every slot is filled above


def _plain_interaction(raw: bytes, max_bytes: int, low: int, high: int) -> dict[str, Any] | None:
    """The parsed value if it passes every check of ``_interaction`` but the id and key
    patterns; None if it may not (``decode_interaction`` then says why)."""
    obj = _parsed(raw, max_bytes)
    if type(obj) is not dict or not _INTERACTION_REQUIRED <= obj.keys() <= _INTERACTION_FIELDS:
        return None
    version = obj.get("schema_version", 1)
    if type(version) is not int or version != 1:
        return None
    eid, user, item, ts = obj["event_id"], obj["user_id"], obj["item_id"], obj["ts"]
    if type(eid) is not str or type(user) is not str or type(item) is not str:
        return None
    if type(ts) is not int or not low <= ts <= high:
        return None
    etype = obj["type"]
    if type(etype) is not str or etype not in _EVENT_TYPE_SET:
        return None
    value = obj.get("value")
    if value is not None:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return None
        elif kind is not int:
            return None
    context = obj.get("context")
    if context is not None and not _plain_scalars(context, MAX_CONTEXT_KEYS):
        return None
    return obj


def _parsed(raw: bytes, max_bytes: int) -> Any:
    """The JSON value of ``raw``; None if it is oversized or not JSON in UTF-8."""
    if len(raw) > max_bytes:
        return None
    try:
        return orjson.loads(raw)  # refuses bytes that are not UTF-8, as well as bad JSON
    except orjson.JSONDecodeError:
        return None


def _plain_scalars(values: Any, max_keys: int) -> bool:
    """Whether ``values`` passes ``_scalar_map``'s checks but the key pattern."""
    if type(values) is not dict or len(values) > max_keys:
        return False
    for value in values.values():
        kind = type(value)
        if kind is str:
            if len(value) > MAX_SCALAR_STR:
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif kind is not int and kind is not bool:
            return False
    return True


def _plain_catalog(raw: bytes, max_bytes: int, low: int, high: int) -> dict[str, Any] | None:
    """The parsed value if it passes every check of ``_catalog`` but the name patterns;
    None if it may not (``decode_catalog`` then says why, or accepts it after all)."""
    obj = _parsed(raw, max_bytes)
    if type(obj) is not dict or not obj.keys() <= _CATALOG_FIELDS:
        return None
    if obj.get("schema_version", 1) != 1 or type(obj.get("schema_version", 1)) is not int:
        return None
    eid, op, item, ts = obj.get("event_id"), obj.get("op"), obj.get("item_id"), obj.get("ts")
    if type(eid) is not str or type(item) is not str or type(ts) is not int:
        return None
    if not low <= ts <= high or type(op) is not str or op not in _CATALOG_OP_SET:
        return None
    categories = obj.get("categories", [])
    if type(categories) is not list or len(categories) > MAX_CATEGORIES:
        return None
    for cat in categories:
        if type(cat) is not str:
            return None
    text = obj.get("text", "")
    if type(text) is not str or len(text) > MAX_TEXT:
        return None
    if not _plain_scalars(obj.get("attributes", {}), MAX_ATTRIBUTES):
        return None
    return obj


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
