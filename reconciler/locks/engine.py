"""One apply (or down) at a time per project on a remote engine: a lock held BY the engine.

Two operators on two machines driving one remote engine (ssh:// or tcp://, or a context whose
endpoint is one) cannot see each other's host-local lock files (`reconciler.locks.local`), so the
lock lives on the target engine. For a local engine the host-local flock stays as it is.

The lock is a container named `reconciler-lock-<project>` (a project name longer than 128
characters becomes a readable prefix and 16 hex digits of its sha256, as the lock file's name
does: `reconciler.locks.local.hashed_name`), started by the holder with
`docker run --interactive --rm --pull never --name reconciler-lock-<project> --network none
--label reconciler.lock.*=... reconciler-lock:1 /busybox awk 'BEGIN {print the id} {next}'`:

- **Atomic.** The engine reserves a container name atomically when it creates the container:
  a create that fails with a name conflict means the lock is held (or was, see stale below).
  The create is a mutation and is never retried once it may have started (a timeout or a lost
  connection fails the run); a new attempt follows only an inspection showing the name free.
- **The holder** (user, host, pid, start time, reconciler version, project) is in its labels:
  the refusal names it ("another apply holds the lock of project 'x' on engine ssh://...:
  user@host pid N since T").
- **Alive exactly as long as its holder and its connection.** awk reads its stdin to the end.
  That stdin is attached to the holder's docker CLI (`--interactive`: the engine closes the
  container's stdin when that attachment ends), whose own stdin is a pipe whose only write end
  the holder process holds (close-on-exec: no other child inherits it). The holder dying, even
  by SIGKILL, closes the pipe (and kills the CLI by its parent-death signal); the ssh
  connection dropping or the tcp connection resetting ends the attachment on the engine's
  side. Either way awk sees the end of its input, the container exits, and `--rm` makes the
  engine remove it: the name is free again, within a second, with no heartbeat, lease or clock
  to tune. A run that sees its lock's CLI end (`EngineLockGuard.check`, before every step)
  stops with `LockLostError` rather than change an engine it no longer holds.
- **Release** closes the pipe: the CLI returns once the engine removed the container (`--rm`),
  costing no further docker call. When that fails (the connection is gone), the container is
  removed by id; a failure to reach the engine then only warns, as the container ends with its
  connection anyway.
- **Stale locks** are taken over with a warning naming the old holder: a container of that
  name that is `exited` or `dead` (the engine restarted while it ran, or its removal failed) is
  removed by id (never `--force`, so a running lock is never removed) and the create tried
  again; one that is `created` may be a holder between create and start, so it is stale only
  when the same container is still `created` `STARTING_GRACE` seconds later (a CLI killed
  between the two). A `running` (or paused) one is held: refused at once, or waited for up to
  `lock_timeout` seconds, polling every second.
- **The image** (`reconciler-lock:1`) needs no registry: when the engine lacks it, `docker
  run --pull never` fails at once with nothing created, and a one-file image FROM scratch,
  this host's static busybox, is imported (`docker image import`, as rootfs base images are)
  over the same connection; the run is then tried again. It must match the engine's
  architecture (Debian's busybox-static of the same one).

Seeing and removing it by hand: `docker -H URL container ls --filter name=reconciler-lock-`
shows the holder in its labels; `docker -H URL container rm --force reconciler-lock-PROJECT`
breaks a lock (its holder's next step then stops with `LockLostError`).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import socket
import struct
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Protocol, TypeVar

from reconciler.docker.adapter import LockFacts, LockImageMissing, LockNameInUse
from reconciler.errors import (
    ApplyError,
    DockerError,
    LockHeldError,
    LockLostError,
    StopRequested,
)
from reconciler.locks.local import hashed_name
from reconciler.logs import get_logger
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.poll import Poll

__all__ = [
    "LOCK_IMAGE",
    "STARTING_GRACE",
    "EngineLockGuard",
    "engine_lock",
    "is_remote",
    "lock_container_name",
]

_log = get_logger(__name__)

LOCK_IMAGE = "reconciler-lock:1"
LABEL = "reconciler.lock"
# awk as the lock's only process: prints the container's id (its HOSTNAME) once it runs, then
# reads stdin to its end. (`{ next }`: busybox awk skips reading input for an empty rule.)
COMMAND = ("/busybox", "awk", 'BEGIN { print ENVIRON["HOSTNAME"]; fflush() } { next }')
STARTING_GRACE = 5.0  # a `created` lock container still `created` this much later is stale
_POLL = 1.0  # while waiting for a held lock
_STALE = frozenset({"exited", "dead"})
_REMOTE_SCHEMES = ("ssh://", "tcp://")
_CONTAINER_NAME_CHARS = "a-zA-Z0-9_.-"  # after the `reconciler-lock-` prefix, as docker allows


class HeldLock(Protocol):
    """A running lock container, as the adapter returns it."""

    @property
    def container_id(self) -> str: ...

    @property
    def running(self) -> bool: ...


_H = TypeVar("_H", bound=HeldLock)


class LockEngine(Protocol[_H]):
    """What the engine lock needs of the docker adapter (`DockerAdapter`)."""

    stop: StopToken

    def lock_start(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        command: Sequence[str],
        *,
        timeout: float = ...,
    ) -> _H: ...

    def lock_inspect(self, name: str) -> LockFacts | None: ...

    def lock_remove(self, container_id: str, *, force: bool = False) -> bool: ...

    def lock_release(self, held: _H, *, timeout: float = ...) -> None: ...

    def import_rootfs(
        self, tarball: Path, reference: str, labels: dict[str, str], *, engine_lock: bool = False
    ) -> None: ...


def is_remote(endpoint: str) -> bool:
    """True for an engine reached over the network (ssh://, tcp://): its lock is the engine's."""
    return endpoint.lower().startswith(_REMOTE_SCHEMES)


def lock_container_name(project: str) -> str:
    """The lock container's name for a compose project: `reconciler-lock-<project>`, with a long
    project name (or one with characters a container name cannot hold) shortened to a readable
    prefix and a digest, as the lock file's name is (`reconciler.locks.local.hashed_name`)."""
    return f"reconciler-lock-{hashed_name(project, allowed=_CONTAINER_NAME_CHARS)}"


class EngineLockGuard:
    """The held engine lock, for the run to check before each change."""

    def __init__(self, held: HeldLock, project: str, engine: str) -> None:
        self.held = held
        self.project = project
        self.engine = engine

    def check(self) -> None:
        """Raise `LockLostError` when the lock's container (or its connection) ended."""
        if not self.held.running:
            raise LockLostError(
                f"lost the lock of project {self.project!r} on engine {self.engine}: its "
                "container ended (the connection to the engine dropped, or it was removed by "
                "hand); stopped before the next change"
            )


@contextmanager
def engine_lock(
    docker: LockEngine[_H],
    project: str,
    *,
    engine: str,
    timeout: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[EngineLockGuard]:
    """Hold the project's lock on the engine for the block (see the module doc).

    `engine` names it in messages. Waits up to `timeout` s for a held lock, then raises
    `LockHeldError` naming its holder; `sleep` waits (the run's stop-aware sleep).
    """
    held = _acquire(docker, project, engine, timeout=timeout, sleep=sleep, clock=clock)
    try:
        yield EngineLockGuard(held, project, engine)
    finally:
        _release(docker, held, project, engine)


def _acquire(
    docker: LockEngine[_H],
    project: str,
    engine: str,
    *,
    timeout: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> _H:
    name = lock_container_name(project)
    labels = _holder_labels(project)
    poll = Poll(timeout, delay=_POLL, clock=clock, sleep=sleep)
    imported = told = False
    created: str | None = None  # the id of a `created` container already given its grace
    while True:
        try:
            held = docker.lock_start(name, LOCK_IMAGE, labels, COMMAND)
        except LockImageMissing:
            if imported:
                raise
            _import_image(docker, engine)
            imported = True
            continue
        except LockNameInUse:
            pass
        else:
            _log.debug("engine lock taken", project=project, engine=engine, container=name)
            return held
        found = docker.lock_inspect(name)
        if found is None or found.status == "removing":  # released meanwhile: try again
            poll.wait(0.2)
            continue
        if found.status == "created" and found.id != created:
            created = found.id  # maybe a holder between create and start: look again later
            poll.wait(STARTING_GRACE)
            continue
        if found.status in _STALE or found.status == "created":
            _log.warning(
                "took over the engine lock of a holder that is gone",
                project=project,
                engine=engine,
                container=name,
                state=found.status,
                holder=_holder(found),
            )
            docker.lock_remove(found.id)
            continue
        if poll.expired():
            waited = f" after waiting {timeout:g} s" if timeout else ""
            raise LockHeldError(
                f"another apply holds the lock of project {project!r} on engine "
                f"{engine}{waited}: {_holder(found)} (container {name})"
            )
        if not told:
            told = True
            _log.info("waiting for the engine lock", project=project, holder=_holder(found))
        poll.wait()


def _release(docker: LockEngine[_H], held: _H, project: str, engine: str) -> None:
    try:
        docker.lock_release(held)
    except (DockerError, StopRequested) as error:
        _log.warning(
            "could not release the engine lock; it ends with its connection",
            project=project,
            engine=engine,
            error=str(error),
        )
    else:
        _log.debug("engine lock released", project=project, engine=engine)


def _holder_labels(project: str) -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a container's user)
        user = str(os.getuid())
    try:
        version = metadata.version("reconciler")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        f"{LABEL}.project": project,
        f"{LABEL}.user": user,
        f"{LABEL}.host": socket.gethostname(),
        f"{LABEL}.pid": str(os.getpid()),
        f"{LABEL}.started": datetime.now(UTC).isoformat(timespec="seconds"),
        f"{LABEL}.version": version,
    }


def _holder(found: LockFacts) -> str:
    """`user@host pid N since T` from a lock container's labels."""

    def label(key: str) -> str:
        return found.labels.get(f"{LABEL}.{key}") or "?"

    return f"{label('user')}@{label('host')} pid {label('pid')} since {label('started')}"


def _import_image(docker: LockEngine[_H], engine: str) -> None:
    """Import `LOCK_IMAGE` onto the engine: this host's static busybox alone, FROM scratch."""
    busybox = _static_busybox()
    digest = hashlib.sha256(busybox.read_bytes()).hexdigest()
    _log.info("importing the engine lock's image", engine=engine, image=LOCK_IMAGE)
    with tempfile.TemporaryDirectory(prefix="reconciler-lock-") as directory:
        tarball = Path(directory) / "lock.tar"
        with tarfile.open(tarball, "w") as tar, busybox.open("rb") as binary:
            info = tar.gettarinfo(str(busybox), arcname="busybox")
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "root", "root"
            tar.addfile(info, binary)
        docker.import_rootfs(
            tarball,
            LOCK_IMAGE,
            {f"{LABEL}.image": "1", f"{LABEL}.busybox": f"sha256:{digest}"},
            engine_lock=True,
        )


def _static_busybox() -> Path:
    """This host's busybox, which must be statically linked (no ELF interpreter)."""
    found = shutil.which("busybox") or "/bin/busybox"
    path = Path(found)
    if not path.is_file():
        raise ApplyError(
            f"the engine lacks the lock image {LOCK_IMAGE} and this host has no busybox to make "
            "it from (Debian: apt-get install busybox-static)"
        )
    if _has_interpreter(path):
        raise ApplyError(
            f"{path} is dynamically linked; the engine lock's image {LOCK_IMAGE} needs a static "
            "busybox (Debian: apt-get install busybox-static)"
        )
    return path


_PT_INTERP = 3


def _has_interpreter(path: Path) -> bool:
    """True when the 64-bit little-endian ELF at `path` names a program interpreter."""
    with path.open("rb") as binary:
        header = binary.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False  # not a 64-bit little-endian ELF: let the engine judge it
        phoff = struct.unpack_from("<Q", header, 0x20)[0]
        entsize, count = struct.unpack_from("<HH", header, 0x36)
        for index in range(count):
            binary.seek(phoff + index * entsize)
            if struct.unpack("<I", binary.read(4))[0] == _PT_INTERP:
                return True
    return False
