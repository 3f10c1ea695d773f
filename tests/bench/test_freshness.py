"""The stream benchmark's freshness figure on worked examples."""

from __future__ import annotations

from bench.freshness import event_freshness, reflecting_stamps


def test_leading_and_deferred_events_of_a_burst() -> None:
    # u: events at 0, 50, 120; leading list at 8 (reflects 0), trailing at 205 (120).
    # v: one event at 1000, its list at 1012. w: an event no list ever reflects.
    events = [("u", 0), ("u", 50), ("u", 120), ("v", 1000), ("w", 5)]
    lists = [("u", 0, 8), ("u", 120, 205), ("v", 1000, 1012), ("w", 4, 6)]
    f = event_freshness(events, lists, window_ms=200)
    assert sorted(f.leading) == [8, 12]
    assert sorted(f.deferred) == [85, 155]  # 205 - 120 and 205 - 50
    assert f.unreflected == 1


def test_a_list_reflecting_a_later_event_reflects_the_earlier_ones() -> None:
    events = [("u", 10), ("u", 20)]
    lists = [("u", 5, 9), ("u", 20, 30)]  # the first list predates both events
    f = event_freshness(events, lists, window_ms=0)
    assert sorted(f.all) == [10, 20]
    assert f.unreflected == 0


def test_an_event_after_a_quiet_window_is_leading_again() -> None:
    events = [("u", 0), ("u", 500)]
    lists = [("u", 0, 3), ("u", 500, 504)]
    f = event_freshness(events, lists, window_ms=200)
    assert f.leading == [3, 4] and f.deferred == []


def test_reflecting_stamps_name_each_events_first_reflecting_list() -> None:
    events = [("u", 0), ("u", 50), ("u", 120), ("v", 1000), ("w", 5)]
    lists = [("u", 0, 8), ("u", 120, 205), ("v", 1000, 1012), ("w", 4, 6)]
    assert reflecting_stamps(events, lists) == [8, 205, 205, 1012, None]
