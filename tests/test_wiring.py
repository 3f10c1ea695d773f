"""The composition root maps every setting a part depends on, and nothing else reads them."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from freshet.settings import Secret, Settings
from freshet.wiring import (
    batch_lanes_of,
    debounce_behind_of,
    kafka_of,
    limits_of,
    live_config,
    live_recommender,
    recommend_config,
    redis_of,
    rules_of,
)
from inference.recommend import RecommendConfig
from streams.core.live_config import LiveConfig
from streams.kafka_io.kafka_config import KafkaConfig
from streams.redis_io.redis_client import RedisConfig

ROOT = Path(__file__).resolve().parents[1]


def test_recommend_config_takes_the_settings_and_then_the_overrides() -> None:
    s = Settings(list_size=7, candidates=50, mmr_lambda=0.5, longtail_share=0.3)
    config = recommend_config(s, category_cap=3)
    assert (config.list_size, config.candidates, config.mmr_lambda) == (7, 50, 0.5)
    assert config.longtail_share == 0.3 and config.category_cap == 3
    assert config.trending_slots == s.trending_slots


def test_every_setting_named_like_a_pipeline_knob_reaches_the_pipeline() -> None:
    """A knob added to both, but not to the mapping, fails here rather than being ignored."""
    shared = sorted({f.name for f in fields(Settings)} & {f.name for f in fields(RecommendConfig)})
    assert shared  # list_size, candidates, ...
    for name in shared:
        bumped = getattr(Settings(), name) + 1
        assert getattr(recommend_config(Settings().with_(**{name: bumped})), name) == bumped


def test_a_misspelt_override_fails_loudly() -> None:
    with pytest.raises(TypeError):
        recommend_config(Settings(), list_sise=3)


def test_default_settings_give_the_default_configs() -> None:
    """Offline evaluation with a bare ``LiveConfig()`` scores as a default worker does."""
    assert live_config(Settings()) == LiveConfig()
    assert rules_of(Settings()).history_len == Settings().history_len
    assert limits_of(Settings()).max_bytes == Settings().max_message_bytes


# Which layers may read the settings at all: tests/test_layering.py.


def test_debounce_mode_maps_to_the_adaptive_threshold_or_the_fixed_window() -> None:
    assert debounce_behind_of(Settings()) == Settings().debounce_behind_ms  # adaptive default
    assert debounce_behind_of(Settings(debounce_mode="fixed")) is None
    with pytest.raises(ValueError, match="FRESHET_DEBOUNCE_MODE"):
        debounce_behind_of(Settings(debounce_mode="sometimes"))


async def _nothing(*_: Any) -> Any:
    return {}


def test_batch_lanes_reach_the_debounce_only_with_batch_delivery(tmp_path: Path) -> None:
    """Without batch delivery the agent has no lanes (one stream, batches mix
    partitions), so the adaptive debounce must not keep a lane per partition modulo
    ``FRESHET_BATCH_LANES``: its late-batch run would be split by an arbitrary rule."""

    def lanes(**settings: Any) -> int:
        live = live_recommender(
            Settings(bundle_dir=tmp_path, **settings),
            trending_source=_nothing,
            counts_source=_nothing,
            catalog_log=_nothing,
        )
        return live.debounce_lanes

    assert lanes(batch_lanes=4) == 4
    assert lanes(batch_lanes=4, kafka_batch_delivery=False) == 1  # was 4
    assert lanes(batch_lanes=1, kafka_batch_delivery=False) == 1


def test_the_batch_agent_and_the_debounce_take_the_same_lanes() -> None:
    assert batch_lanes_of(Settings()) == 1
    assert batch_lanes_of(Settings(batch_lanes=3)) == 3
    assert batch_lanes_of(Settings(batch_lanes=3, kafka_batch_delivery=False)) == 1
    assert batch_lanes_of(Settings(batch_lanes=0)) == 1


@pytest.mark.parametrize(
    ("build", "config_type", "prefix"),
    [(kafka_of, KafkaConfig, "kafka_"), (redis_of, RedisConfig, "redis_")],
)
def test_every_connection_field_is_mapped_from_its_setting(
    build: Any, config_type: type, prefix: str
) -> None:
    """Each adapter config field takes its ``FRESHET_*`` setting; secrets never show."""
    for f in fields(config_type):
        name = prefix + f.name if hasattr(Settings(), prefix + f.name) else f.name
        current = getattr(Settings(), name)
        if isinstance(current, Secret):
            changed: Any = Secret("hunter2-" + f.name)
        elif isinstance(current, bool):
            changed = not current
        elif isinstance(current, int):
            changed = current + 3
        else:
            changed = f"{current}-changed"
        config = build(Settings().with_(**{name: changed}))
        expected = changed.get() if isinstance(changed, Secret) else changed
        assert getattr(config, f.name) == expected, f.name
        assert "hunter2" not in repr(config)
