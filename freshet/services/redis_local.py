"""A real ``redis-server`` (Debian's package) on loopback, for development and tests.

Its config, data (RDB/AOF) and log live under ``base_dir``; a state file remembers the
port so a restart, or a later ``freshet services down``, finds the same server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from freshet.services.errors import ServiceSetupError
from freshet.services.ports import LOOPBACK, free_port, port_open, wait_port_closed
from freshet.services.processes import (
    pid_matches,
    read_pid,
    read_state,
    start_detached,
    tail,
    terminate,
)

_INSTALL_HINT = "redis-server is not installed: apt-get install redis-server"


@dataclass(frozen=True, slots=True)
class RedisTLS:
    """Files for Redis's TLS listener; ``port`` 0 picks a free one."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    port: int = 0


class LocalRedis:
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
        self.base_dir = Path(base_dir).resolve()
        state = read_state(self._state_file)
        # The port a running process of this folder listens on, as last written down.
        self._recorded_port = int(state.get("port", 0))
        self.port: int = port or self._recorded_port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.tls = tls
        self.tls_port: int = 0
        if tls is not None:
            self.tls_port = tls.port or int(state.get("tls_port", 0)) or free_port()
        self.unix_socket = Path(unix_socket).resolve() if unix_socket is not None else None
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

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

    @property
    def _pid_file(self) -> Path:
        return self.base_dir / "redis.pid"

    @property
    def _state_file(self) -> Path:
        return self.base_dir / "state.json"

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
    def configured(self) -> bool:
        """Whether this folder holds a service started before (ports chosen, config written)."""
        return self._state_file.exists()

    @property
    def pid(self) -> int | None:
        # redis-server rewrites its process title to ``redis-server <bind>:<port>``.
        pid = read_pid(self._pid_file)
        return pid if pid_matches(pid, self._marker) else None

    @property
    def _marker(self) -> str:
        return f"{LOOPBACK}:{self._recorded_port or self.port}"

    def alive(self) -> bool:
        """Whether our server runs and answers PING."""
        return self.pid is not None and self._ping()

    def client(self) -> redis.Redis:
        """A plain (non-TLS) client on database 0."""
        return redis.Redis.from_url(self.url)

    def start(self, timeout: float = 20.0) -> LocalRedis:
        """Start the server (a no-op if it already runs) and wait until it answers PING."""
        if self.pid is not None:
            if self._recorded_port != self.port:
                raise ServiceSetupError(
                    f"the server in {self.base_dir} already runs on port {self._recorded_port}; "
                    "stop it before choosing another port"
                )
            self._wait_ready(timeout)
            return self
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceSetupError(_INSTALL_HINT)
        for port in (self.port, self.tls_port):
            if port and port_open(port):
                raise ServiceSetupError(
                    f"port {port} on {LOOPBACK} is taken by another process; "
                    f"remove {self._state_file} to pick new ports"
                )
        self._write_files()
        self._proc = start_detached(
            [binary, str(self.config_file)],
            cwd=self.base_dir,
            console_log=self.log_file,
            die_with_parent=self.die_with_parent,
        )
        self._pid_file.write_text(f"{self._proc.pid}\n")
        self._wait_ready(timeout)
        return self

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM (Redis fsyncs its AOF on the way out), then SIGKILL after ``grace_s``."""
        pid = read_pid(self._pid_file)
        if pid is not None:
            terminate(pid, self._marker, self._proc, grace_s=grace_s)
        self._proc = None
        self._pid_file.unlink(missing_ok=True)
        wait_port_closed(self.port)

    def restart(self, timeout: float = 20.0) -> LocalRedis:
        """Stop and start again on the same port and data."""
        self.stop()
        return self.start(timeout)

    def wipe(self) -> None:
        """Stop and delete config, data and log."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- internals --------------------------------------------------------------------
    def _url(self, scheme: str, port: int) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{LOOPBACK}:{port}/0"

    def _write_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._recorded_port = self.port
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

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._running():
                raise ServiceSetupError(
                    f"redis-server exited while starting; log tail ({self.log_file}):\n"
                    + tail(self.log_file)
                )
            if self._ping():
                return
            time.sleep(0.05)
        self.stop(grace_s=5.0)
        raise ServiceSetupError(
            f"redis-server did not answer PING within {timeout:.0f} s; "
            f"log tail ({self.log_file}):\n" + tail(self.log_file)
        )

    def _running(self) -> bool:
        # Right after fork the child's /proc cmdline is still Python's, so a process we
        # started ourselves is judged by its Popen handle.
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
