"""``freshet worker``: consume events and catalog changes, keep state, publish lists."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from freshet.cli.context import settings_of
from freshet.wiring import kafka_of, redis_of

log = logging.getLogger("freshet.worker")


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    ctx: typer.Context,
    batch_max_events: Annotated[
        int | None,
        typer.Option(envvar="FRESHET_BATCH_MAX_EVENTS", help="Most records in one micro-batch."),
    ] = None,
    batch_max_ms: Annotated[
        int | None,
        typer.Option(
            envvar="FRESHET_BATCH_MAX_MS", help="Longest wait to fill a micro-batch (ms)."
        ),
    ] = None,
    consumer_group: Annotated[
        str | None,
        typer.Option(envvar="FRESHET_CONSUMER_GROUP", help="Kafka consumer group of the workers."),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            envvar="FRESHET_TOPIC_PARTITIONS", help="Partitions for topics this worker creates."
        ),
    ] = None,
) -> None:
    """Run a worker: the Faust agents that keep every user's state fresh in Redis.

    Reads interaction events and catalog changes, sends anything it cannot read to the
    dead-letter topic with the reason and the original bytes, applies each valid event
    exactly once to Redis, and commits offsets only after the state is written. Start as
    many as you have partitions to share; they form one consumer group.

    Started before the broker or Redis, it waits for them (logging what it waits for,
    retrying at least every 3 s) rather than exit. It joins as a static group member
    (FRESHET_STATIC_MEMBERSHIP), so after a crash a restarted worker takes its
    partitions back at once; an orderly stop leaves the group so others take them.
    """
    from streams.kafka_io.group_member import claim_slot
    from streams.kafka_io.kafka_wait import wait_for_topics
    from streams.redis_io.redis_wait import wait_for_redis
    from streams.runtime.catalog_preload import preload_catalog
    from streams.runtime.worker import build_worker

    settings = settings_of(ctx)
    changes = {
        k: v
        for k, v in {
            "batch_max_events": batch_max_events,
            "batch_max_ms": batch_max_ms,
            "consumer_group": consumer_group,
            "topic_partitions": partitions,
        }.items()
        if v is not None
    }
    settings = settings.with_(**changes) if changes else settings
    wait_for_topics(kafka_of(settings))
    wait_for_redis(redis_of(settings))
    slot = None
    if settings.static_membership and not settings.group_instance_id:
        slot = claim_slot(settings.home / "members" / settings.consumer_group)
        settings = settings.with_(group_instance_id=slot.instance_id)
    if settings.static_membership:
        log.info(
            "joining %s as static member %s", settings.consumer_group, settings.group_instance_id
        )
    # A large catalog backlog (a cold start) is applied in bulk before the agents start.
    preloaded = asyncio.run(preload_catalog(settings))
    handover, preloaded.handover = preloaded.handover, None  # the worker's to free
    try:
        worker = build_worker(settings, handover=handover)
        del handover
        if preloaded.records and worker.metrics is not None:
            worker.metrics.observe_catalog(preloaded.as_batch())
        worker.run()  # a static member leaves its group once stopped
    finally:
        if slot is not None:
            slot.release()
