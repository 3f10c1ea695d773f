"""The catalog's id map in two dicts (``inference.item_ids``): lookups see both, a fold
made off the lock serves every id once adopted, and a stale fold changes nothing."""

from __future__ import annotations

import pytest

from inference import item_ids
from inference.item_ids import IdMap


def _appended(ids: list[str], m: IdMap, new: list[str]) -> None:
    start = len(ids)
    ids.extend(new)
    m.add(new, start)


def test_lookups_see_the_base_and_the_ids_appended_since() -> None:
    ids = ["a", "b"]
    m = IdMap(ids)
    _appended(ids, m, ["c", "d"])
    assert m.rows(["d", "a", "x", "c"]).tolist() == [3, 0, -1, 2]
    assert m.get("c") == 2 and m.get("x") is None and "d" in m and "x" not in m
    assert m.as_dict() == dict(m.view()) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_a_fold_is_due_past_the_bound_and_adopted_with_the_ids_that_came_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(item_ids, "RECENT_IDS_MAX", 3)
    ids = ["a"]
    m = IdMap(ids)
    _appended(ids, m, ["b", "c"])
    assert not m.due
    _appended(ids, m, ["d"])
    assert m.due
    folded = m.fold()  # off the lock: rows 0-3
    _appended(ids, m, ["e"])  # a chunk written meanwhile
    assert m.adopt(folded)
    assert not m.due and m._recent == {"e": 4} and m._base is folded.ids
    assert m.rows(["a", "b", "c", "d", "e", "f"]).tolist() == [0, 1, 2, 3, 4, -1]
    assert not m.adopt(folded)  # its base is no longer served


def test_a_fold_with_too_many_ids_after_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(item_ids, "ADOPT_LATE_MAX", 1)
    ids = ["a"]
    m = IdMap(ids)
    folded = m.fold()
    _appended(ids, m, ["b", "c"])
    assert not m.adopt(folded)
    assert m.rows(["a", "b", "c"]).tolist() == [0, 1, 2]  # unchanged, still served
