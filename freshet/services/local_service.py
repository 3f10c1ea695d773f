"""What the local broker and the local Redis share: one process rooted at a folder.

The folder keeps a state file (the ports chosen, so a restart or a later ``freshet
services down`` finds the same process), a pid file, the config and the logs. A
subclass says how to write the config, which command to run and when the process
serves; the lifecycle (start once, refuse a taken port, stop, restart, wipe) is here.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

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


class LocalService:
    """One service process rooted at ``base_dir``; subclasses fill in the service.

    Class attributes name it in messages (``title``, ``noun``, ``ready_words``), its
    pid file (``pid_name``), how often start-up polls readiness (``poll_s``) and the
    default waits of ``start`` and ``stop``.
    """

    title = "service"
    noun = "service"
    ready_words = "become ready"
    pid_name = "service.pid"
    poll_s = 0.2
    start_timeout_s = 60.0
    stop_grace_s = 20.0

    def __init__(self, base_dir: Path, port: int | None, die_with_parent: bool) -> None:
        self.base_dir = Path(base_dir).resolve()
        #: The state file as found at construction (ports, ids chosen before).
        self.saved_state: dict[str, Any] = read_state(self._state_file)
        # The port a running process of this folder listens on, as last written down.
        self._recorded_port = int(self.saved_state.get("port", 0))
        self.port: int = port or self._recorded_port or free_port()
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what a subclass provides -------------------------------------------------------
    @property
    def config_file(self) -> Path:
        raise NotImplementedError

    @property
    def log_file(self) -> Path:
        raise NotImplementedError

    @property
    def console_file(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.log_file

    @property
    def _marker(self) -> str:
        """What the process's command line holds, to tell it from a reused pid."""
        return str(self.config_file)

    def _extra_ports(self) -> tuple[int, ...]:
        """Ports besides ``port`` the process listens on (0: none)."""
        return ()

    def _command(self) -> list[str]:
        """The command line; raise ``ServiceSetupError`` where its program is missing."""
        raise NotImplementedError

    def _write_files(self) -> None:
        raise NotImplementedError

    def _before_launch(self) -> int:
        """Last set-up after the files are written; the log offset to watch from."""
        return 0

    def _ready(self, log_offset: int) -> bool:
        raise NotImplementedError

    def _log_tails(self) -> str:
        return tail(self.log_file)

    # --- paths ------------------------------------------------------------------------
    @property
    def _pid_file(self) -> Path:
        return self.base_dir / self.pid_name

    @property
    def _state_file(self) -> Path:
        return self.base_dir / "state.json"

    # --- public API -------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        """Whether this folder holds a service started before (ports chosen, config written)."""
        return self._state_file.exists()

    @property
    def pid(self) -> int | None:
        pid = read_pid(self._pid_file)
        return pid if pid_matches(pid, self._marker) else None

    def start(self, timeout: float | None = None) -> Self:
        """Start the process (a no-op if it already runs) and wait until it serves."""
        timeout = self.start_timeout_s if timeout is None else timeout
        if self.pid is not None:
            if self._recorded_port != self.port:
                raise ServiceSetupError(
                    f"the {self.noun} in {self.base_dir} already runs on port "
                    f"{self._recorded_port}; stop it before choosing another port"
                )
            self._wait_ready(timeout, log_offset=0)
            return self
        cmd = self._command()
        for port in (self.port, *self._extra_ports()):
            if port and port_open(port):
                raise ServiceSetupError(
                    f"port {port} on {LOOPBACK} is taken by another process; "
                    f"remove {self._state_file} to pick new ports"
                )
        self._recorded_port = self.port
        self._write_files()
        offset = self._before_launch()
        self._proc = start_detached(
            cmd,
            cwd=self.base_dir,
            console_log=self.console_file,
            die_with_parent=self.die_with_parent,
        )
        self._pid_file.write_text(f"{self._proc.pid}\n")
        self._wait_ready(timeout, log_offset=offset)
        return self

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; wait until the port is closed."""
        pid = read_pid(self._pid_file)
        if pid is not None:
            grace = self.stop_grace_s if grace_s is None else grace_s
            terminate(pid, self._marker, self._proc, grace_s=grace)
        self._proc = None
        self._pid_file.unlink(missing_ok=True)
        wait_port_closed(self.port)

    def restart(self, timeout: float | None = None) -> Self:
        """Stop and start again on the same ports and data."""
        self.stop()
        return self.start(timeout)

    def wipe(self) -> None:
        """Stop and delete config, data and logs."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- internals --------------------------------------------------------------------
    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._running():
                raise ServiceSetupError(
                    f"{self.title} exited while starting; log tail ({self.log_file}):\n"
                    + self._log_tails()
                )
            if self._ready(log_offset):
                return
            time.sleep(self.poll_s)
        self.stop(grace_s=5.0)
        raise ServiceSetupError(
            f"{self.title} did not {self.ready_words} within {timeout:.0f} s; "
            f"log tail ({self.log_file}):\n" + tail(self.log_file)
        )

    def _running(self) -> bool:
        # Right after fork the child's /proc cmdline is still Python's, so a process we
        # started ourselves is judged by its Popen handle, not by its command line.
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None
