"""``freshet retrain``: the gate and pruning rules, then the command on the real broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freshet.cli import app
from freshet.settings import Settings
from freshet.simulator.stream import SimConfig, simulate
from freshet.wiring import kafka_of
from inference.bundle import list_versions, read_current, read_manifest
from schemas.events import InteractionEvent
from streams.kafka_io.event_producer import EventProducer, ensure_topics
from training.retrain import gate, parse_window, prune_plan

DAY_MS = 86_400_000


# --- pure rules ---------------------------------------------------------------------------


def test_parse_window() -> None:
    assert parse_window("7d") == 7 * DAY_MS
    assert parse_window("36h") == 36 * 3_600_000
    assert parse_window("90m") == 90 * 60_000
    assert parse_window("1.5h") == 5_400_000
    assert parse_window("2w") == 14 * DAY_MS
    for bad in ("", "7", "d", "-1d", "0d", "7 days"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_gate_allows_up_to_the_relative_regression() -> None:
    assert gate(0.30, 0.30, 0.05).promote
    assert gate(0.286, 0.30, 0.05).promote  # -4.7%
    refused = gate(0.284, 0.30, 0.05)  # -5.3%
    assert not refused.promote and "regresses" in refused.reason
    assert refused.change == pytest.approx(-0.016 / 0.30)
    assert gate(0.284, 0.30, 0.05, force=True).promote
    assert gate(0.10, None, 0.05).promote  # nothing served yet
    assert gate(0.10, 0.0, 0.05).promote  # a zero baseline cannot be regressed from
    assert not gate(float("nan"), 0.3, 0.05).promote
    with pytest.raises(ValueError):
        gate(0.3, 0.3, -0.1)


def test_prune_plan_never_deletes_current_or_its_predecessor() -> None:
    versions = ["v1", "v2", "v3", "v4", "v5"]
    assert prune_plan(versions, "v5", 3) == ["v1", "v2"]
    # CURRENT rolled back to v2: v2 and v1 are protected, the newest others fill the rest.
    assert prune_plan(versions, "v2", 3) == ["v3", "v4"]
    assert prune_plan(versions, "v2", 1) == ["v3", "v4", "v5"]
    assert prune_plan(versions, "v1", 1) == ["v2", "v3", "v4", "v5"]
    assert prune_plan(versions, None, 2) == ["v1", "v2", "v3"]
    assert prune_plan(versions, "v5", 10) == []
    with pytest.raises(ValueError):
        prune_plan(versions, "v5", 0)


# --- the command against the real broker ----------------------------------------------------


def _produce_world(settings: Settings, now_ms: int) -> None:
    """A small shop from a day ago, plus stale events a month old that the window drops."""
    ensure_topics(kafka_of(settings))
    world = SimConfig(users=80, items=50, events=2500, start_ms=now_ms - DAY_MS)
    with EventProducer(kafka_of(settings)) as producer:
        for event in simulate(world, seed=3):
            producer.send(event)
        stale_ts = now_ms - 30 * DAY_MS
        for i in range(40):
            producer.send(
                InteractionEvent(f"old-{i}", f"old-u{i % 4}", "old-item", "view", stale_ts)
            )
        producer.flush()


def test_retrain_promotes_rolls_back_refuses_and_prunes(settings: Settings, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    _produce_world(settings, now_ms)
    bundles = tmp_path / "bundles"
    runner = CliRunner(env={"COLUMNS": "200", "FRESHET_HOME": str(tmp_path)})
    root = [
        "--kafka-bootstrap",
        settings.kafka_bootstrap,
        "--redis-url",
        settings.redis_url,
        "--topic-prefix",
        settings.topic_prefix,
    ]
    train = ["--bundle-dir", str(bundles), "--epochs", "1", "--dim", "16", "--threads", "1"]
    train += ["--ranker", "off"]

    def retrain(*extra: str) -> tuple[int, str]:
        out = runner.invoke(app, [*root, "retrain", *train, *extra])
        return out.exit_code, out.output

    code, output = retrain()
    assert code == 0, output
    first = read_current(bundles)
    assert first is not None and "promoted" in output
    data = read_manifest(bundles / first).data_range
    assert data["first_ts"] >= now_ms - 7 * DAY_MS  # the month-old events were left out
    assert "old-item" not in json.loads((bundles / first / "item_ids.json").read_text())

    code, output = retrain()
    assert code == 0, output
    second = read_current(bundles)
    assert second is not None and second != first
    assert f"current {first}" in output and "ndcg@10 (gate)" in output

    out = runner.invoke(app, [*root, "models", "rollback", "--bundle-dir", str(bundles)])
    assert out.exit_code == 0, out.output
    assert read_current(bundles) == first

    # Make the served bundle's recorded metric unbeatable: the next one regresses past 5%.
    manifest_path = bundles / first / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["metrics"]["test"]["ndcg@10"] = 0.99
    manifest_path.write_text(json.dumps(manifest))
    code, output = retrain()
    assert code == 2, output
    assert "refused" in output and read_current(bundles) == first
    refused = sorted(set(list_versions(bundles)) - {first, second})
    assert len(refused) == 1  # kept for inspection, not served

    code, output = retrain("--force", "--keep", "2")
    assert code == 0, output
    forced = read_current(bundles)
    assert forced not in {first, second, *refused}
    # CURRENT and its predecessor (the refused one) stay; the two older ones went.
    assert list_versions(bundles) == [*refused, forced]
    assert not [p for p in bundles.iterdir() if p.name.startswith(".retrain-")]
