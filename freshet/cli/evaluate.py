"""``freshet evaluate``: score a bundle and the baselines on a file, one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freshet.cli import file_options as files
from freshet.cli.context import settings_of


def evaluate_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSONL or CSV file of events.")],
    fmt: files.Format = None,
    preset: files.Preset = None,
    columns: files.Columns = None,
    delimiter: files.Delimiter = ",",
    ts_unit: files.TimestampUnit = files.TsUnit.s,
    header: files.Header = True,
    item_file: files.ItemFile = None,
    ratings_as_interactions: files.RatingsAsInteractions = False,
    bundle_dir: Annotated[
        Path | None, typer.Option(envvar="FRESHET_BUNDLE_DIR", help="Where bundles live.")
    ] = None,
    version: Annotated[
        str | None, typer.Option(envvar="FRESHET_EVAL_VERSION", help="Default: CURRENT.")
    ] = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            envvar="FRESHET_EVAL_PROTOCOL",
            help="time and/or loo (repeatable); default: the one the bundle was trained with.",
        ),
    ] = None,
    cases: Annotated[int, typer.Option(envvar="FRESHET_EVAL_CASES")] = 5000,
    seed: Annotated[int, typer.Option(envvar="FRESHET_EVAL_SEED")] = 0,
) -> None:
    """Rank held-out events of FILE with the bundle and with the baselines.

    The bundle is served by the worker's scorer (``LiveScorer``): its row ranks every
    item by the model alone, and the ``freshet lists`` row scores the lists the worker
    would publish. The bundle's numbers are honest for the protocol it was trained with on the same
    data (its test part was never trained on); for another protocol or other data its
    training window may overlap the held-out events.
    """
    from rich.console import Console

    from freshet.cli.train import results_table, segments_table
    from freshet.wiring import live_config
    from inference.bundle import BundleError
    from inference.onnx_session import LoadedBundle
    from training.data import build_log
    from training.evaluation.baselines import fit_baselines
    from training.evaluation.live_eval import LiveListScorer, LiveModelScorer, live_for_log
    from training.evaluation.protocols import Scorer, build_cases, evaluate
    from training.pipeline import make_split

    settings = settings_of(ctx)
    console = Console()
    try:
        bundle = LoadedBundle.load(
            bundle_dir or settings.bundle_dir, version, provider=settings.onnx_provider
        )
    except BundleError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from None
    refused: dict[str, int] = {}
    source = files.file_source(
        fmt, preset, columns, delimiter, ts_unit, header, item_file, ratings_as_interactions
    )
    events = list(source.events(file, refused))
    log = build_log(events, bundle.manifest.hashing)
    trained_with = str(bundle.manifest.data_range.get("protocol", "time"))
    rows = []
    for name in protocol or [trained_with]:
        split = make_split(log, name)
        held_out = build_cases(log, split, "test", bundle.history_len, cases, seed)
        popularity = log.popularity(split.train)
        live = live_for_log(bundle, log, events, split.train, live_config(settings), seed=seed)
        n = bundle.history_len
        served: list[Scorer] = [
            LiveModelScorer(live, log, n),
            LiveListScorer(live, log, split.train, n),
        ]
        for s in [*served, *fit_baselines(log, split.train)]:
            result = evaluate(s, held_out, popularity)
            rows.append((name, s.name, result.metrics))
        if name != trained_with:
            console.print(
                f"[yellow]bundle was trained with protocol {trained_with}; "
                f"its {name} row may be optimistic"
            )
    console.print(results_table(rows))
    console.print(segments_table(rows))
    if refused:
        console.print(f"[yellow]skipped {sum(refused.values())} refused lines: {refused}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
