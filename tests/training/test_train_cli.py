"""``freshet train`` and ``freshet evaluate`` on a small JSONL file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from freshet.cli import app
from freshet.cli.file_options import file_source
from freshet.cli.train_options import train_config
from freshet.simulator.stream import SimConfig, simulate
from inference.bundle import read_current
from inference.onnx_session import LoadedBundle
from schemas.codec import encode
from schemas.events import CatalogEvent, InteractionEvent
from training.train import CAUSAL, TrainConfig


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


def _tab_file(tmp_path: Path) -> tuple[Path, Path]:
    """Simulated interactions as a headerless user/item/rating/seconds TSV, and an item file."""
    world = SimConfig(users=80, items=50, events=2500)
    rows = [
        f"{ev.user_id}\t{ev.item_id}\t{1 + int(ev.ts) % 5}\t{int(ev.ts) // 1000}\n"
        for ev in simulate(world, seed=4)
        if isinstance(ev, InteractionEvent)
    ]
    data = tmp_path / "plays.tsv"
    data.write_text("".join(rows))
    items = tmp_path / "titles.csv"
    ids = sorted({r.split("\t")[1] for r in rows})
    items.write_text(
        "movieId,title,genres\n" + "".join(f'{i},"T {i}",G{len(i) % 3}\n' for i in ids)
    )
    return data, items


LAYOUT = ["--columns", "user=0,item=1,rating=2,timestamp=3", "--delimiter", "\t", "--no-header"]


def test_file_source_reads_a_headerless_tsv_and_its_item_file(tmp_path: Path) -> None:
    data, items = _tab_file(tmp_path)
    source = file_source(
        columns="user=0,item=1,rating=2,timestamp=3", delimiter="\t", header=False, item_file=items
    )
    refused: dict[str, int] = {}
    events = list(source.events(data, refused))
    catalog = [e for e in events if isinstance(e, CatalogEvent)]
    plays = [e for e in events if isinstance(e, InteractionEvent)]
    first = data.read_text().splitlines()[0].split("\t")
    assert refused == {}
    assert len(plays) == len(data.read_text().splitlines())
    assert events[: len(catalog)] == catalog  # the item file comes first
    assert (plays[0].user_id, plays[0].item_id, plays[0].ts) == (
        first[0],
        first[1],
        int(first[3]) * 1000,
    )
    assert {c.item_id for c in catalog} == {p.item_id for p in plays}
    assert all(c.categories and c.text.startswith("T ") for c in catalog)


def test_train_and_evaluate_read_a_custom_layout(tmp_path: Path) -> None:
    data, items = _tab_file(tmp_path)
    bundles = tmp_path / "bundles"
    runner = CliRunner(env={"COLUMNS": "200"})
    common = ["--bundle-dir", str(bundles), *LAYOUT, "--item-file", str(items)]
    bad = runner.invoke(
        app, ["train", str(data), "--bundle-dir", str(bundles), "--columns", "who=0"]
    )
    assert bad.exit_code == 2 and "--columns" in bad.output  # a usage error, nothing trained
    assert read_current(bundles) is None
    out = runner.invoke(
        app, ["train", str(data), *common, "--epochs", "1", "--dim", "16", "--threads", "1"]
    )
    assert out.exit_code == 0, out.output
    assert "refused" not in out.output
    assert read_current(bundles) is not None
    out = runner.invoke(app, ["evaluate", str(data), *common, "--protocol", "time"])
    assert out.exit_code == 0, out.output
    assert "item-knn" in out.output


def test_objective_option_picks_the_trainer_and_its_tuned_settings() -> None:
    causal = train_config(
        dim=16, history_len=8, epochs=1, batch_size=32, seed=0, threads=1, objective="causal"
    )
    assert (causal.objective, causal.temperature, causal.negatives) == (
        "causal",
        CAUSAL.temperature,
        CAUSAL.negatives,
    )
    assert (causal.dim, causal.history_len) == (16, 8)  # the command's options still win
    last = train_config(
        dim=16, history_len=8, epochs=1, batch_size=32, seed=0, threads=1, objective="last"
    )
    assert last.objective == "last" and last.temperature == TrainConfig().temperature
    with pytest.raises(typer.BadParameter):
        train_config(
            dim=16, history_len=8, epochs=1, batch_size=32, seed=0, threads=1, objective="sideways"
        )


def test_warm_start_continues_from_the_current_bundle(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    world = SimConfig(users=60, items=40, events=1500)
    data.write_bytes(b"".join(encode(ev) + b"\n" for ev in simulate(world, seed=5)))
    bundles = tmp_path / "bundles"
    runner = CliRunner(env={"COLUMNS": "200"})
    args = ["train", str(data), "--bundle-dir", str(bundles), "--epochs", "1", "--dim", "16"]
    cold = runner.invoke(app, [*args, "--warm-start", "--threads", "1"])
    assert cold.exit_code == 0, cold.output
    assert "no CURRENT bundle with weights" in cold.output  # nothing to start from yet
    first = read_current(bundles)
    warm = runner.invoke(app, [*args, "--warm-start", "--threads", "1"])
    assert warm.exit_code == 0, warm.output
    assert f"starting from the weights of bundle {first}" in warm.output
    assert read_current(bundles) != first


def test_evaluate_ratings_as_interactions_reads_every_rating_as_a_top_rating(
    tmp_path: Path,
) -> None:
    """Known answer: under the rating rule a rating without its value counts as the top
    rating, so evaluating with the option gives the table of the same file with every
    rating 5, and (planted: the most played items are rated 1) not the plain file's."""
    world = SimConfig(users=80, items=50, events=2500)
    events = [ev for ev in simulate(world, seed=4) if isinstance(ev, InteractionEvent)]
    counts: dict[str, int] = {}
    for ev in events:
        counts[ev.item_id] = counts.get(ev.item_id, 0) + 1
    head = set(sorted(counts, key=counts.__getitem__, reverse=True)[:10])

    def write(name: str, rating: Callable[[str], int]) -> Path:
        path = tmp_path / name
        path.write_text(
            "userId,movieId,rating,timestamp\n"
            + "".join(
                f"{ev.user_id},{ev.item_id},{rating(ev.item_id)},{int(ev.ts) // 1000}\n"
                for ev in events
            )
        )
        return path

    rated = write("ratings.csv", lambda item: 1 if item in head else 5)
    top = write("top.csv", lambda item: 5)
    bundles = tmp_path / "bundles"
    runner = CliRunner(env={"COLUMNS": "200"})
    common = ["--bundle-dir", str(bundles), "--item-file", "", "--protocol", "time"]
    out = runner.invoke(
        app,
        [
            "train",
            str(rated),
            "--bundle-dir",
            str(bundles),
            "--item-file",
            "",
            "--epochs",
            "1",
            "--dim",
            "16",
            "--threads",
            "1",
        ],
    )
    assert out.exit_code == 0, out.output

    def table(path: Path, *extra: str) -> str:
        result = runner.invoke(app, ["evaluate", str(path), *common, *extra])
        assert result.exit_code == 0, result.output
        return result.output

    as_interactions = table(rated, "--ratings-as-interactions")
    assert as_interactions == table(top)
    assert as_interactions != table(rated)
