"""The catalog-store contract suite, run against a 3-master Redis Cluster.

The test functions are the very ones of ``tests/streams/test_catalog_store_contract.py``;
only the ``catalog`` fixture differs: the cluster client.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from freshet.services.redis_cluster_local import LocalRedisCluster
from streams.redis_io.catalog_store import RedisCatalogStore
from streams.redis_io.keyspace import Keyspace

_CONTRACT = Path(__file__).parents[1] / "streams" / "test_catalog_store_contract.py"
_spec = importlib.util.spec_from_file_location("catalog_store_contract", _CONTRACT)
assert _spec is not None and _spec.loader is not None
_contract = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)
CONTRACT_TESTS = sorted(name for name in vars(_contract) if name.startswith("test_"))
globals().update({name: getattr(_contract, name) for name in CONTRACT_TESTS})


@pytest.fixture
async def catalog(redis_cluster: LocalRedisCluster) -> AsyncIterator[RedisCatalogStore]:
    client = RedisCluster.from_url(redis_cluster.url)
    yield RedisCatalogStore(client, Keyspace("t", "g1"))
    await client.aclose()


def test_the_whole_contract_suite_is_collected() -> None:
    assert len(CONTRACT_TESTS) >= 3
