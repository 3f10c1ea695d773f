"""Dead-letter message: an input that could not be applied, kept byte for byte."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal, get_args

DeadLetterReason = Literal[
    "oversized",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "invalid_id",
    "unknown_event_type",
    "non_finite_number",
    "out_of_range",
    "timestamp_out_of_range",
    "too_large",
    "key_mismatch",
]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = get_args(DeadLetterReason)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a message was refused, where it came from, and its original bytes."""

    reason: DeadLetterReason
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes
    failed_ts: int
    schema_version: int = 1

    def to_dict(self) -> dict[str, object]:
        return {
            "schema_version": self.schema_version,
            "reason": self.reason,
            "detail": self.detail[:1000],
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "key_b64": None if self.key is None else base64.b64encode(self.key).decode("ascii"),
            "value_b64": base64.b64encode(self.value).decode("ascii"),
            "failed_ts": self.failed_ts,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, object]) -> DeadLetter:
        """Rebuild a dead letter read back from the dead-letter topic."""
        key_b64 = obj.get("key_b64")
        return cls(
            reason=obj["reason"],  # type: ignore[arg-type]
            detail=str(obj["detail"]),
            source_topic=str(obj["source_topic"]),
            source_partition=int(obj["source_partition"]),  # type: ignore[call-overload]
            source_offset=int(obj["source_offset"]),  # type: ignore[call-overload]
            key=None if key_b64 is None else base64.b64decode(str(key_b64)),
            value=base64.b64decode(str(obj["value_b64"])),
            failed_ts=int(obj["failed_ts"]),  # type: ignore[call-overload]
        )
