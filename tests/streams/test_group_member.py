"""Static group membership: a stable instance id per worker slot, and leaving on a planned stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient

from freshet.services.kafka_local import LocalKafka
from freshet.settings import Settings
from freshet.wiring import kafka_of
from streams.kafka_io.event_producer import ensure_topics
from streams.kafka_io.group_member import claim_slot, leave_group

HOLD = """
import sys, time
from pathlib import Path
from streams.kafka_io.group_member import claim_slot
slot = claim_slot(Path(sys.argv[1]), host="h")
print(slot.instance_id, flush=True)
time.sleep(600)
"""


def test_slots_are_unique_among_live_holders_and_reused_after_release(tmp_path: Path) -> None:
    first, second = claim_slot(tmp_path, "pod/a 1"), claim_slot(tmp_path, "pod/a 1")
    assert (first.instance_id, second.instance_id) == ("pod-a-1-0", "pod-a-1-1")
    first.release()
    assert claim_slot(tmp_path, "pod/a 1").instance_id == "pod-a-1-0"


def test_a_killed_holder_s_slot_goes_to_its_restart(tmp_path: Path) -> None:
    """kill -9 cannot clean up, yet the next worker gets the dead one's id back."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "h-0"
        mine = claim_slot(tmp_path, "h")
        assert mine.instance_id == "h-1"  # h-0 is held by the live process
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert claim_slot(tmp_path, "h").instance_id == "h-0"
    mine.release()


def _members(settings: Settings, group: str) -> list[dict[str, Any]]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        return list(admin.describe_groups([group])[group]["members"])
    finally:
        admin.close()


def test_leave_group_removes_a_stopped_static_member(
    kafka: LocalKafka, topic_prefix: str, tmp_path: Path
) -> None:
    """aiokafka sends no LeaveGroup for a static member; ``leave_group`` does it by id."""
    settings = Settings.from_env(
        {}, kafka_bootstrap=kafka.bootstrap, topic_prefix=topic_prefix, home=tmp_path
    )
    ensure_topics(kafka_of(settings), [f"{topic_prefix}.events"])
    group = f"{topic_prefix}-g"

    async def join_then_stop() -> None:
        consumer = AIOKafkaConsumer(
            f"{topic_prefix}.events",
            bootstrap_servers=kafka.bootstrap,
            group_id=group,
            group_instance_id="h-0",
            session_timeout_ms=45_000,
        )
        await consumer.start()
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "no assignment"
            await asyncio.sleep(0.1)
        await consumer.stop()

    asyncio.run(join_then_stop())
    stale = _members(settings, group)
    assert [m["group_instance_id"] for m in stale] == ["h-0"]  # kept for 45 s otherwise

    leave_group(kafka_of(settings), group, "h-0")
    assert _members(settings, group) == []


def test_the_faust_app_gets_the_group_settings(tmp_path: Path) -> None:
    from streams.runtime.faust_app import create_app

    settings = Settings().with_(home=tmp_path, group_instance_id="h-3")
    conf = create_app(settings).conf
    assert conf.consumer_group_instance_id == "h-3"
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (10.0, 1.0)
    dynamic = create_app(settings.with_(static_membership=False), app_id="other").conf
    assert dynamic.consumer_group_instance_id is None
