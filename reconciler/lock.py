"""One apply at a time per compose project: an advisory `flock` on a per-project lock file.

The file records its holder (pid, host, start time) for the message a second apply prints.
The kernel drops the lock when its holder dies, even by SIGKILL; holder details still in the
file then mean the last holder died without releasing, and the takeover is logged.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import LockHeldError
from reconciler.logs import get_logger

__all__ = ["LockHeldError", "lock_directory", "project_lock"]

_log = get_logger(__name__)


def lock_directory() -> Path:
    """Where lock files live: $RECONCILER_LOCK_DIR, else a per-machine temporary directory."""
    configured = os.environ.get("RECONCILER_LOCK_DIR")
    return Path(configured) if configured else Path("/tmp") / f"reconciler-locks-{os.getuid()}"  # noqa: S108 - per-user directory, mode 0700


@contextmanager
def project_lock(
    project: str,
    *,
    timeout: float = 0.0,
    directory: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold the project's lock for the block; wait up to `timeout` s, then raise LockHeldError."""
    directory = directory or lock_directory()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{project}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by child processes
    try:
        _acquire(fd, path, project, timeout, sleep)
        previous = _read_holder(fd)
        if previous:
            _log.warning("took over a lock left by a dead process", project=project, **previous)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write(fd, json.dumps(holder))
        try:
            yield
        finally:
            _write(fd, "")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(
    fd: int, path: Path, project: str, timeout: float, sleep: Callable[[float], None]
) -> None:
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not told and timeout:  # a long wait, for a live view
                told = True
                _log.debug("waiting for the lock", project=project, timeout=timeout)
            if time.monotonic() >= deadline:
                holder = _read_holder(fd) or {}
                who = (
                    f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                    f"since {holder.get('started', '?')}"
                )
                waited = f" after waiting {timeout:g} s" if timeout else ""
                raise LockHeldError(
                    f"another apply holds the lock of project {project!r}{waited}: {who} ({path})"
                ) from None
            sleep(0.2)


def _read_holder(fd: int) -> dict[str, object]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())
    os.fsync(fd)
