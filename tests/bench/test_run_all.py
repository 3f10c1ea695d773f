"""`freshet bench all`: which steps each mode runs, and the streaming table it writes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.run_all import SWEEP_ITEMS, steps, stream_table, top_rate


def test_full_mode_sweeps_catalogs_with_and_without_the_ranker(tmp_path: Path) -> None:
    sweep = [s for s in steps(tmp_path, tmp_path / "d", tmp_path / "b") if s.full_only]
    assert len(sweep) == 2 * len(SWEEP_ITEMS)
    pairs = set()
    for step in sweep:
        opts = dict(a.split("=", 1) for a in step.args if a.startswith("--") and "=" in a)
        assert "--bundle" in step.args and opts["--curve"]
        pairs.add((int(opts["--items"]), opts["--ranker"]))
    assert pairs == {(n, r) for n in SWEEP_ITEMS for r in ("off", "on")}
    names = [s.name for s in steps(tmp_path, tmp_path, tmp_path)]
    assert {"onnx_vs_torch", "sizing", "stream", "prequential"} <= set(names)


def _point(rate: float, p99: float) -> dict[str, object]:
    return {"offered_rate": rate, "latency_ms_published_minus_event": {"p99": p99}}


def test_top_rate_is_the_fastest_point_within_the_bound() -> None:
    curve = [_point(10, 40.0), _point(50, 120.0), _point(100, 90.0)]
    assert top_rate(curve, 100.0) == "100/s"  # a later point back under the bound counts
    assert top_rate(curve, 30.0) == "none from 10/s"
    assert top_rate([], 100.0) == "not run"


def _report(items: int, ranker: bool, worker: float, pipe: float) -> dict[str, object]:
    lat = {"p50": 12.0, "p99": 40.0, "p99.9": 55.0, "n": 100}
    return {
        "conditions": {"items": items, "model": "v1", "ranker": ranker},
        "figures": {
            "paced_worker": {
                "offered_rate": 500.0,
                "sustained_events_per_s": 480.0,
                "latency_ms_published_minus_event": lat,
            },
            "saturated_worker": {"events_per_s": worker, "lists_per_s": 90.0},
            "saturated_baseline": {"events_per_s": pipe},
            "curve": [_point(10, 40.0), _point(50, 90.0), _point(100, 130.0)],
        },
    }


def test_stream_table_has_a_row_per_successful_run(tmp_path: Path) -> None:
    (tmp_path / "stream").mkdir()
    for name, rep in {
        "stream_10k_ranker_on": _report(10_000, True, 1_500.0, 20_000.0),
        "stream_100k_ranker_off": _report(100_000, False, 1_000.0, 25_000.0),
    }.items():
        (tmp_path / "stream" / f"{name}.json").write_text(json.dumps(rep))
    results: list[dict[str, object]] = [
        {"name": "stream_10k_ranker_on", "status": "ok"},
        {"name": "stream_100k_ranker_off", "status": "failed rc=1"},
        {"name": "ann", "status": "ok"},
    ]
    table = stream_table(tmp_path, results, quick=False).splitlines()
    assert len(table) == 3  # header, rule, one row: the failed run is left out
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert len(header) == len(cells) and header[-1] == "top rate p99 ≤ 100 ms"
    assert cells[-1] == "50/s"
    assert cells[:8] == [
        "stream_10k_ranker_on",
        "10,000",
        "bundle + ranker",
        "500",
        "480",
        "1,500",
        "20,000",
        "0.075",
    ]
