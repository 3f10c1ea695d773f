"""The build benchmark builds what it says: the default and each baseline, over the same vectors."""

from __future__ import annotations

from bench import ann_build_bench
from inference.ann_index import TRAIN_POINTS_PER_LIST


def test_default_and_baseline_rows_describe_their_builds() -> None:
    rows = ann_build_bench.main(["--n=25000", "--baseline=100x39", "--repeats=4"])
    default, baseline = rows
    assert default["build"] == "default" and baseline["build"] == "100x39"
    assert default["train_points_per_list"] == TRAIN_POINTS_PER_LIST
    assert default["lists"] == 632  # 4 * sqrt(25,000)
    assert baseline["lists"] == 100 and baseline["train_points_per_list"] == 39
    for r in rows:
        assert 0.5 <= r["tuned_recall_at_200"] <= 1.0  # clustered catalog: IVF finds most
        assert r["build_s"] >= 0 and r["search_us_per_user_b1"] > 0
