"""The trade-off bench: a grid split over processes gives the same figures as one process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.tradeoff import main, merge_parts, parse_shard

TINY = [
    "--users=60",
    "--items=90",
    "--events=1500",
    "--epochs=1",
    "--lambdas",
    "1.0",
    "0.5",
    "--tails",
    "0",
    "0.8",
]


def test_parse_shard() -> None:
    assert parse_shard("0/2") == (0, 2)
    assert parse_shard("3/4") == (3, 4)
    for bad in ("2/2", "-1/2", "1/0"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError, ZeroDivisionError)):
            parse_shard(bad)


def _row(lam: float, tail: float) -> dict[str, float]:
    return {"mmr_lambda": lam, "longtail_share": tail, "ndcg@10": lam * 10 + tail}


def test_merge_parts_restores_grid_order_and_refuses_gaps() -> None:
    points = [(1.0, 0.0), (1.0, 0.8), (0.5, 0.0), (0.5, 0.8)]
    parts = [
        {"rows": [_row(*p) for p in points[0::2]], "wall_s": 3.0, "reference": {"x": 1}},
        {"rows": [_row(*p) for p in points[1::2]], "wall_s": 5.0, "reference": {"x": 1}},
    ]
    merged = merge_parts(parts, points)
    assert [(r["mmr_lambda"], r["longtail_share"]) for r in merged["rows"]] == points
    assert merged["shard_wall_s"] == [3.0, 5.0]
    with pytest.raises(SystemExit, match="left out"):
        merge_parts(parts[:1], points)


def test_two_jobs_match_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHET_HOME", str(tmp_path / "home"))
    cache = f"--cache={tmp_path / 'bundles'}"
    main([*TINY, cache, f"--out={tmp_path / 'one'}"])
    main([*TINY, cache, f"--out={tmp_path / 'two'}", "--jobs=2"])
    one = json.loads((tmp_path / "one" / "tradeoff.json").read_text())
    two = json.loads((tmp_path / "two" / "tradeoff.json").read_text())
    assert len(two["shard_wall_s"]) == 2
    assert two["conditions"]["jobs"] == 2

    def figures(rows: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert figures(two["grid"]) == figures(one["grid"])
    assert two["most_popular"]["hr@10"] == one["most_popular"]["hr@10"]
    # the grid moves the lists: a long-tail share of 0.8 puts more tail items in them
    by = {(r["mmr_lambda"], r["longtail_share"]): r for r in one["grid"]}
    assert by[(1.0, 0.8)]["long_tail_share"] > by[(1.0, 0.0)]["long_tail_share"]
    assert (tmp_path / "two" / "tradeoff.png").stat().st_size > 0
    assert "most-popular" in (tmp_path / "two" / "tradeoff.md").read_text()
