"""The web view's panels from stored data: list changes, escaping, newness, holders."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from freshet.ui.views import (
    decode_list_bytes,
    item_view,
    letter_view,
    list_change,
    list_holds,
    user_view,
)
from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from schemas.recommendation import Recommendation, RecommendedItem
from streams.core.state_rules import HistoryEntry, UserState

IDS = st.text(alphabet="abcz019_.@+=/-", min_size=1, max_size=6)


@given(st.lists(IDS, unique=True, max_size=12), st.lists(IDS, unique=True, max_size=12))
def test_a_list_change_accounts_for_every_item(before: list[str], after: list[str]) -> None:
    c = list_change(before, after)
    entered, left, moved = c["entered"], c["left"], c["moved"]
    assert isinstance(entered, list) and isinstance(left, list) and isinstance(moved, list)
    assert set(entered) == set(after) - set(before)
    assert set(left) == set(before) - set(after)
    for m in moved:
        assert before[m["from"] - 1] == m["item_id"] == after[m["to"] - 1]
    kept_in_place = [i for n, i in enumerate(after) if n < len(before) and before[n] == i]
    assert len(moved) + len(kept_in_place) + len(entered) == len(after)


@given(st.lists(IDS, min_size=1, max_size=8, unique=True), IDS)
def test_holding_an_item_by_bytes_agrees_with_parsing_the_list(
    items: list[str], probe: str
) -> None:
    rec = Recommendation(
        user_id="u1",
        items=tuple(RecommendedItem(i, 0.5, "personalised") for i in items),
        strategy="personalised",
        model_version="v1",
        source_event_id="e1",
        event_ts=1,
        published_ts=2,
    )
    raw = encode(rec)
    assert list_holds(raw, probe) == (probe in items)
    assert decode_list_bytes(raw) == orjson.loads(raw)


def test_a_user_view_shows_the_newest_events_first_and_the_stored_list() -> None:
    state = UserState(
        history=tuple(HistoryEntry(f"i{n}", "view", 1000 + n) for n in range(30)),
        n_events=30,
        last_ts=1029,
    )
    raw = b'{"user_id":"u1","items":[{"item_id":"i9","score":1.0,"reason":"trending"}]}'
    view = user_view("u1", state, raw, "stored")
    events = view["events"]
    assert isinstance(events, list) and len(events) == 20
    assert events[0] == {"item_id": "i29", "type": "view", "ts": 1029}
    assert view["list"] == orjson.loads(raw) and view["n_events"] == 30
    empty = user_view("u2", None, b"not json", "none")
    assert (empty["known"], empty["events"], empty["list"]) == (False, [], None)


def test_an_item_is_new_while_younger_than_the_threshold() -> None:
    day_ms = 86_400_000

    def new(first_seen_ms: int) -> object:
        record = {"first_seen_ts": first_seen_ms, "removed": False}
        return item_view(
            "i1",
            record,
            interactions=0,
            trend=0.0,
            trend_rank=None,
            now_ms=10 * day_ms,
            new_item_age_s=3 * 86_400.0,
            holders=0,
            users_scanned=0,
            scan_complete=True,
        )["is_new"]

    assert new(8 * day_ms) is True
    assert new(7 * day_ms) is False  # exactly three days old: no longer new
    no_record = item_view(
        "i2",
        None,
        interactions=3,
        trend=0.0,
        trend_rank=None,
        now_ms=0,
        new_item_age_s=1.0,
        holders=None,
        users_scanned=0,
        scan_complete=False,
    )
    assert (no_record["in_catalog"], no_record["is_new"], no_record["age_s"]) == (
        False,
        False,
        None,
    )


def test_a_dead_letter_is_shown_without_control_characters_or_raw_bytes() -> None:
    value = b'{"user_id":"<img src=x onerror=alert(1)>","x":"\x1b[31mred\n\xe2\x80\xaeevil"}'
    letter = DeadLetter(
        "invalid_id", "user_id must match", "t.events", 1, 42, b"k\x00ey", value, 5, 1
    )
    view = letter_view(letter, 0, 7)
    preview = view["value_preview"]
    assert isinstance(preview, str)
    assert all(ch.isprintable() for ch in preview), preview
    assert "<img src=x onerror=alert(1)>" in preview  # text for the page, escaped there
    assert "\\x1b" in preview and "\\u202e" in preview
    assert view["key_preview"] == "k\\x00ey"
    assert "value_b64" not in view and "key_b64" not in view
    assert (view["dlq_partition"], view["dlq_offset"], view["source_offset"]) == (0, 7, 42)
    assert view["event"] is None  # raw control characters are not JSON: no fix to start from
    fixable = DeadLetter("missing_field", "ts", "t.events", 0, 3, b"u1", b'{"user_id":"u1"}', 5)
    assert letter_view(fixable, 0, 1)["event"] == {"user_id": "u1"}
    binary = letter_view(
        DeadLetter("invalid_utf8", "", "t.events", 0, 1, None, b"\xff\xfe", 5), 0, 0
    )
    assert binary["event"] is None and "not UTF-8" in str(binary["value_preview"])
