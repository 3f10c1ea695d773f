"""A local Redis Cluster of ``redis-server`` processes in cluster mode, for tests.

Each master is a ``LocalRedis`` with ``cluster-enabled yes`` in its own folder under
``base_dir``; ``redis-cli --cluster create`` spreads the 16384 slots over them. The
cluster bus port is chosen like the client port (``cluster-port``) rather than taken as
port + 10000, which can fall outside the port range.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from freshet.services.errors import ServiceSetupError
from freshet.services.ports import LOOPBACK, free_port
from freshet.services.redis_local import LocalRedis


class ClusterNodeRedis(LocalRedis):
    """One ``redis-server`` with cluster mode on; its bus port is remembered in its folder."""

    def __init__(
        self,
        base_dir: Path,
        *,
        appendonly: bool = False,
        die_with_parent: bool = False,
        node_timeout_ms: int = 5000,
    ) -> None:
        super().__init__(base_dir, appendonly=appendonly, die_with_parent=die_with_parent)
        bus_file = self.base_dir / "bus_port"
        if bus_file.exists():
            self.bus_port = int(bus_file.read_text())
        else:
            self.bus_port = free_port()
            self.base_dir.mkdir(parents=True, exist_ok=True)
            bus_file.write_text(str(self.bus_port))
        self.node_timeout_ms = node_timeout_ms

    def _config(self) -> str:
        return super()._config() + "\n".join(
            [
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",  # in ``dir``, kept across restarts
                f"cluster-node-timeout {self.node_timeout_ms}",
                f"cluster-port {self.bus_port}",
                "",
            ]
        )


class LocalRedisCluster:
    """``masters`` cluster-mode ``redis-server`` processes joined into one cluster.

    Args:
        base_dir: one sub-folder per node (config, data, ``nodes.conf``, log).
        masters: number of masters; the slots are split evenly, no replicas.
        appendonly: keep an AOF on every node.
        die_with_parent: stop the servers when the starting process dies (for tests).
    """

    def __init__(
        self,
        base_dir: Path,
        masters: int = 3,
        *,
        appendonly: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.base_dir = Path(base_dir).resolve()
        self.nodes = [
            ClusterNodeRedis(
                self.base_dir / f"node-{i}", appendonly=appendonly, die_with_parent=die_with_parent
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """A seed node's URL; a cluster client discovers the other masters from it."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def client(self) -> RedisCluster:
        """A blocking cluster client."""
        return RedisCluster.from_url(self.url)

    def start(self, timeout: float = 30.0) -> LocalRedisCluster:
        """Start every node, create the cluster if its slots are unassigned, wait for ok."""
        for node in self.nodes:
            node.start(timeout)
        if self._info(self.nodes[0]).get("cluster_slots_assigned") == "0":
            self._create()
        self._wait_ok(timeout)
        return self

    def stop(self, grace_s: float = 20.0) -> None:
        for node in self.nodes:
            node.stop(grace_s)

    def wipe(self) -> None:
        """Stop every node and delete the whole cluster folder."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _create(self) -> None:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise ServiceSetupError("redis-cli is not installed: apt-get install redis-tools")
        addresses = [f"{LOOPBACK}:{port}" for port in self.ports]
        done = subprocess.run(
            [binary, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceSetupError(
                f"redis-cli --cluster create failed ({done.returncode}):\n"
                + (done.stdout + done.stderr)[-2000:]
            )

    def _wait_ok(self, timeout: float) -> None:
        """Until every node reports ``cluster_state:ok`` and knows every other node."""
        deadline = time.monotonic() + timeout
        infos: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            infos = [self._info(n) for n in self.nodes]
            if all(
                i.get("cluster_state") == "ok" and i.get("cluster_known_nodes") == str(len(infos))
                for i in infos
            ):
                return
            time.sleep(0.1)
        raise ServiceSetupError(f"Redis Cluster not ok within {timeout:.0f} s: {infos}")

    @staticmethod
    def _info(node: LocalRedis) -> dict[str, str]:
        """The node's ``CLUSTER INFO`` fields as strings; empty when it does not answer."""
        client = redis.Redis(host=LOOPBACK, port=node.port, socket_timeout=2.0)
        try:
            info = client.cluster("INFO")
        except redis.exceptions.RedisError:
            return {}
        finally:
            client.close()
        return {str(k): _text(v) for k, v in dict(info).items()}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
