"""``freshet retrain``: train on the recent window, promote only if it is no worse, prune."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from freshet.cli import train_options as opts
from freshet.cli.context import settings_of
from freshet.cli.train import parse_time, results_table, topic_events

if TYPE_CHECKING:
    from rich.table import Table

    from training.retrain import RetrainResult

EXIT_REFUSED = 2
"""Exit status when the gate refused the new bundle (a scheduler shows it as failed)."""

COMPARED = ("hr@10", "ndcg@10", "mrr", "coverage", "long_tail_share")


def comparison_table(result: RetrainResult) -> Table:
    """Served bundle against the new one, metric by metric, with the relative change."""
    from rich.table import Table

    old_name = result.previous or "(none)"
    table = Table("test metric", f"current {old_name}", f"new {result.version}", "change")
    new = result.new_metrics
    for name in COMPARED:
        old_v, new_v = result.previous_metrics.get(name), new.get(name)
        change = ""
        if old_v is not None and new_v is not None and old_v > 0:
            change = f"{(new_v - old_v) / old_v:+.1%}"
        table.add_row(
            name + (" (gate)" if name == "ndcg@10" else ""),
            "-" if old_v is None else f"{old_v:.4f}",
            "-" if new_v is None else f"{new_v:.4f}",
            change,
        )
    return table


def retrain_command(
    ctx: typer.Context,
    window: Annotated[
        str,
        typer.Option(
            envvar="FRESHET_RETRAIN_WINDOW",
            help="Train on events of this recent window: 7d, 36h, 90m, 3600s, 2w.",
        ),
    ] = "7d",
    until: Annotated[
        str | None,
        typer.Option(
            envvar="FRESHET_RETRAIN_UNTIL", help="End of the window: epoch ms or ISO (now)."
        ),
    ] = None,
    max_regression: Annotated[
        float,
        typer.Option(
            envvar="FRESHET_RETRAIN_MAX_REGRESSION",
            min=0.0,
            help="Largest relative drop of test NDCG@10 against CURRENT that is promoted.",
        ),
    ] = 0.05,
    force: Annotated[
        bool,
        typer.Option(envvar="FRESHET_RETRAIN_FORCE", help="Promote even past the gate."),
    ] = False,
    keep: Annotated[
        int | None,
        typer.Option(
            envvar="FRESHET_RETRAIN_KEEP",
            min=1,
            help="Keep this many bundle versions (never deleting CURRENT or the one "
            "before it); default: delete none.",
        ),
    ] = None,
    topic: Annotated[
        str | None,
        typer.Option(envvar="FRESHET_TRAIN_TOPIC", help="Events topic (default: <prefix>.events)."),
    ] = None,
    catalog_topic: Annotated[
        str | None,
        typer.Option(envvar="FRESHET_TRAIN_CATALOG_TOPIC", help="Catalog topic, read fully."),
    ] = None,
    bundle_dir: opts.BundleDir = None,
    protocol: opts.Protocol = "time",
    epochs: opts.Epochs = 10,
    dim: opts.Dim = 64,
    history_len: opts.HistoryLen = 20,
    batch_size: opts.BatchSize = 256,
    seed: opts.Seed = 0,
    threads: opts.Threads = 2,
    ranker: opts.Ranker = None,
    objective: opts.Objective = None,
) -> None:
    """Retrain on the events topic's recent window and promote the bundle if it holds up.

    Reads the catalog topic fully and the events of the last --window, trains as
    `freshet train` does, and compares the new bundle's test NDCG@10 with the one
    recorded by CURRENT. A drop beyond --max-regression is refused (exit 2; the bundle
    is kept but not served) unless --force. Running workers hot-swap to a promoted
    bundle. The training options read the same FRESHET_TRAIN_* variables as train.
    """
    from rich.console import Console

    from inference.bundle import BundleError
    from training.kafka_source import ReadStats
    from training.retrain import parse_window, retrain

    settings = settings_of(ctx)
    ranker = opts.ranker_mode(ranker)
    try:
        window_ms = parse_window(window)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    until_ms = parse_time(until)
    end_ms = until_ms if until_ms is not None else int(time.time() * 1000)
    since_ms = end_ms - window_ms
    stats = ReadStats()
    events = topic_events(settings, topic, catalog_topic, since_ms, until_ms, None, stats)
    config = opts.train_config(
        dim=dim,
        history_len=history_len,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        threads=threads,
        objective=objective,
    )
    console = Console()
    root = bundle_dir or settings.bundle_dir
    try:
        result = retrain(
            events,
            root,
            config,
            max_regression=max_regression,
            force=force,
            keep=keep,
            protocol=protocol,
            ranker=ranker,
        )
    except (ValueError, BundleError) as exc:
        console.print(f"[red]retrain failed, CURRENT unchanged: {exc}")
        raise typer.Exit(1) from None
    out = result.pipeline
    console.print(
        f"window {window} until {'now' if until_ms is None else until}: "
        f"{out.log.n_events} events, {out.log.n_users} users, {out.log.n_items} items "
        f"({stats.refused} undecodable messages skipped)"
    )
    console.print(results_table([(out.protocol, r.name, r.metrics) for r in out.results]))
    console.print(comparison_table(result))
    decision = result.decision
    if result.pruned:
        console.print(f"pruned {len(result.pruned)} old bundles: {', '.join(result.pruned)}")
    if not decision.promote:
        console.print(
            f"[red]refused[/red]: {decision.reason}; bundle {result.version} kept, not "
            f"served (CURRENT stays {result.previous}). Promote it anyway with "
            f"`freshet models rollback --to {result.version}` or rerun with --force."
        )
        raise typer.Exit(EXIT_REFUSED)
    console.print(
        f"[green]promoted[/green]: {decision.reason}; CURRENT is now "
        f"[bold]{result.version}[/bold] (was {result.previous})"
    )


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain_command)
