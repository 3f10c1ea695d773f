"""``freshet api``: serve the HTTP read API (latest lists, probes, metrics, OpenAPI)."""

from __future__ import annotations

from typing import Annotated

import typer

from freshet.cli.context import settings_of
from freshet.wiring import redis_of


def register(app: typer.Typer) -> None:
    app.command("api")(api)


def api(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(envvar="FRESHET_API_HOST", help="Bind address (default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            envvar="FRESHET_API_PORT",
            min=0,
            max=65535,
            help="Port (default 8080); 0: any free port.",
        ),
    ] = None,
) -> None:
    """Serve each user's latest list from Redis over HTTP, with a cold-start fallback.

    GET /v1/users/{user_id}/recommendations, /healthz, /readyz, /metrics and
    /openapi.json. When FRESHET_API_TOKEN is set, every route but the two probes needs
    "Authorization: Bearer <token>". Give the token in the environment only.
    """
    from aiohttp import web
    from rich.console import Console

    from freshet.api.app import create_app
    from freshet.api.redis_watch import watch_redis_at_start
    from streams.redis_io.redis_wait import redis_where

    settings = settings_of(ctx)
    changes: dict[str, object] = {}
    if host is not None:
        changes["api_host"] = host
    if port is not None:
        changes["api_port"] = port
    if changes:
        settings = settings.with_(**changes)
    auth = "bearer token required" if settings.api_token else "no auth (FRESHET_API_TOKEN unset)"
    console = Console(stderr=True, highlight=False)

    def announce(message: object) -> None:
        console.print(f"freshet api: {message}; {auth}; {redis_where(redis_of(settings))}")

    app = create_app(settings)
    watch_redis_at_start(app, redis_where(redis_of(settings)))
    web.run_app(
        app,
        host=settings.api_host,
        port=settings.api_port,
        print=announce,
        access_log_format='%a "%r" %s %b %Tf',
    )
