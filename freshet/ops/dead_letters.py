"""Inspect dead letters and plan their re-drive: pure logic, no Kafka client here.

``freshet dlq`` reads the dead-letter topic and sends what this module decides. A
dead letter is re-driven either with an operator's corrected event (a fix file, matched
by the source partition and offset) or with its original bytes, optionally passed
through named transforms, when those now decode (after a limits change, or a
mis-keyed record that only needs the right key). Every candidate is validated with the
contract's codec under the current limits before it is planned for sending, and it is
keyed as the stream expects (by user, or by item for catalog events), so a re-driven
event is indistinguishable from one sent right the first time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

import orjson

from schemas.codec import DecodeLimits, Refusal, decode_catalog, decode_interaction
from schemas.dead_letter import DeadLetter
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics

Kind = Literal["events", "catalog"]
Source = tuple[str, int, int]  # source topic, partition, offset

# Event times below this look like epoch seconds: as milliseconds they fall in 1973.
_SECONDS_BELOW: Final = 100_000_000_000
_FIELDS: Final[dict[Kind, frozenset[str]]] = {
    "events": frozenset(f.name for f in fields(InteractionEvent)),
    "catalog": frozenset(f.name for f in fields(CatalogEvent)),
}


def read_dead_letter(raw: bytes) -> DeadLetter | None:
    """The dead letter in a dead-letter-topic value, or ``None`` if it is not one."""
    from schemas.codec import decode_dead_letter

    try:
        return decode_dead_letter(raw)
    except (ValueError, KeyError, TypeError):  # orjson and base64 errors are ValueErrors
        return None


def preview(data: bytes | None, limit: int = 160) -> str:
    """Bytes shown safely on one terminal line.

    UTF-8 text is shown with every control, format and separator character escaped
    (no terminal escapes, newlines or bidi overrides get through); anything else is
    shown as a hex dump. Both are cut at ``limit`` characters (bytes, for hex).
    """
    if data is None:
        return "(none)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        head = data[: max(1, limit // 3)].hex(" ")
        more = "…" if len(data) > max(1, limit // 3) else ""
        return f"<{len(data):,} bytes, not UTF-8> {head}{more}"
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in text[:limit]
    )
    if len(text) > limit:
        shown += f"… (+{len(text) - limit:,} chars)"
    return shown


def letter_json(letter: DeadLetter, dlq_partition: int, dlq_offset: int) -> dict[str, Any]:
    """A dead letter as ``freshet dlq show --json`` prints it.

    The contract's fields, where it sits on the dead-letter topic, and ``event``: the
    original value parsed as JSON when it is a JSON object, else ``null``. Editing
    ``event`` in such a line and passing the file to ``--fix-file`` re-drives it.
    """
    out: dict[str, Any] = {"dlq_partition": dlq_partition, "dlq_offset": dlq_offset}
    out.update(letter.to_dict())
    out["event"] = _json_object(letter.value)
    return out


def reason_counts(letters: Iterable[DeadLetter]) -> Counter[str]:
    """How many dead letters there are of each reason."""
    return Counter(d.reason for d in letters)


# --- transforms of original bytes ------------------------------------------------------


def _drop_unknown_fields(obj: dict[str, Any], kind: Kind) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k in _FIELDS[kind]}


def _ts_seconds_to_ms(obj: dict[str, Any], kind: Kind) -> dict[str, Any]:
    ts = obj.get("ts")
    if type(ts) is int and 0 < ts < _SECONDS_BELOW:
        return obj | {"ts": ts * 1000}
    return obj


TRANSFORMS: Final[dict[str, Callable[[dict[str, Any], Kind], dict[str, Any]]]] = {
    "drop-unknown-fields": _drop_unknown_fields,
    "ts-seconds-to-ms": _ts_seconds_to_ms,
}
"""Named repairs of an original event object, applied in the order given.

``drop-unknown-fields`` removes fields the contract does not know (a producer ahead of
the schema); ``ts-seconds-to-ms`` multiplies an event time that looks like epoch
seconds by 1,000. A record refused as ``key_mismatch`` needs no transform: re-driven
records are always keyed by their user (or item).
"""


def transformed(value: bytes, kind: Kind, names: Sequence[str]) -> bytes:
    """The original value after the named transforms; unchanged if it is not an object.

    Raises:
        KeyError: An unknown transform name.
    """
    steps = [TRANSFORMS[name] for name in names]
    obj = _json_object(value)
    if not steps or obj is None:
        return value
    for step in steps:
        obj = step(obj, kind)
    return orjson.dumps(obj)


# --- fix files ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fix:
    """An operator's corrected event for the dead letter of one source record.

    Attributes:
        source_partition: Partition of the refused record on its source topic.
        source_offset: Offset of the refused record.
        source_topic: Its topic; ``None`` matches either input topic.
        value: The corrected event, as JSON bytes.
        line_no: Line of the fix file (1-based).
    """

    source_partition: int
    source_offset: int
    source_topic: str | None
    value: bytes
    line_no: int


def parse_fix_file(lines: Iterable[str]) -> tuple[list[Fix], list[tuple[int, str]]]:
    """Read a fix file: one JSON object per line.

    Each line needs ``source_partition`` and ``source_offset`` (integers) and ``event``
    (the corrected event object); ``source_topic`` is optional but disambiguates events
    from catalog dead letters. Other fields (those ``dlq show --json`` prints) are
    ignored, so its output can be edited in place. Blank lines are skipped.

    Returns:
        The fixes, and (line number, problem) for each line that could not be used,
        including a second fix for the same source record.
    """
    fixes: list[Fix] = []
    problems: list[tuple[int, str]] = []
    seen: set[tuple[str | None, int, int]] = set()
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append((line_no, "not JSON"))
            continue
        if not isinstance(obj, dict):
            problems.append((line_no, "not a JSON object"))
            continue
        partition, offset = obj.get("source_partition"), obj.get("source_offset")
        topic = obj.get("source_topic")
        if type(partition) is not int or type(offset) is not int:
            problems.append((line_no, "source_partition and source_offset must be integers"))
            continue
        if topic is not None and not isinstance(topic, str):
            problems.append((line_no, "source_topic must be a string"))
            continue
        event = obj.get("event")
        if not isinstance(event, dict):
            problems.append((line_no, "event must be the corrected event object"))
            continue
        if (topic, partition, offset) in seen:
            problems.append((line_no, f"a second fix for {topic or '*'} p{partition}@{offset}"))
            continue
        seen.add((topic, partition, offset))
        fixes.append(Fix(partition, offset, topic, orjson.dumps(event), line_no))
    return fixes, problems


# --- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redrive:
    """A dead letter whose event now passes the codec, and how it got there."""

    letter: DeadLetter
    event: InteractionEvent | CatalogEvent
    via: Literal["fix", "original"]


@dataclass
class RedrivePlan:
    """What a re-drive will send and what it leaves, with counts for the report.

    Attributes:
        letters: Dead letters read (each source record once).
        duplicates: Further dead letters of a source record already counted (dead
            letters are at-least-once, so one record can be refused twice).
        selected: Dead letters of the chosen reasons.
        to_send: Validated events, in dead-letter order.
        refused: Candidates that still fail the codec, with the new refusal.
        no_fix: Selected dead letters with no fix line while originals are not re-sent.
        unknown_source: Selected dead letters from a topic other than the input topics.
        unmatched_fixes: Fix lines that match no dead letter.
    """

    letters: int = 0
    duplicates: int = 0
    selected: int = 0
    to_send: list[Redrive] = field(default_factory=list)
    refused: list[tuple[DeadLetter, Refusal]] = field(default_factory=list)
    no_fix: int = 0
    unknown_source: int = 0
    unmatched_fixes: list[Fix] = field(default_factory=list)

    def sent_by(self, via: str) -> int:
        return sum(r.via == via for r in self.to_send)

    def refused_by_reason(self) -> Counter[str]:
        return Counter(refusal.reason for _, refusal in self.refused)


def plan_redrive(
    letters: Iterable[DeadLetter],
    topics: Topics,
    *,
    limits: DecodeLimits,
    now_ms: int | None,
    reasons: frozenset[str] | None = None,
    fixes: Sequence[Fix] = (),
    resend_originals: bool = False,
    transforms: Sequence[str] = (),
) -> RedrivePlan:
    """Decide which dead letters to re-drive, and validate each event.

    Args:
        letters: Dead letters in topic order.
        topics: The deployment's topics; a letter's ``source_topic`` says whether it
            holds an interaction or a catalog event.
        limits: The decode limits the worker applies now.
        now_ms: The wall clock for the future-time bound.
        reasons: Only dead letters with these reasons; all when ``None``.
        fixes: Corrected events; a selected letter with a matching fix uses it.
        resend_originals: Selected letters without a fix are tried with their original
            bytes after ``transforms``; else they are left (``no_fix``).
        transforms: Names from ``TRANSFORMS``, applied to originals only.

    Raises:
        KeyError: An unknown transform name.
    """
    unknown = [name for name in transforms if name not in TRANSFORMS]
    if unknown:
        raise KeyError(f"unknown transform {unknown[0]!r}; known: {sorted(TRANSFORMS)}")
    kinds: dict[str, Kind] = {topics.events: "events", topics.catalog: "catalog"}
    by_position: dict[tuple[int, int], list[Fix]] = {}
    for f in fixes:
        by_position.setdefault((f.source_partition, f.source_offset), []).append(f)
    plan = RedrivePlan()
    seen: set[Source] = set()
    used: set[int] = set()
    for letter in letters:
        source = (letter.source_topic, letter.source_partition, letter.source_offset)
        if source in seen:
            plan.duplicates += 1
            continue
        seen.add(source)
        plan.letters += 1
        fix = _fix_for(letter, by_position.get(source[1:], ()))
        if fix is not None:
            used.add(fix.line_no)
        if reasons is not None and letter.reason not in reasons:
            continue
        plan.selected += 1
        kind = kinds.get(letter.source_topic)
        if kind is None:
            plan.unknown_source += 1
            continue
        if fix is not None:
            decoded = _decode(kind, fix.value, limits, now_ms)
            via: Literal["fix", "original"] = "fix"
        elif resend_originals:
            decoded = _decode(kind, transformed(letter.value, kind, transforms), limits, now_ms)
            via = "original"
        else:
            plan.no_fix += 1
            continue
        if isinstance(decoded, Refusal):
            plan.refused.append((letter, decoded))
        else:
            plan.to_send.append(Redrive(letter, decoded, via))
    plan.unmatched_fixes = [f for f in fixes if f.line_no not in used]
    return plan


def _fix_for(letter: DeadLetter, candidates: Sequence[Fix]) -> Fix | None:
    """The fix naming the letter's topic, else one naming no topic."""
    exact = [f for f in candidates if f.source_topic == letter.source_topic]
    if exact:
        return exact[0]
    return next((f for f in candidates if f.source_topic is None), None)


def _decode(
    kind: Kind, value: bytes, limits: DecodeLimits, now_ms: int | None
) -> InteractionEvent | CatalogEvent | Refusal:
    if kind == "events":
        return decode_interaction(value, limits, now_ms)
    return decode_catalog(value, limits, now_ms)


def _json_object(value: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
