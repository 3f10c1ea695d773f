"""``freshet train`` and ``freshet evaluate`` on a small JSONL file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from freshet.cli import app
from freshet.simulator.stream import SimConfig, simulate
from inference.bundle import read_current
from inference.onnx_session import LoadedBundle
from schemas.codec import encode


def test_train_writes_a_current_bundle_that_evaluate_scores(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    world = SimConfig(users=100, items=60, events=3000, new_item_rate=0.1)
    data.write_bytes(b"".join(encode(ev) + b"\n" for ev in simulate(world, seed=2)) + b"{oops\n")
    bundles = tmp_path / "bundles"
    runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that table cells do not wrap
    common = ["--bundle-dir", str(bundles)]
    out = runner.invoke(
        app, ["train", str(data), *common, "--epochs", "1", "--dim", "16", "--threads", "1"]
    )
    assert out.exit_code == 0, out.output
    assert "skipped 1 refused lines" in out.output
    version = read_current(bundles)
    assert version is not None and version in out.output
    bundle = LoadedBundle.load(bundles, provider="cpu")
    assert bundle.manifest.data_range["protocol"] == "time"
    assert {"test", "valid", "baselines"} <= set(bundle.manifest.metrics)
    assert (bundles / version / "report.md").read_text().startswith("# Training report")
    out = runner.invoke(app, ["evaluate", str(data), *common, "--protocol", "loo"])
    assert out.exit_code == 0, out.output
    for name in ("bundle", "most-popular", "trending", "item-knn", "optimistic"):
        assert name in out.output
