"""``freshet dlq``: inspect the dead-letter topic and re-drive fixed events."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from freshet.cli.context import settings_of

if TYPE_CHECKING:
    from rich.console import Console

    from freshet.settings import Settings
    from schemas.dead_letter import DeadLetter

dlq_app = typer.Typer(
    help="Dead letters: show what was refused and why; re-drive fixed events.",
    no_args_is_help=True,
)

Reasons = Annotated[
    list[str] | None,
    typer.Option(
        "--reason",
        envvar="FRESHET_DLQ_REASON",
        metavar="REASON",
        help="Only dead letters with this reason (repeat for several).",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")


@dlq_app.command("show")
def show(
    ctx: typer.Context,
    reasons: Reasons = None,
    max_shown: Annotated[
        int,
        typer.Option(
            "--max",
            envvar="FRESHET_DLQ_MAX",
            min=0,
            help="Show at most this many, in topic order; 0: all. The counts cover all.",
        ),
    ] = 20,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            envvar="FRESHET_DLQ_JSON",
            help="One dead letter per line as JSON, with the original parsed as 'event' "
            "(edit it and pass the file to 'dlq redrive --fix-file').",
        ),
    ] = False,
) -> None:
    """Show dead letters: reason, detail, source record, and the original bytes, safely.

    Reads the whole dead-letter topic as it is now (it does not wait for more) and ends
    with the count of each reason.
    """
    import orjson
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from freshet.ops.dead_letters import letter_json, preview, reason_counts

    _check_reasons(reasons)
    settings = settings_of(ctx)
    err = Console(stderr=True, highlight=False)
    table = Table(show_lines=True, header_style="bold")
    for name in ("dead letter", "reason", "source record", "key", "value", "detail"):
        table.add_column(name, overflow="fold")
    letters: list[DeadLetter] = []
    shown = 0
    for partition, offset, letter in _read_letters(settings, err):
        letters.append(letter)
        if reasons and letter.reason not in reasons:
            continue
        if max_shown and shown >= max_shown:
            continue
        shown += 1
        if as_json:
            line = orjson.dumps(letter_json(letter, partition, offset))
            sys.stdout.write(line.decode("utf-8") + "\n")
        else:
            table.add_row(
                f"p{partition}@{offset}",
                Text(letter.reason, style="red"),
                Text(f"{letter.source_topic} p{letter.source_partition}@{letter.source_offset}"),
                Text(preview(letter.key, 64)),
                Text(preview(letter.value)),
                Text(preview(letter.detail.encode("utf-8"), 200)),
            )
    if not as_json and shown:
        Console(highlight=False).print(table)
    counts = reason_counts(letters)
    summary = Table(title="dead letters by reason", header_style="bold")
    summary.add_column("reason")
    summary.add_column("count", justify="right")
    for reason, n in counts.most_common():
        summary.add_row(reason, f"{n:,}")
    summary.add_row("[bold]all", f"[bold]{len(letters):,}")
    err.print(summary)
    err.print(f"shown: {shown:,}", style="dim")


@dlq_app.command("redrive")
def redrive(
    ctx: typer.Context,
    fix_file: Annotated[
        Path | None,
        typer.Option(
            envvar="FRESHET_DLQ_FIX_FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="JSONL of corrected events: source_partition, source_offset, event (and "
            "optionally source_topic) per line, e.g. edited 'dlq show --json' output.",
        ),
    ] = None,
    reasons: Reasons = None,
    transforms: Annotated[
        list[str] | None,
        typer.Option(
            "--transform",
            envvar="FRESHET_DLQ_TRANSFORM",
            metavar="NAME",
            help="Repair originals before validating them (repeat to chain): "
            "drop-unknown-fields, ts-seconds-to-ms. Needs --reason.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", envvar="FRESHET_DLQ_DRY_RUN", help="Validate and report; send nothing."
        ),
    ] = False,
) -> None:
    """Send fixed events back to their input topic, validated, keyed as the stream expects.

    With --fix-file, each dead letter with a line for its source partition and offset
    is re-driven with the corrected event. With --reason, dead letters of those reasons
    are re-driven with their original bytes (after any --transform) if these now pass
    the codec under the current limits (FRESHET_MAX_MESSAGE_BYTES and friends); records
    refused for key_mismatch need nothing more, since every re-driven event is keyed by
    its user (catalog events by item). Both can be combined: a fix wins over the
    original. What still fails is reported, by reason, and not sent. Running a re-drive
    twice sends the events twice; the worker drops repeats whose event id it still
    remembers (FRESHET_DEDUP_WINDOW per user).
    """
    from rich.console import Console
    from rich.table import Table

    from freshet.ops.dead_letter_io import redrive as redrive_letters
    from freshet.ops.dead_letters import TRANSFORMS, Fix, parse_fix_file

    _check_reasons(reasons)
    if fix_file is None and not reasons:
        raise typer.BadParameter(
            "give --fix-file with corrected events, or --reason to re-send originals",
            param_hint="--fix-file/--reason",
        )
    for name in transforms or ():
        if name not in TRANSFORMS:
            raise typer.BadParameter(f"one of {sorted(TRANSFORMS)}", param_hint="--transform")
    if transforms and not reasons:
        raise typer.BadParameter(
            "applies to originals, so needs --reason", param_hint="--transform"
        )
    settings = settings_of(ctx)
    err = Console(stderr=True, highlight=False)
    fixes: list[Fix] = []
    problems: list[tuple[int, str]] = []
    if fix_file is not None:
        with fix_file.open(encoding="utf-8", errors="replace") as f:
            fixes, problems = parse_fix_file(f)
    for line_no, problem in problems[:20]:
        err.print(f"{fix_file}:{line_no}: {problem}", style="red")
    letters = [letter for _, _, letter in _read_letters(settings, err)]
    outcome = redrive_letters(
        settings,
        letters,
        fixes=fixes,
        reasons=frozenset(reasons) if reasons else None,
        resend_originals=bool(reasons),
        transforms=transforms or (),
        dry_run=dry_run,
    )
    plan, delivered, failed = outcome.plan, outcome.delivered, outcome.failed

    table = Table(title="freshet dlq redrive" + (" (dry run)" if dry_run else ""))
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("dead letters read", f"{plan.letters:,}")
    if plan.duplicates:
        table.add_row("  repeats of a source record (ignored)", f"{plan.duplicates:,}")
    table.add_row(
        "selected" + (f" ({', '.join(reasons)})" if reasons else ""), f"{plan.selected:,}"
    )
    table.add_row("valid: from the fix file", f"{plan.sent_by('fix'):,}")
    table.add_row("valid: originals", f"{plan.sent_by('original'):,}")
    for reason, n in plan.refused_by_reason().most_common():
        table.add_row(f"[red]still refused: {reason}", f"[red]{n:,}")
    if plan.no_fix:
        table.add_row("selected, no fix line", f"{plan.no_fix:,}")
    if plan.unknown_source:
        table.add_row("[red]from another topic (not sent)", f"[red]{plan.unknown_source:,}")
    if fix_file is not None:
        table.add_row("fix lines unusable", f"{len(problems):,}")
        table.add_row("fix lines matching no dead letter", f"{len(plan.unmatched_fixes):,}")
    if not dry_run:
        table.add_row("[bold]sent and delivered", f"[bold]{delivered:,}")
        table.add_row("[red]delivery failed" if failed else "delivery failed", f"{failed:,}")
    err.print(table)
    for letter, refusal in plan.refused[:10]:
        err.print(
            f"still refused: {letter.source_topic} p{letter.source_partition}@"
            f"{letter.source_offset}: {refusal.reason}: {refusal.detail[:160]}",
            style="red",
            markup=False,
        )
    if failed:
        raise typer.Exit(1)


def _check_reasons(reasons: list[str] | None) -> None:
    from schemas.dead_letter import DEAD_LETTER_REASONS

    for reason in reasons or ():
        if reason not in DEAD_LETTER_REASONS:
            raise typer.BadParameter(
                f"one of {', '.join(DEAD_LETTER_REASONS)}", param_hint="--reason"
            )


def _read_letters(settings: Settings, err: Console) -> Iterator[tuple[int, int, DeadLetter]]:
    """Every dead letter on the topic now, with its partition and offset there."""
    from kafka.errors import KafkaError

    from freshet.ops.dead_letter_io import read_letters
    from schemas.topics import Topics
    from streams.kafka_io.topic_reader import TopicMissing

    topic = Topics(settings.topic_prefix).dead_letter
    try:
        read = read_letters(settings)
    except TopicMissing:
        err.print(f"{topic} does not exist: no dead letters yet", style="dim")
        return
    except KafkaError as exc:
        err.print(f"Kafka at {settings.kafka_bootstrap}: {type(exc).__name__}", style="red")
        raise typer.Exit(1) from None
    yield from read.letters
    if read.unreadable:
        err.print(f"{read.unreadable} message(s) on {topic} are not dead letters", style="red")
