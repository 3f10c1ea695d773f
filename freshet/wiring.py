"""The composition root: ``Settings`` mapped, in one place, to each part's small config.

Nothing below the ``freshet`` package reads the settings: the state rules, the decoder,
the scorer and the re-ranking pipeline take the frozen configs built here, so a
reader sees in each constructor every knob that part depends on, and a misspelt
setting fails here, loudly, rather than being ignored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any

from freshet.settings import Settings
from inference.recommend import RecommendConfig
from schemas.codec import DecodeLimits
from streams.core.catalog import CatalogRecord, CatalogSnapshot
from streams.core.live_config import LiveConfig
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import StateRules
from streams.core.sync_policy import SyncPolicy
from streams.kafka_io.kafka_config import KafkaConfig
from streams.redis_io.redis_client import RedisConfig
from streams.runtime.live_recommender import LiveRecommender


def kafka_of(settings: Settings) -> KafkaConfig:
    """Where the brokers are, how to reach them, and the topic layout."""
    return KafkaConfig(
        bootstrap=settings.kafka_bootstrap,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password.get(),
        ssl_cafile=settings.kafka_ssl_cafile,
        ssl_certfile=settings.kafka_ssl_certfile,
        ssl_keyfile=settings.kafka_ssl_keyfile,
        topic_prefix=settings.topic_prefix,
        topic_partitions=settings.topic_partitions,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        fetch_min_bytes=settings.kafka_fetch_min_bytes,
        max_poll_records=settings.kafka_max_poll_records,
        linger_ms=settings.kafka_linger_ms,
        consumer_on_loop=settings.kafka_consumer_on_loop,
        batch_delivery=settings.kafka_batch_delivery,
        commit_interval_s=settings.kafka_commit_interval_s,
    )


def redis_of(settings: Settings) -> RedisConfig:
    """Where Redis is, how to log in, and the key namespace."""
    return RedisConfig(
        url=settings.redis_url,
        cluster=settings.redis_cluster,
        username=settings.redis_username,
        password=settings.redis_password.get(),
        ssl_ca_certs=settings.redis_ssl_ca_certs,
        namespace=settings.redis_namespace,
    )


def rules_of(settings: Settings) -> StateRules:
    """The state update's bounds."""
    return StateRules(
        history_len=settings.history_len,
        seen_max=settings.seen_max,
        dedup_window=settings.dedup_window,
        trending_half_life_s=settings.trending_half_life_s,
        ratings_as_interactions=settings.ratings_as_interactions,
    )


def limits_of(settings: Settings) -> DecodeLimits:
    """What the decoder accepts."""
    return DecodeLimits(
        max_bytes=settings.max_message_bytes,
        min_ts=settings.min_event_ts_ms,
        max_future_ms=settings.max_future_ms,
    )


def recommend_config(settings: Settings, **overrides: Any) -> RecommendConfig:
    """The re-ranking pipeline's knobs that settings carry; the rest keep their defaults."""
    values: dict[str, Any] = {
        "list_size": settings.list_size,
        "candidates": settings.candidates,
        "mmr_pool": settings.mmr_pool,
        "mmr_lambda": settings.mmr_lambda,
        "longtail_share": settings.longtail_share,
        "exploration_slots": settings.exploration_slots,
        "new_item_slots": settings.new_item_slots,
        "trending_slots": settings.trending_slots,
        "covisit_weight": settings.covisit_weight,
        "model_weight": settings.model_weight,
        "popularity_weight": settings.popularity_weight,
    }
    return RecommendConfig(**{**values, **overrides})


def live_config(settings: Settings) -> LiveConfig:
    """The real-time scorer's knobs."""
    return LiveConfig(
        recommend=recommend_config(settings),
        cold_user_events=settings.cold_user_events,
        covisit_candidates=settings.covisit_candidates,
        covisit_window=settings.covisit_window,
        covisit_width=settings.covisit_width,
        covisit_backward=settings.covisit_backward,
        covisit_flatness=settings.covisit_flatness,
        covisit_damping=settings.covisit_damping,
        covisit_half_life_s=settings.covisit_half_life_s,
        covisit_damping_choices=damping_choices(settings.covisit_damping_choices),
        covisit_vectors=settings.covisit_vectors,
        fold_in_half_life_s=settings.trending_half_life_s,
    )


def damping_choices(spec: str) -> tuple[float, ...]:
    """``"0.25/0.35/0.5"`` (or comma- or space-separated) as dampings; "" is none.

    >>> damping_choices("0.25/0.5"), damping_choices("")
    ((0.25, 0.5), ())
    """
    return tuple(float(x) for x in re.split(r"[/,\s]+", spec.strip()) if x)


def load_onnx_bundle(bundle_dir: Path, version: str, provider: str, threads: int = 1) -> Any:
    """The served bundle of ``version`` on ONNX Runtime (its batch-of-one encoder built)."""
    from inference.onnx_session import LoadedBundle

    return LoadedBundle.load(bundle_dir, version, provider, threads, serving=True)


def onnx_loader(settings: Settings) -> Callable[[Any, str], Any]:
    """``(folder, version) -> bundle`` on the configured ONNX provider and threads."""
    return functools.partial(
        load_onnx_bundle, provider=settings.onnx_provider, threads=settings.onnx_threads
    )


def training_consumer(settings: Settings) -> Callable[[], Any]:
    """Opens the consumer ``training.kafka_source.read_topic`` reads with, once the
    broker answers (a late broker is waited for, with capped backoff)."""
    from kafka import KafkaConsumer

    from streams.kafka_io.kafka_config import kafka_python_kwargs
    from streams.kafka_io.kafka_wait import kafka_client_when_up

    kwargs = kafka_python_kwargs(
        kafka_of(settings), client_id="freshet-train", enable_auto_commit=False, group_id=None
    )
    return lambda: kafka_client_when_up(kafka_of(settings), lambda: KafkaConsumer(**kwargs))


DEBOUNCE_MODES = ("adaptive", "fixed")


def debounce_behind_of(settings: Settings) -> int | None:
    """The adaptive debounce's backlog threshold, or ``None`` for the fixed window."""
    if settings.debounce_mode not in DEBOUNCE_MODES:
        raise ValueError(
            f"FRESHET_DEBOUNCE_MODE={settings.debounce_mode!r}: expected one of {DEBOUNCE_MODES}"
        )
    return settings.debounce_behind_ms if settings.debounce_mode == "adaptive" else None


def batch_lanes_of(settings: Settings) -> int:
    """The batch agent's partition lanes, as the agent and the adaptive debounce use them:
    ``FRESHET_BATCH_LANES`` with batch delivery, else one (without it the agent takes
    one stream, a batch mixes partitions, and a lane by partition would mean nothing)."""
    return max(1, settings.batch_lanes) if settings.kafka_batch_delivery else 1


def live_recommender(
    settings: Settings,
    *,
    trending_source: Callable[[int], Awaitable[list[tuple[str, float]]]],
    counts_source: Callable[[], Awaitable[dict[str, int]]],
    catalog_log: Callable[[str], Awaitable[list[tuple[str, CatalogRecord]]]],
    change_source: Callable[[], Awaitable[Hashable]] | None = None,
    bundle_loader: Callable[[Any, str], Any] | None = None,
    seed: int = 0,
    catalog_snapshot: CatalogSnapshot | None = None,
    catalog_wait: Callable[[str, float], Awaitable[bool]] | None = None,
) -> LiveRecommender:
    """A worker's real-time path: a ``LiveScorer`` under its async shell."""
    return LiveRecommender(
        LiveScorer(live_config(settings), seed=seed),
        bundle_dir=settings.bundle_dir,
        bundle_loader=bundle_loader or onnx_loader(settings),
        debounce_ms=settings.debounce_ms,
        debounce_behind_ms=debounce_behind_of(settings),
        debounce_lanes=batch_lanes_of(settings),
        trending_source=trending_source,
        counts_source=counts_source,
        catalog_log=catalog_log,
        change_source=change_source,
        catalog_snapshot=catalog_snapshot,
        image_dir=settings.home / "catalog-images" / settings.redis_namespace,
        trending_policy=trending_policy_of(settings),
        popularity_policy=popularity_policy_of(settings),
        catalog_wait=catalog_wait,
    )


def trending_policy_of(settings: Settings) -> SyncPolicy:
    """When the trending sync reads again (``FRESHET_TRENDING_SYNC_*``)."""
    return SyncPolicy(max(1, settings.trending_sync_records), max(0.0, settings.trending_sync_s))


def popularity_policy_of(settings: Settings) -> SyncPolicy:
    """When the item counts are read again: at most every ``FRESHET_POPULARITY_SYNC_S``
    while records are applied, however many (each read scans every count)."""
    return SyncPolicy(2**62, max(0.0, settings.popularity_sync_s))
