"""``freshet tail``: watch the recommendation lists the workers publish."""

from __future__ import annotations

from typing import Annotated

import typer

from freshet.cli.context import settings_of
from freshet.wiring import kafka_of


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)


def tail(
    ctx: typer.Context,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            envvar="FRESHET_TAIL_FROM_BEGINNING",
            help="Start at the oldest list kept on the topic instead of now.",
        ),
    ] = False,
    user: Annotated[
        str | None,
        typer.Option(
            envvar="FRESHET_TAIL_USER",
            help="Show only this user's lists (reads only the user's partition).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", envvar="FRESHET_TAIL_JSON", help="One list per line, as contract JSON."
        ),
    ] = False,
    max_lists: Annotated[
        int,
        typer.Option(
            "--max",
            envvar="FRESHET_TAIL_MAX",
            min=0,
            help="Stop after this many lists; 0: no limit.",
        ),
    ] = 0,
    timeout: Annotated[
        float,
        typer.Option(
            envvar="FRESHET_TAIL_TIMEOUT", min=0.0, help="Stop after this many seconds; 0: never."
        ),
    ] = 0.0,
    top: Annotated[
        int,
        typer.Option(
            envvar="FRESHET_TAIL_TOP", min=1, help="Items shown per list (not in --json)."
        ),
    ] = 10,
) -> None:
    """Print the lists on <prefix>.recommendations as they are published.

    Each list shows its user, strategy, model version, the latency from the triggering
    event's time to publish, and its top items with the reason for each. Stop with
    Ctrl-C, --max or --timeout.
    """
    import sys

    from kafka.errors import KafkaError
    from rich.console import Console

    from freshet.ops.tail_format import decode_list, json_line, render_list
    from schemas.codec import ID_RE
    from schemas.topics import Topics, event_key
    from streams.kafka_io.topic_reader import TopicMissing, TopicReader

    if user is not None and ID_RE.fullmatch(user) is None:
        raise typer.BadParameter("must match [A-Za-z0-9_.@+=/-]{1,128}", param_hint="--user")
    settings = settings_of(ctx)
    topic = Topics(settings.topic_prefix).recommendations
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)
    shown = undecodable = 0
    try:
        reader = TopicReader(
            kafka_of(settings),
            topic,
            from_beginning=from_beginning,
            for_key=None if user is None else event_key(user),
            client_id="freshet-tail",
        )
        with reader:
            where = "the beginning" if from_beginning else "now"
            err.print(f"tailing {topic} from {where}, partitions {reader.partitions}", style="dim")
            for record in reader.records(timeout_s=timeout or None):
                rec = decode_list(record.value)
                if rec is None:
                    undecodable += 1
                    err.print(f"p{record.partition}@{record.offset}: not a list", style="red")
                    continue
                if user is not None and rec.user_id != user:
                    continue
                if as_json:
                    sys.stdout.write(json_line(rec) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(render_list(rec, record.partition, record.offset, top))
                shown += 1
                if max_lists and shown >= max_lists:
                    break
    except TopicMissing as exc:
        err.print(f"{exc}; has a worker run with this prefix?", style="red")
        raise typer.Exit(1) from None
    except KafkaError as exc:
        err.print(f"Kafka at {settings.kafka_bootstrap}: {type(exc).__name__}", style="red")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    tail_note = f", {undecodable} undecodable" if undecodable else ""
    err.print(f"{shown} list(s) shown{tail_note}", style="dim")
