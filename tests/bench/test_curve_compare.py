"""bench.curve_compare reads stream-bench curves and lines them up by offered rate."""

from __future__ import annotations

from pathlib import Path

from bench.curve_compare import curve_of, plot, table


def _run(points: list[tuple[float, float, float]]) -> dict:
    curve = [
        {"offered_rate": r, "freshness_ms_all_events": {"p50": p50, "p99": p99}}
        for r, p50, p99 in points
    ]
    return {"figures": {"curve": curve}}


def test_rates_line_up_and_a_missing_point_shows_a_dash(tmp_path: Path) -> None:
    start = curve_of(_run([(10, 21, 34), (100, 39, 262), (200, 117, 254)]))
    now = curve_of(_run([(10, 14, 20), (100, 20, 36)]))
    text = table({"start": start, "now": now})
    assert text.splitlines()[2] == "| 10 | 21 / 34 | 14 / 20 |"
    assert text.splitlines()[3] == "| 100 | 39 / 262 | 20 / 36 |"
    assert text.splitlines()[4] == "| 200 | 117 / 254 | – |"
    plot({"start": start, "now": now}, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
