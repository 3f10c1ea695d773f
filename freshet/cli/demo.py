"""``freshet demo``: the whole product on this machine, in a few minutes."""

from __future__ import annotations

from typing import Annotated

import typer

from freshet.cli.context import settings_of


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    users: Annotated[
        int, typer.Option(envvar="FRESHET_DEMO_USERS", help="Users at the start.")
    ] = 3000,
    items: Annotated[
        int, typer.Option(envvar="FRESHET_DEMO_ITEMS", help="Items at the start.")
    ] = 2000,
    past_events: Annotated[
        int, typer.Option(envvar="FRESHET_DEMO_PAST_EVENTS", help="History to train on and replay.")
    ] = 40_000,
    live_events: Annotated[
        int, typer.Option(envvar="FRESHET_DEMO_LIVE_EVENTS", help="Events streamed live.")
    ] = 20_000,
    rate: Annotated[
        float, typer.Option(envvar="FRESHET_DEMO_RATE", help="Live events per second.")
    ] = 1000.0,
    epochs: Annotated[int, typer.Option(envvar="FRESHET_DEMO_EPOCHS", help="Training epochs.")] = 2,
    train: Annotated[
        bool,
        typer.Option(envvar="FRESHET_DEMO_TRAIN", help="Train a bundle first (else model-free)."),
    ] = True,
    seed: Annotated[int, typer.Option(envvar="FRESHET_DEMO_SEED")] = 7,
) -> None:
    """Start local Kafka and Redis, simulate a shop, train, run a worker, stream live traffic.

    Shows live lists for a few users and ends with events/s, p50/p99 event-to-list
    latency, catalog coverage, long-tail share and fallback share. Services keep running
    afterwards (`freshet services down` stops them).
    """
    from freshet.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        users=users,
        items=items,
        past_events=past_events,
        live_events=live_events,
        rate=rate,
        epochs=epochs,
        seed=seed,
        train=train,
    )
    run_demo(settings_of(ctx), cfg)
