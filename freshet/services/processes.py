"""Detached service processes: start in their own session, find again by pid, stop.

A service started by ``freshet services up`` must outlive the command, so it runs in
its own process group and is found later through a pid file. Before signalling a pid
we check its command line, so a recycled pid of an unrelated process is never hit.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def start_detached(
    cmd: Sequence[str], cwd: Path, console_log: Path, die_with_parent: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session with no stdin; stdout and stderr go to a file.

    With ``die_with_parent`` the child gets SIGTERM when the process that started it
    dies (Linux ``PR_SET_PDEATHSIG``): a test run killed hard leaves no broker behind.
    """
    console_log.parent.mkdir(parents=True, exist_ok=True)
    with console_log.open("ab") as out:
        return subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_term_with_parent if die_with_parent else None,
        )


def _term_with_parent() -> None:
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def cmdline(pid: int) -> str:
    """The process's command line joined by spaces, or "" if it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def pid_matches(pid: int | None, marker: str) -> bool:
    """Whether ``pid`` is alive and its command line contains ``marker``."""
    return pid is not None and pid > 0 and marker in cmdline(pid)


def terminate(
    pid: int,
    marker: str,
    proc: subprocess.Popen[bytes] | None = None,
    grace_s: float = 20.0,
) -> None:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL it.

    ``proc`` is the Popen object when this process started it; waiting on it reaps the
    child so it does not linger as a zombie.
    """
    if not pid_matches(pid, marker):
        _reap(proc)
        return
    _signal_group(pid, signal.SIGTERM)
    if _wait_gone(pid, marker, proc, grace_s):
        return
    _signal_group(pid, signal.SIGKILL)
    _wait_gone(pid, marker, proc, 5.0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _wait_gone(pid: int, marker: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(proc)
        if not pid_matches(pid, marker):
            return True
        time.sleep(0.1)
    return False


def _reap(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.poll()


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def read_state(path: Path) -> dict[str, Any]:
    """A service's small JSON state file (ports, ids); empty when missing or broken."""
    try:
        obj = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}
