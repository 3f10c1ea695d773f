"""``freshet train``: learn a model from a file or a Kafka topic and write a bundle."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from freshet.cli import file_options as files
from freshet.cli import train_options as opts
from freshet.cli.context import settings_of

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from freshet.settings import Settings
    from schemas.events import CatalogEvent, InteractionEvent
    from training.kafka_source import ReadStats
    from training.warm_start import WarmStart


def parse_time(text: str | None) -> int | None:
    """Epoch milliseconds from an integer (ms) or an ISO-8601 time (UTC when no zone)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither epoch ms nor an ISO-8601 time") from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def results_table(rows: Sequence[tuple[str, str, Mapping[str, float]]]) -> Table:
    """A rich table of (protocol, model, metrics) rows."""
    from rich.table import Table

    columns = ("hr@10", "ndcg@10", "mrr", "coverage", "long_tail_share")
    table = Table("protocol", "model", *columns, "cases")
    for protocol, model, values in rows:
        cells = [f"{values.get(c, float('nan')):.4f}" for c in columns]
        table.add_row(protocol, model, *cells, str(int(values.get("cases", 0))))
    return table


def segments_table(rows: Sequence[tuple[str, str, Mapping[str, float]]]) -> Table:
    """HR@10/NDCG@10 of cold users and cold items (no training events) per row."""
    from rich.table import Table

    table = Table("protocol", "model", "segment", "cases", "hr@10", "ndcg@10")
    for protocol, model, values in rows:
        for seg in ("cold_user", "cold_item"):
            cases = int(values.get(f"{seg}/cases", 0))
            cells = [f"{values[f'{seg}/{m}']:.4f}" if cases else "-" for m in ("hr@10", "ndcg@10")]
            table.add_row(protocol, model, seg.replace("_", " ") + "s", str(cases), *cells)
    return table


def topic_events(
    settings: Settings,
    topic: str | None,
    catalog_topic: str | None,
    since_ms: int | None,
    until_ms: int | None,
    catalog_until_ms: int | None,
    stats: ReadStats,
) -> Iterator[InteractionEvent | CatalogEvent]:
    """The catalog topic up to ``catalog_until_ms``, then the events topic's window.

    ``None`` topics are the prefix's; undecodable messages are counted in ``stats``.
    """
    from itertools import chain

    from freshet.wiring import training_consumer
    from schemas.topics import Topics
    from training.kafka_source import read_topic

    topics = Topics(settings.topic_prefix)
    connect = training_consumer(settings)
    return chain(
        read_topic(connect, catalog_topic or topics.catalog, None, catalog_until_ms, True, stats),
        read_topic(connect, topic or topics.events, since_ms, until_ms, False, stats),
    )


def train_command(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="JSONL or CSV file of events; omit to read Kafka (--topic)."),
    ] = None,
    fmt: files.Format = None,
    preset: files.Preset = None,
    columns: files.Columns = None,
    delimiter: files.Delimiter = ",",
    ts_unit: files.TimestampUnit = files.TsUnit.s,
    header: files.Header = True,
    item_file: files.ItemFile = None,
    ratings_as_interactions: files.RatingsAsInteractions = False,
    topic: Annotated[
        str | None,
        typer.Option(envvar="FRESHET_TRAIN_TOPIC", help="Events topic (default: <prefix>.events)."),
    ] = None,
    catalog_topic: Annotated[
        str | None,
        typer.Option(envvar="FRESHET_TRAIN_CATALOG_TOPIC", help="Catalog topic, read to --until."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(envvar="FRESHET_TRAIN_SINCE", help="Start: epoch ms or ISO time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(envvar="FRESHET_TRAIN_UNTIL", help="End (exclusive).")
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
    warm_start: opts.WarmStart = False,
) -> None:
    """Train the retrieval model, compare it with baselines, and write a bundle.

    The new bundle becomes CURRENT only after it loads through onnxruntime and agrees
    with torch.
    """
    from rich.console import Console

    from training.kafka_source import ReadStats
    from training.pipeline import run

    settings = settings_of(ctx)
    ranker = opts.ranker_mode(ranker)
    console = Console()
    refused: dict[str, int] = {}
    events: Iterator[InteractionEvent | CatalogEvent]
    if file is not None:
        if topic:
            raise typer.BadParameter("give a FILE or --topic, not both")
        source = files.file_source(
            fmt, preset, columns, delimiter, ts_unit, header, item_file, ratings_as_interactions
        )
        events = source.events(file, refused)
    else:
        until_ms = parse_time(until)
        events = topic_events(
            settings, topic, catalog_topic, parse_time(since), until_ms, until_ms, ReadStats()
        )
    config = opts.train_config(
        dim=dim,
        history_len=history_len,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        threads=threads,
        objective=objective,
    )
    target = bundle_dir or settings.bundle_dir
    start = _current_weights(target, console) if warm_start else None
    out = run(events, target, config, protocol, ranker=ranker, warm_start=start)
    if refused:
        console.print(f"[yellow]skipped {sum(refused.values())} refused lines: {refused}")
    console.print(results_table([(out.protocol, r.name, r.metrics) for r in out.results]))
    if out.ranker is not None:
        res = out.ranker.result
        console.print(
            f"ranker: hold-out NDCG@10 {res.retrieval_holdout['ndcg@10']:.4f} -> "
            f"{res.holdout['ndcg@10']:.4f} ({res.gain:+.1%}), test {out.ranker.test_gain:+.1%}; "
            + ("[green]in the bundle" if out.ranker_included else "[yellow]left out")
        )
    console.print(f"bundle [bold]{out.bundle.name}[/bold] written to {out.bundle} (CURRENT)")


def _current_weights(bundle_dir: Path, console: Console) -> WarmStart | None:
    """The CURRENT bundle's weights to start from (``--warm-start``), or None with a note."""
    from inference.bundle import read_current
    from training.warm_start import read_warm_start

    current = read_current(bundle_dir)
    start = read_warm_start(bundle_dir / current) if current else None
    if start is None:
        console.print(f"[yellow]--warm-start: no CURRENT bundle with weights in {bundle_dir}")
    else:
        console.print(f"starting from the weights of bundle {current}")
    return start


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
