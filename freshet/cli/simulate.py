"""``freshet simulate``: a synthetic shop's event stream, to Kafka or a JSONL file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from freshet.cli.context import settings_of


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)


def _opt(env: str, help_text: str, **kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(envvar=f"FRESHET_SIM_{env}", help=help_text, **kwargs)  # type: ignore[arg-type]


def simulate_command(
    ctx: typer.Context,
    users: Annotated[int, _opt("USERS", "Users at the start.", min=1)] = 1_000,
    items: Annotated[int, _opt("ITEMS", "Items in the initial catalog.", min=2)] = 500,
    categories: Annotated[int, _opt("CATEGORIES", "Item categories.", min=1)] = 20,
    events: Annotated[
        int, _opt("EVENTS", "Interaction events (catalog events come on top).", min=0)
    ] = 100_000,
    rate: Annotated[
        float,
        _opt(
            "RATE",
            "Events per second to send, and the pace of their event times; "
            "0: as fast as possible, event times spaced at 1,000/s.",
            min=0.0,
        ),
    ] = 0.0,
    seed: Annotated[int, _opt("SEED", "Seed: the same seed gives the same stream.")] = 0,
    new_user_rate: Annotated[
        float, _opt("NEW_USER_RATE", "New users per 1,000 events.", min=0.0)
    ] = 1.0,
    new_item_rate: Annotated[
        float,
        _opt("NEW_ITEM_RATE", "New items per 1,000 events (announced before use).", min=0.0),
    ] = 0.5,
    removal_rate: Annotated[
        float, _opt("REMOVAL_RATE", "Items removed per 1,000 events.", min=0.0)
    ] = 0.05,
    start_ms: Annotated[
        int, _opt("START_MS", "Event time of the first message, epoch ms; 0: now.", min=0)
    ] = 0,
    out: Annotated[
        Path | None,
        _opt("OUT", "Write JSONL to this file instead of sending to Kafka.", dir_okay=False),
    ] = None,
    duplicates: Annotated[
        float,
        _opt("DUPLICATES", "Fraction of events sent twice (fault injection).", min=0.0, max=1.0),
    ] = 0.0,
    malformed: Annotated[
        int,
        _opt("MALFORMED", "Malformed raw messages mixed into the events (fault injection).", min=0),
    ] = 0,
) -> None:
    """Generate a synthetic shop's events: tastes, habits and a long tail to learn.

    Users with a few favourite categories browse in sessions (view, click, add to cart,
    purchase, sometimes a rating), follow "what comes next" habits, and favour popular
    items; new users and items arrive (every item announced on the catalog topic
    before its first interaction) and some items are removed. Sent to Kafka (topics
    created if missing) unless --out names a JSONL file. --duplicates and --malformed
    inject faults that the worker must dead-letter or deduplicate.
    """
    import numpy as np
    from rich.console import Console

    from freshet.cli.sending import (
        FileSink,
        KafkaSink,
        Pacer,
        Sink,
        Tally,
        print_summary,
        progress_bar,
    )
    from freshet.simulator.faults import malformed_messages
    from freshet.simulator.stream import SimConfig, World, stream_events
    from schemas.events import InteractionEvent

    try:
        config = SimConfig(
            users=users,
            items=items,
            categories=categories,
            events=events,
            rate=rate if rate > 0 else 1000.0,
            start_ms=start_ms or int(time.time() * 1000),
            new_user_rate=new_user_rate,
            new_item_rate=new_item_rate,
            removal_rate=removal_rate,
            duplicates=duplicates,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console = Console(stderr=True)
    world = World(config, seed)
    faults = malformed_messages(malformed, seed=seed) if malformed else []
    # The malformed messages go after randomly chosen interaction events.
    fault_after = np.sort(np.random.default_rng(seed).integers(0, max(events, 1), len(faults)))

    sink: Sink
    if out is not None:
        sink, destination = FileSink(out), str(out)
    else:
        settings = settings_of(ctx)
        sink = KafkaSink(settings)
        destination = f"Kafka {settings.kafka_bootstrap}, prefix {settings.topic_prefix}"
    tally = Tally()
    pacer = Pacer(rate)
    sent = interactions = next_fault = 0
    with progress_bar(console) as progress:
        task = progress.add_task("simulating", total=events)
        for event in stream_events(world):
            pacer.wait(sent)
            sink.send(event)
            tally.count(event)
            sent += 1
            if isinstance(event, InteractionEvent):
                interactions += 1
                while next_fault < len(faults) and fault_after[next_fault] < interactions:
                    sink.send_raw(faults[next_fault][0])
                    tally.sent["malformed (raw)"] += 1
                    next_fault += 1
                    sent += 1
                if interactions % 1000 == 0:
                    progress.update(task, completed=interactions)
        progress.update(task, completed=interactions)
    delivery = sink.close()
    n_dups = sum(tally.sent[t] for t in ("view", "click", "add_to_cart", "purchase", "rating"))
    print_summary(
        console,
        f"freshet simulate (seed {seed})",
        tally,
        delivery,
        destination,
        {
            "world": f"{world.n_users:,} users, {world.n_items:,} items, {categories} categories",
            "duplicates injected": f"{n_dups - events:,}",
        },
    )
    if delivery is not None and delivery[1]:
        raise typer.Exit(1)
