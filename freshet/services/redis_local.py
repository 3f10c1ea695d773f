"""A real ``redis-server`` (Debian's package) on loopback, for development and tests.

Its config, data (RDB/AOF) and log live under ``base_dir``; a state file remembers the
port so a restart, or a later ``freshet services down``, finds the same server.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from freshet.services.errors import ServiceSetupError
from freshet.services.local_service import LocalService
from freshet.services.ports import LOOPBACK, free_port

_INSTALL_HINT = "redis-server is not installed: apt-get install redis-server"


@dataclass(frozen=True, slots=True)
class RedisTLS:
    """Files for Redis's TLS listener; ``port`` 0 picks a free one."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    port: int = 0


class LocalRedis(LocalService):
    """One ``redis-server`` process rooted at ``base_dir``.

    Args:
        base_dir: folder for config, data and log; reused across restarts.
        port: plain TCP port; a free one is picked (and remembered) when None.
        appendonly: keep an append-only file, so writes survive a restart.
        appendfsync: ``always`` | ``everysec`` | ``no``.
        password: ``requirepass``; empty for none.
        tls: an extra TLS listener (``tls-port``), for security tests.
        unix_socket: also listen on this Unix socket (``unixsocket``, mode 700); its
            path must stay under the OS limit of about 100 bytes.
        die_with_parent: stop the server when the starting process dies (for tests).
    """

    title = "redis-server"
    noun = "server"
    ready_words = "answer PING"
    pid_name = "redis.pid"
    poll_s = 0.05
    start_timeout_s = 20.0
    stop_grace_s = 20.0  # Redis fsyncs its AOF on the way out

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        password: str = "",
        tls: RedisTLS | None = None,
        unix_socket: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        if appendfsync not in {"always", "everysec", "no"}:
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        super().__init__(base_dir, port, die_with_parent)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.tls = tls
        self.tls_port: int = 0
        if tls is not None:
            self.tls_port = tls.port or int(self.saved_state.get("tls_port", 0)) or free_port()
        self.unix_socket = Path(unix_socket).resolve() if unix_socket is not None else None

    # --- paths ------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.base_dir / "redis.conf"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "redis.log"

    # --- public API -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:<port>/0``."""
        return self._url("redis", self.port)

    @property
    def tls_url(self) -> str:
        """``rediss://...`` for the TLS listener; empty when there is none."""
        return self._url("rediss", self.tls_port) if self.tls_port else ""

    @property
    def unix_url(self) -> str:
        """``unix://[:password@]/path/to/socket?db=0``; empty when there is no socket."""
        if self.unix_socket is None:
            return ""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"unix://{auth}{self.unix_socket}?db=0"

    @property
    def _marker(self) -> str:
        # redis-server rewrites its process title to ``redis-server <bind>:<port>``.
        return f"{LOOPBACK}:{self._recorded_port or self.port}"

    def alive(self) -> bool:
        """Whether our server runs and answers PING."""
        return self.pid is not None and self._ping()

    def client(self) -> redis.Redis:
        """A plain (non-TLS) client on database 0."""
        return redis.Redis.from_url(self.url)

    # --- internals --------------------------------------------------------------------
    def _url(self, scheme: str, port: int) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{LOOPBACK}:{port}/0"

    def _extra_ports(self) -> tuple[int, ...]:
        return (self.tls_port,)

    def _command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceSetupError(_INSTALL_HINT)
        return [binary, str(self.config_file)]

    def _write_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._state_file.write_text(json.dumps({"port": self.port, "tls_port": self.tls_port}))
        self.config_file.write_text(self._config())
        # Redis reads the password from its config; keep that file private.
        self.config_file.chmod(0o600)

    def _config(self) -> str:
        lines = [
            f"bind {LOOPBACK}",
            f"port {self.port}",
            "daemonize no",
            f"dir {self.data_dir}",
            "logfile ''",  # to stdout, which start_detached sends to log_file
            "loglevel notice",
            # Only the AOF persists when it is on: a restart test then proves the AOF.
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.appendfsync}",
            "databases 16",
        ]
        if self.password:
            lines.append(f'requirepass "{_escape(self.password)}"')
        if self.tls is not None:
            lines += [
                f"tls-port {self.tls_port}",
                f"tls-cert-file {self.tls.cert_file}",
                f"tls-key-file {self.tls.key_file}",
                f"tls-ca-cert-file {self.tls.ca_file}",
                "tls-auth-clients optional",
            ]
        if self.unix_socket is not None:
            lines += [f"unixsocket {self.unix_socket}", "unixsocketperm 700"]
        return "\n".join(lines) + "\n"

    def _ping(self) -> bool:
        try:
            client = redis.Redis(
                host=LOOPBACK,
                port=self.port,
                password=self.password or None,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.exceptions.BusyLoadingError:
            return False  # still replaying the AOF
        except redis.exceptions.RedisError:
            return False

    def _ready(self, log_offset: int) -> bool:
        return self._ping()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
