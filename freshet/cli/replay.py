"""``freshet replay``: rebuild state from the topics into a new generation, then switch."""

from __future__ import annotations

from typing import Annotated

import typer

from freshet.cli.context import settings_of
from freshet.cli.train import parse_time
from freshet.wiring import redis_of


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            envvar="FRESHET_REPLAY_SINCE",
            help="Start at this event time (epoch ms or ISO 8601), found with the broker's "
            "offset-for-timestamp lookup. Default: the beginning of the topics.",
        ),
    ] = None,
    rate: Annotated[
        float,
        typer.Option(envvar="FRESHET_REPLAY_RATE", help="Most records per second; 0 = no limit."),
    ] = 0.0,
    generation: Annotated[
        str | None,
        typer.Option(
            envvar="FRESHET_REPLAY_GENERATION",
            help="Generation to build (e.g. g7); give the same one again to resume. "
            "Default: the one after the served generation.",
        ),
    ] = None,
    switch: Annotated[
        bool,
        typer.Option(
            envvar="FRESHET_REPLAY_SWITCH",
            help="Switch readers and workers to the new generation when it is built.",
        ),
    ] = True,
    keep_old: Annotated[
        bool,
        typer.Option(envvar="FRESHET_REPLAY_KEEP_OLD", help="Keep the old generation's keys."),
    ] = False,
    republish: Annotated[
        bool,
        typer.Option(
            envvar="FRESHET_REPLAY_REPUBLISH",
            help="Afterwards, publish a fresh list for every user the replay touched.",
        ),
    ] = False,
) -> None:
    """Backfill user and item state by re-processing the topics into a fresh generation.

    Serving keeps reading the current generation until the new one is complete; the
    switch is one atomic pointer change (running workers pause for the final drain,
    then write the new generation). Interrupted? Run again with --generation to resume:
    progress is kept in the new generation's partition watermarks, and every record is
    applied once.
    """
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from streams.redis_io.redis_client import async_redis
    from streams.runtime.replay import Replayer, ReplayProgress

    settings = settings_of(ctx)
    since_ms = parse_time(since)
    console = Console()

    async def main() -> ReplayProgress:
        redis = async_redis(redis_of(settings))
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} records"),
            TextColumn("{task.fields[rate]:,.0f}/s"),
            TextColumn("lag {task.fields[lag]:,}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("replay", total=None, rate=0.0, lag=0)

            def show(p: ReplayProgress) -> None:
                bar.update(
                    task,
                    completed=p.records,
                    description=f"replay {p.generation} {p.phase}",
                    rate=p.rate,
                    lag=p.remaining,
                )

            replayer = Replayer(
                settings,
                redis,
                generation=generation,
                since_ms=since_ms,
                rate=rate,
                on_progress=show,
            )
            try:
                return await replayer.run(switch=switch, keep_old=keep_old, republish=republish)
            finally:
                await redis.aclose()

    result = asyncio.run(main())
    table = Table(title="freshet replay")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("generation", result.generation)
    table.add_row("state", "serving" if result.phase == "switched" else "built, not switched")
    table.add_row("records read", f"{result.records:,}")
    table.add_row("events and catalog changes applied", f"{result.applied:,}")
    table.add_row("records/s", f"{result.rate:,.0f}")
    if republish:
        table.add_row("lists republished", f"{result.published:,}")
    console.print(table)
