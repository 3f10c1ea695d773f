"""bench.prequential's CPU per event: freshet's also without the loop's Redis stand-in."""

from __future__ import annotations

from bench.prequential import cpu_per_event_lines


def test_cpu_per_event_known_answers() -> None:
    summary = {
        "freshet": {
            "cpu_seconds": 2.0,
            "stand_in_cpu_seconds": 0.5,
            "cpu_seconds_without_stand_in": 1.5,
        },
        "item-knn": {"cpu_seconds": 1.0},
    }
    lines = cpu_per_event_lines(summary, 1000).splitlines()
    assert lines[1] == "  freshet: 2.000 (1.500 without the loop's Redis stand-in, 0.500)"
    assert lines[2] == "  item-knn: 1.000"
