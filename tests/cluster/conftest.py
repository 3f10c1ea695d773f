"""A real 3-master Redis Cluster for the session, started by the harness itself.

Each test gets the cluster flushed on every master, so tests do not see each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from freshet.services.redis_cluster_local import LocalRedisCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "redis_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(
        tmp_path_factory.mktemp("redis-cluster"), masters=3, die_with_parent=True
    ).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_server: LocalRedisCluster) -> LocalRedisCluster:
    """The session's 3-master cluster, every master flushed; ``redis_cluster.url`` seeds it."""
    client = redis_cluster_server.client()
    try:
        client.flushall(target_nodes="primaries")
    finally:
        client.close()
    return redis_cluster_server
