"""The root options shared by every command, and the settings built from them."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from freshet.settings import Settings


def root_callback(
    ctx: typer.Context,
    kafka_bootstrap: Annotated[
        str | None,
        typer.Option(
            envvar="FRESHET_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers, host:port[,...]."
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="FRESHET_REDIS_URL", help="Redis URL, redis:// or rediss://."),
    ] = None,
    topic_prefix: Annotated[
        str | None, typer.Option(envvar="FRESHET_TOPIC_PREFIX", help="Prefix of the four topics.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(envvar="FRESHET_LOG_LEVEL")] = None,
) -> None:
    """Build the one Settings object for this invocation.

    Connection settings come from the flags, else ``FRESHET_*`` variables, else the
    local services started by ``freshet services up`` (if they are running).
    """
    overrides: dict[str, Any] = {}
    if kafka_bootstrap:
        overrides["kafka_bootstrap"] = kafka_bootstrap
    if redis_url:
        overrides["redis_url"] = redis_url
    if topic_prefix:
        overrides["topic_prefix"] = topic_prefix
    if log_level:
        overrides["log_level"] = log_level
    settings = Settings.from_env(**overrides)
    settings = _with_local_services(settings, explicit=set(overrides))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.log_level.upper() != "DEBUG":
        # The client libraries narrate every connection at INFO; keep their warnings.
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = settings


def _with_local_services(settings: Settings, explicit: set[str]) -> Settings:
    """Point at the running local services unless the user named endpoints."""
    import os

    from freshet.services.registry import read_endpoints

    endpoints = read_endpoints(settings.home)
    if endpoints is None:
        return settings
    changes: dict[str, object] = {}
    if "kafka_bootstrap" not in explicit and "FRESHET_KAFKA_BOOTSTRAP" not in os.environ:
        changes["kafka_bootstrap"] = endpoints.kafka_bootstrap
    if "redis_url" not in explicit and "FRESHET_REDIS_URL" not in os.environ:
        changes["redis_url"] = endpoints.redis_url
    return settings.with_(**changes) if changes else settings


def settings_of(ctx: typer.Context) -> Settings:
    """The settings built by the root callback."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):  # pragma: no cover - only when misused
        raise RuntimeError("freshet settings were not built")
    return obj
