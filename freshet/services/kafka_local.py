"""A real Apache Kafka broker (KRaft, one node) on loopback, for development and tests.

Everything lives under ``base_dir``: the broker config, its data, its log and a small
state file with the ports and cluster id, so a later process (``freshet services
down``) or a restart finds the same broker on the same data again.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from pathlib import Path

from freshet.services.errors import ServiceSetupError
from freshet.services.kafka_jars import KAFKA_VERSION, ensure_kafka_jars
from freshet.services.local_service import LocalService
from freshet.services.ports import LOOPBACK, free_port, port_open
from freshet.services.processes import tail
from freshet.settings import Settings

READY_LINE = "Kafka Server started"


def new_cluster_id() -> str:
    """16 random bytes, base64url without padding: the form KRaft's storage tool wants."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


class LocalKafka(LocalService):
    """One KRaft broker+controller process rooted at ``base_dir``.

    Args:
        base_dir: folder for config, data and logs; reused across restarts.
        port: client port; a free one is picked (and remembered) when None.
        partitions: ``num.partitions`` for auto-created topics.
        home: freshet home holding the cached broker jars (``<home>/kafka/<version>``).
        heap: JVM max heap.
        version: Kafka release, as cached by ``ensure_kafka_jars``.
        die_with_parent: stop the broker when the starting process dies (for tests).
    """

    title = "Kafka broker"
    noun = "broker"
    pid_name = "kafka.pid"
    start_timeout_s = 90.0
    stop_grace_s = 30.0  # a clean shutdown flushes the logs

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        partitions: int = 4,
        home: Path | None = None,
        heap: str = "768m",
        version: str = KAFKA_VERSION,
        die_with_parent: bool = False,
    ) -> None:
        super().__init__(base_dir, port, die_with_parent)
        self.home = home if home is not None else Settings().home
        self.heap = heap
        self.version = version
        state = self.saved_state
        self.controller_port: int = int(state.get("controller_port", 0)) or free_port()
        self.cluster_id: str = str(state.get("cluster_id") or new_cluster_id())
        self.partitions = partitions
        self._launcher: tuple[str, str] = ("java", "")  # java and the classpath, at start

    # --- paths ------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.base_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "logs" / "server.log"

    @property
    def console_file(self) -> Path:
        return self.base_dir / "logs" / "console.log"

    # --- public API -------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def alive(self) -> bool:
        """Whether our broker process runs and accepts connections."""
        return self.pid is not None and port_open(self.port)

    # --- internals --------------------------------------------------------------------
    def _extra_ports(self) -> tuple[int, ...]:
        return (self.controller_port,)

    def _command(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ServiceSetupError(
                "java is needed for the local Kafka broker: apt-get install default-jre-headless"
            )
        classpath = f"{ensure_kafka_jars(self.home, self.version)}/*"
        self._launcher = (java, classpath)
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.base_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(self.config_file),
        ]

    def _before_launch(self) -> int:
        if not (self.data_dir / "meta.properties").exists():
            self._format(*self._launcher)
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def _write_files(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "controller_port": self.controller_port,
                    "cluster_id": self.cluster_id,
                    "version": self.version,
                }
            )
        )
        self.config_file.write_text(self._server_properties())
        (self.base_dir / "log4j.properties").write_text(self._log4j_properties())

    def _server_properties(self) -> str:
        c = self.controller_port
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{LOOPBACK}:{c}",
            f"listeners=PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{c}",
            f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{self.port}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.data_dir}",
            "auto.create.topics.enable=true",
            f"num.partitions={self.partitions}",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
            # A lone broker on a shared laptop: few threads are plenty.
            "num.network.threads=2",
            "num.io.threads=4",
            "num.recovery.threads.per.data.dir=1",
        ]
        return "\n".join(lines) + "\n"

    def _log4j_properties(self) -> str:
        return "\n".join(
            [
                "log4j.rootLogger=INFO, file",
                "log4j.appender.file=org.apache.log4j.FileAppender",
                f"log4j.appender.file.File={self.log_file}",
                "log4j.appender.file.Append=true",
                "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
                "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
                "log4j.logger.kafka.request.logger=WARN",
                "log4j.logger.state.change.logger=WARN",
                "log4j.logger.org.apache.kafka.controller=WARN",
                "",
            ]
        )

    def _format(self, java: str, classpath: str) -> None:
        cmd = [
            java,
            "-Xmx256m",
            f"-Dlog4j.configuration=file:{self.base_dir / 'log4j.properties'}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self.cluster_id}",  # one argument: an id may begin with "-"
            "-c",
            str(self.config_file),
            "--ignore-formatted",
        ]
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ServiceSetupError(
                f"formatting Kafka storage in {self.data_dir} failed:\n"
                + (result.stdout + result.stderr)[-3000:]
            )

    def _ready(self, log_offset: int) -> bool:
        return self._log_says_ready(log_offset) and port_open(self.port)

    def _log_tails(self) -> str:
        return tail(self.log_file) + "\n--- console ---\n" + tail(self.console_file, 15)

    def _log_says_ready(self, offset: int) -> bool:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return READY_LINE.encode() in fh.read()
        except FileNotFoundError:
            return False
