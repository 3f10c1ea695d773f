"""What the web view's user, item and dead-letter panels show: pure shaping of stored data.

Every string here may come from untrusted input (ids, attributes, original bytes); the
page renders all of them as text (``textContent``), never as markup, and original bytes
pass through ``freshet.ops.dead_letters.preview`` first so no control character gets through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from freshet.ops.dead_letters import letter_json, preview
from schemas.dead_letter import DeadLetter
from streams.core.state_rules import UserState

RECENT_EVENTS = 20


def decode_list_bytes(raw: bytes | None) -> dict[str, Any] | None:
    """A stored or published list as a JSON object, or ``None`` if it is not one."""
    if raw is None:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("items"), list) else None


def recent_events(state: UserState | None, n: int = RECENT_EVENTS) -> list[dict[str, object]]:
    """The user's last ``n`` interactions, newest first.

    >>> from streams.core.state_rules import HistoryEntry
    >>> s = UserState(history=(HistoryEntry("i1", "view", 1), HistoryEntry("i2", "click", 2)))
    >>> [e["item_id"] for e in recent_events(s)]
    ['i2', 'i1']
    """
    if state is None:
        return []
    return [{"item_id": e.item_id, "type": e.type, "ts": e.ts} for e in reversed(state.history)][:n]


def user_view(
    user_id: str, state: UserState | None, latest: bytes | None, source: str
) -> dict[str, object]:
    """The user panel: activity counts, recent events and the current list."""
    return {
        "user_id": user_id,
        "known": state is not None,
        "n_events": 0 if state is None else state.n_events,
        "last_ts": None if state is None else state.last_ts,
        "events": recent_events(state),
        "list": decode_list_bytes(latest),
        "list_source": source,
    }


def list_change(before: Sequence[str], after: Sequence[str]) -> dict[str, object]:
    """How a list changed: items that entered, left, and moved (with old and new rank).

    >>> c = list_change(["a", "b", "c"], ["b", "a", "d"])
    >>> c["entered"], c["left"], c["moved"]
    (['d'], ['c'], [{'item_id': 'b', 'from': 2, 'to': 1}, {'item_id': 'a', 'from': 1, 'to': 2}])
    """
    old_rank = {item: n for n, item in enumerate(before, start=1)}
    new_rank = {item: n for n, item in enumerate(after, start=1)}
    return {
        "entered": [i for i in after if i not in old_rank],
        "left": [i for i in before if i not in new_rank],
        "moved": [
            {"item_id": i, "from": old_rank[i], "to": new_rank[i]}
            for i in after
            if i in old_rank and old_rank[i] != new_rank[i]
        ],
    }


def list_items(rec: dict[str, Any] | None) -> list[str]:
    """The item ids of a list object, in rank order."""
    if rec is None:
        return []
    return [str(it.get("item_id")) for it in rec.get("items", []) if isinstance(it, dict)]


def item_view(
    item_id: str,
    record: dict[str, Any] | None,
    *,
    interactions: int,
    trend: float,
    trend_rank: int | None,
    now_ms: int,
    new_item_age_s: float,
    holders: int | None,
    users_scanned: int,
    scan_complete: bool,
) -> dict[str, object]:
    """The item panel: catalog record, popularity, trend, newness and list holders.

    An item is new while younger than ``new_item_age_s`` since its catalog record was
    first seen, the rule the recommender's new-item slots use.
    """
    first_seen = None if record is None else record.get("first_seen_ts")
    age_s = None if not isinstance(first_seen, int) else max(0.0, (now_ms - first_seen) / 1000)
    return {
        "item_id": item_id,
        "in_catalog": record is not None,
        "record": record,
        "interactions": interactions,
        "trend": trend,
        "trend_rank": trend_rank,
        "age_s": age_s,
        "is_new": age_s is not None and age_s < new_item_age_s,
        "removed": bool(record.get("removed")) if record is not None else False,
        "holders": holders,
        "users_scanned": users_scanned,
        "scan_complete": scan_complete,
    }


def list_holds(raw: bytes, item_id: str) -> bool:
    """Whether a stored list's JSON names ``item_id`` as an item.

    Lists are written by orjson (no spaces) and ids cannot hold quotes or backslashes,
    so a byte search is exact and avoids parsing every user's list.

    >>> list_holds(b'{"items":[{"item_id":"i1","score":1.0}]}', "i1")
    True
    >>> list_holds(b'{"items":[{"item_id":"i10","score":1.0}]}', "i1")
    False
    """
    return b'"item_id":"' + item_id.encode("utf-8") + b'"' in raw


def letter_view(letter: DeadLetter, dlq_partition: int, dlq_offset: int) -> dict[str, object]:
    """A dead letter for the page: where it sits, why, and its bytes shown safely.

    ``event`` is the original parsed as a JSON object (or ``None``), the starting point
    of a fix; ``value_preview`` is the original with control characters escaped.
    """
    out = letter_json(letter, dlq_partition, dlq_offset)
    out.pop("value_b64", None)
    out.pop("key_b64", None)
    out["key_preview"] = preview(letter.key, 64)
    out["value_preview"] = preview(letter.value, 240)
    out["value_bytes"] = len(letter.value)
    return out
