"""``freshet produce FILE``: send the events of a JSONL or CSV file to Kafka."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from freshet.cli.context import settings_of


class FileFormatChoice(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class PresetChoice(StrEnum):
    movielens = "movielens"
    ml_csv = "ml-csv"


class TsUnit(StrEnum):
    s = "s"
    ms = "ms"


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
    fmt: Annotated[
        FileFormatChoice | None,
        typer.Option(
            "--format",
            envvar="FRESHET_PRODUCE_FORMAT",
            help="File format; guessed from the suffix when left out (.jsonl/.ndjson: jsonl).",
        ),
    ] = None,
    preset: Annotated[
        PresetChoice | None,
        typer.Option(
            envvar="FRESHET_PRODUCE_PRESET",
            help="CSV layout: movielens (ratings.dat, user::item::rating::ts) or "
            "ml-csv (userId,movieId,rating,timestamp). Default for .dat: movielens, "
            "else ml-csv.",
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            envvar="FRESHET_PRODUCE_COLUMNS",
            help="CSV column mapping instead of a preset, e.g. "
            "user=uid,item=sku,timestamp=ts,rating=stars,type=kind (fields: user, item, "
            "timestamp, rating, value, type, event_id); 0-based indices with --no-header.",
        ),
    ] = None,
    delimiter: Annotated[
        str,
        typer.Option(envvar="FRESHET_PRODUCE_DELIMITER", help="CSV delimiter (with --columns)."),
    ] = ",",
    ts_unit: Annotated[
        TsUnit,
        typer.Option(envvar="FRESHET_PRODUCE_TS_UNIT", help="CSV timestamp unit (with --columns)."),
    ] = TsUnit.s,
    header: Annotated[
        bool,
        typer.Option(
            envvar="FRESHET_PRODUCE_HEADER", help="Whether the CSV has a header (with --columns)."
        ),
    ] = True,
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
    from streams.core.file_reader import PRESETS, read_file

    settings = settings_of(ctx)
    console = Console(stderr=True)
    layout = None
    try:
        if columns:
            from streams.core.file_reader import parse_columns

            layout = parse_columns(
                columns, delimiter=delimiter, header=header, ts_unit=ts_unit.value
            )
        elif preset is not None:
            layout = PRESETS[preset.value]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--columns") from None

    total_lines = _count_lines(file)
    sink = KafkaSink(settings)
    tally = Tally()
    pacer = Pacer(rate)
    sent = 0
    try:
        with progress_bar(console) as progress:
            task = progress.add_task(f"producing {file.name}", total=total_lines)
            last = 0
            for line_no, item in read_file(file, fmt.value if fmt else None, layout):
                if isinstance(item, Refusal):
                    tally.refuse(line_no, item)
                else:
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
