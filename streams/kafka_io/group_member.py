"""Kafka static group membership (KIP-345) for worker processes.

A worker that joins its consumer group with a ``group.instance.id`` the broker already
knows takes that member's partitions back at once: the broker does not wait for the old
member's session to expire, and the rest of the group does not rebalance. So a worker
killed with ``kill -9`` and restarted resumes in about its own start-up time.

The id must be stable across a restart and unique among live workers. ``claim_slot``
gives ``<host>-<n>`` with the lowest ``n`` whose lock file no live process holds: the
kernel drops the lock of a killed process, so its restart claims the same ``n``, and
two workers on one host get different ones.

A static member does not leave the group when it stops (aiokafka sends no LeaveGroup
for it), so an orderly stop would leave its partitions idle for the session timeout.
``leave_group`` removes it by instance id (LeaveGroup v3+); the worker's Faust app calls
it once its consumer has stopped (``streams.runtime.faust_app``), so a planned stop hands the
partitions on at once, as a dynamic member would.
"""

from __future__ import annotations

import fcntl
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from streams.kafka_io.kafka_config import KafkaConfig, kafka_python_kwargs

log = logging.getLogger("freshet.worker")

MAX_SLOTS = 256


@dataclass
class Slot:
    """A claimed instance id; holds its lock file open for the life of the process."""

    instance_id: str
    lock: IO[str]

    def release(self) -> None:
        self.lock.close()


def claim_slot(folder: Path, host: str | None = None) -> Slot:
    """The lowest free ``<host>-<n>`` under ``folder`` (one lock file per ``n``).

    Raises:
        RuntimeError: All ``MAX_SLOTS`` slots are held by live processes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    host = _id_safe(host or socket.gethostname())
    for n in range(MAX_SLOTS):
        lock = (folder / f"slot-{n}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return Slot(f"{host}-{n}", lock)
    raise RuntimeError(f"all {MAX_SLOTS} worker slots in {folder} are taken")


def leave_group(kafka: KafkaConfig, group_id: str, instance_id: str) -> None:
    """Remove the static member ``instance_id`` from ``group_id``; log, never raise.

    Called after an orderly stop, so its partitions move to the other workers now
    rather than after the session timeout. A failure only costs that wait.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import MemberToRemove

    try:
        admin = KafkaAdminClient(**kafka_python_kwargs(kafka, client_id="freshet-leave"))
        try:
            member = MemberToRemove(group_instance_id=instance_id)
            errors = admin.remove_group_members(group_id, [member])
        finally:
            admin.close()
    except Exception as exc:  # the broker may be gone too: the session timeout still ends it
        log.warning(
            "could not leave group %s as %s (%s); its partitions move after the session timeout",
            group_id,
            instance_id,
            type(exc).__name__,
        )
        return
    refused = sorted({e.__name__ for e in errors.values()} - {"NoError"})
    if refused:  # e.g. UnknownMemberIdError: it never joined, or had already expired
        log.info("group %s had no member %s to remove (%s)", group_id, instance_id, refused)
    else:
        log.info("left group %s as static member %s", group_id, instance_id)


def _id_safe(host: str) -> str:
    """A host name as a plain id: letters, digits, ``.``, ``_`` and ``-`` only.

    >>> _id_safe("pod/worker 0")
    'pod-worker-0'
    """
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in host) or "host"
