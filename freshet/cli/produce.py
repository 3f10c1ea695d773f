"""``freshet produce FILE``: send the events of a JSONL or CSV file to Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freshet.cli import file_options as files
from freshet.cli.context import settings_of


def register(app: typer.Typer) -> None:
    app.command("produce")(produce)


def produce(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            envvar="FRESHET_PRODUCE_FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="File of events: JSONL (one event object per line) or CSV.",
        ),
    ],
    fmt: files.Format = None,
    preset: files.Preset = None,
    columns: files.Columns = None,
    delimiter: files.Delimiter = ",",
    ts_unit: files.TimestampUnit = files.TsUnit.s,
    header: files.Header = True,
    ratings_as_interactions: files.RatingsAsInteractions = False,
    rate: Annotated[
        float,
        typer.Option(
            envvar="FRESHET_PRODUCE_RATE", help="Events per second to send; 0: as fast as possible."
        ),
    ] = 0.0,
) -> None:
    """Send the events of a file to Kafka, keyed as the stream expects.

    Interaction events go to <prefix>.events keyed by user, catalog lines (those with
    "op") to <prefix>.catalog keyed by item; topics are created if missing. A line that
    cannot be read is not sent: it is reported with its line number and reason. CSV
    rows become events with ids <file-stem>-<line>, so sending a file twice is
    deduplicated by the worker.
    """
    from rich.console import Console

    from freshet.cli.sending import KafkaSink, Pacer, Tally, print_summary, progress_bar
    from schemas.codec import Refusal
    from schemas.events import InteractionEvent
    from streams.core.file_reader import as_interaction, read_file

    settings = settings_of(ctx)
    console = Console(stderr=True)
    source = files.file_source(
        fmt,
        preset,
        columns,
        delimiter,
        ts_unit,
        header,
        ratings_as_interactions=ratings_as_interactions,
    )

    total_lines = _count_lines(file)
    sink = KafkaSink(settings)
    tally = Tally()
    pacer = Pacer(rate)
    sent = 0
    try:
        with progress_bar(console) as progress:
            task = progress.add_task(f"producing {file.name}", total=total_lines)
            last = 0
            for line_no, item in read_file(file, source.fmt, source.layout):
                if isinstance(item, Refusal):
                    tally.refuse(line_no, item)
                else:
                    if source.ratings_as_interactions and isinstance(item, InteractionEvent):
                        item = as_interaction(item)
                    pacer.wait(sent)
                    sink.send(item)
                    tally.count(item)
                    sent += 1
                if line_no - last >= 1000:
                    progress.update(task, completed=line_no)
                    last = line_no
            progress.update(task, completed=total_lines)
    except ValueError as exc:  # the layout does not fit the file's header
        sink.close()
        raise typer.BadParameter(str(exc), param_hint="--columns/--preset") from None
    delivery = sink.close()
    print_summary(
        console,
        f"freshet produce {file.name}",
        tally,
        delivery,
        f"Kafka {settings.kafka_bootstrap}, prefix {settings.topic_prefix}",
        {"lines read": f"{total_lines:,}"},
    )
    if delivery[1]:
        raise typer.Exit(1)


def _count_lines(path: Path) -> int:
    """Lines in a file (a last line without newline counts), for the progress bar."""
    count = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")
