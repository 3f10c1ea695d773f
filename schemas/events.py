"""Input messages: user-item interactions and catalog changes (schema version 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

EventType = Literal["view", "click", "add_to_cart", "purchase", "rating"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

CatalogOp = Literal["upsert", "remove"]
CATALOG_OPS: tuple[CatalogOp, ...] = get_args(CatalogOp)

Scalar = str | int | float | bool

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """One user-item interaction; see ``json/interaction_event.v1.json``.

    Attributes:
        event_id: Producer-assigned unique id; a duplicate is applied once.
        user_id: The acting user; also the Kafka key.
        item_id: The item acted on.
        type: One of ``EVENT_TYPES``.
        ts: Event time in Unix epoch milliseconds.
        value: Rating value or purchase amount; finite when present.
        context: Small flat map of extra facts (device, page, ...).
    """

    event_id: str
    user_id: str
    item_id: str
    type: EventType
    ts: int
    value: float | None = None
    context: dict[str, Scalar] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, object]:
        """The JSON object of this event, omitting unset optional fields."""
        out: dict[str, object] = {
            "schema_version": self.schema_version,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "type": self.type,
            "ts": self.ts,
        }
        if self.value is not None:
            out["value"] = self.value
        if self.context:
            out["context"] = dict(self.context)
        return out


@dataclass(frozen=True, slots=True)
class CatalogEvent:
    """An item upsert or removal; see ``json/catalog_event.v1.json``.

    Attributes:
        event_id: Producer-assigned unique id.
        op: ``upsert`` (create or replace the item) or ``remove``.
        item_id: The item; also the Kafka key.
        ts: Event time in Unix epoch milliseconds.
        categories: Category names, most specific last.
        attributes: Flat map of item attributes (brand, price band, ...).
        text: Free text (title, description) for the content tower.
    """

    event_id: str
    op: CatalogOp
    item_id: str
    ts: int
    categories: tuple[str, ...] = ()
    attributes: dict[str, Scalar] = field(default_factory=dict)
    text: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, object]:
        """The JSON object of this event."""
        out: dict[str, object] = {
            "schema_version": self.schema_version,
            "event_id": self.event_id,
            "op": self.op,
            "item_id": self.item_id,
            "ts": self.ts,
        }
        if self.op == "upsert":
            out["categories"] = list(self.categories)
            out["attributes"] = dict(self.attributes)
            out["text"] = self.text
        return out
