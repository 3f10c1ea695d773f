"""The state-store contract suite, run against a 3-master Redis Cluster.

The test functions are the very ones of ``tests/streams/test_state_store_contract.py``;
only the ``store`` fixture differs: the cluster client and the scripted, per-partition
fenced write (``RedisStateStore(cluster=True)``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from freshet.services.redis_cluster_local import LocalRedisCluster
from streams.core.state_store import PartitionRead, PartitionWrite, StaleWatermark
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_state_store import RedisStateStore

_CONTRACT = Path(__file__).parents[1] / "streams" / "test_state_store_contract.py"
_spec = importlib.util.spec_from_file_location("state_store_contract", _CONTRACT)
assert _spec is not None and _spec.loader is not None
_contract = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)
CONTRACT_TESTS = sorted(
    name
    for name in vars(_contract)
    if name.startswith("test_") and name not in _contract.STANDALONE_ONLY
)
globals().update({name: getattr(_contract, name) for name in CONTRACT_TESTS})


@pytest.fixture
async def store(redis_cluster: LocalRedisCluster) -> AsyncIterator[RedisStateStore]:
    client = RedisCluster.from_url(redis_cluster.url)
    yield RedisStateStore(
        client, Keyspace("t", "g1"), cluster=True, trending_half_life_s=_contract.HALF_LIFE
    )
    await client.aclose()


def test_the_whole_contract_suite_is_collected() -> None:
    assert len(CONTRACT_TESTS) >= 6


async def test_one_stale_partition_leaves_the_others_written(store: RedisStateStore) -> None:
    """Per-partition transactions: partition 1's fence fails, partition 2 still applies."""
    await store.write([PartitionWrite(1, 7, 0, expected_watermark=-1)])
    with pytest.raises(StaleWatermark):
        await store.write(
            [
                PartitionWrite(1, 9, 0, expected_watermark=-1),
                PartitionWrite(2, 3, 0, expected_watermark=-1),
            ]
        )
    snaps = await store.read([PartitionRead(1, ()), PartitionRead(2, ())])
    assert (snaps[1].watermark, snaps[2].watermark) == (7, 3)


async def test_partitions_live_on_every_master(store: RedisStateStore) -> None:
    """Twelve partitions' hash tags spread over the three masters."""
    client = await store.client.initialize()
    owners = {
        client.nodes_manager.get_node_from_slot(client.keyslot(store.keys.watermark(p))).name
        for p in range(12)
    }
    assert len(owners) == 3
