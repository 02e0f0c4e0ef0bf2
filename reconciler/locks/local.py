"""One apply at a time per compose project: an advisory `flock` on a per-project lock file.

The file records its holder (pid, host, start time) for the message a second apply prints.
The kernel drops the lock when its holder dies, even by SIGKILL; holder details still in the
file then mean the last holder died without releasing, and the takeover is logged.

The lock must never be turned against its user, so nothing in its path is trusted blindly:

- **The directory** is `$RECONCILER_LOCK_DIR` when set, else `$XDG_RUNTIME_DIR/reconciler`
  when XDG_RUNTIME_DIR is an absolute path to a directory, else `/tmp/reconciler-locks-<uid>`.
  It is created with mode 0700, then opened without following a symlink and checked on that
  open descriptor: a real directory (not a symlink, not a file), owned by the current uid.
  The directories reconciler picks itself must also be closed to group and others
  (`mode & 0o077 == 0`); one the user names (`$RECONCILER_LOCK_DIR`, or `directory=`) must
  only be unwritable by them (`mode & 0o022 == 0`). Anything else is refused (`LockError`).
- **The file** is opened relative to that checked directory descriptor with `O_NOFOLLOW`, so a
  planted symlink is never followed, and is then checked on its own descriptor: a regular file
  owned by the current uid with one link. Only that verified descriptor is ever truncated or
  written.
- **Its name** is `<project>.lock` for a short project name of file-name-safe characters (what
  it always was); a longer one, or one with other characters (`/`, NUL), becomes a readable
  prefix, `-`, and the first 16 hex digits of its sha256: `<prefix>-<digest>.lock`.
- **Faults** (full disk, no permission, a file where the directory should be) become
  `LockError` naming the path and the reason, never a bare `OSError`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import LockError, LockHeldError, os_error_reason
from reconciler.logs import ProgressEvent, get_logger
from reconciler.runtime.files import PRIVATE_DIRECTORY_MODE, PRIVATE_FILE_MODE
from reconciler.runtime.poll import Poll

__all__ = [
    "LockError",
    "LockHeldError",
    "hashed_name",
    "lock_directory",
    "lock_file_name",
    "project_lock",
]

_log = get_logger(__name__)

# Names kept as they are: these characters only (compose project names, plus the `@engine-`
# suffix of a fleet target's lock key), and short enough for any file system's NAME_MAX
# (eCryptfs allows only 143 bytes) with room for `.lock`.
_FILE_NAME_CHARS = "A-Za-z0-9._@+-"
_KEEP_MAX = 128
_PREFIX = 60  # readable characters kept ahead of the digest
_DIGEST = 16  # hex digits of sha256: 64 bits, no accidental collision between projects
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def hashed_name(name: str, *, allowed: str = _FILE_NAME_CHARS, limit: int = _KEEP_MAX) -> str:
    """`name` itself when it is only `allowed` characters (a regex character class body) and at
    most `limit` long; else a readable prefix of its allowed characters, `-`, and 16 hex digits
    of its sha256, so that two different names never share one."""
    if len(name) <= limit and re.fullmatch(f"[{allowed}]+", name):
        return name
    readable = re.sub(f"[^{allowed}]+", "-", name)[:_PREFIX].strip("-.")
    # surrogatepass: a name from the environment may hold lone surrogates; it still hashes
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]
    return f"{readable}-{digest}" if readable else digest


def lock_file_name(project: str) -> str:
    """The lock file's name for a project key: `<project>.lock`, hashed when long or unsafe."""
    return f"{hashed_name(project)}.lock"


def lock_directory() -> Path:
    """Where lock files live (see the module doc): $RECONCILER_LOCK_DIR, else
    $XDG_RUNTIME_DIR/reconciler, else the per-user /tmp/reconciler-locks-<uid>."""
    return _chosen_directory()[0]


def _chosen_directory() -> tuple[Path, bool]:
    """The lock directory and whether the user named it (then a looser mode check applies)."""
    configured = os.environ.get("RECONCILER_LOCK_DIR")
    if configured:
        return Path(configured), True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "reconciler", False
    return Path("/tmp") / f"reconciler-locks-{os.getuid()}", False  # noqa: S108 - checked: own, 0700


@contextmanager
def project_lock(
    project: str,
    *,
    timeout: float = 0.0,
    directory: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold the project's lock for the block; wait up to `timeout` s, then raise LockHeldError.

    Raises `LockError` when the lock directory or file is unsafe or cannot be used.
    """
    directory, named = (directory, True) if directory is not None else _chosen_directory()
    path = directory / lock_file_name(project)
    fd = _open_lock_file(directory, path, strict=not named)
    try:
        _acquire(fd, path, project, timeout, sleep)
        try:
            _record_holder(fd, path, project)
            yield
        finally:
            _clear_holder(fd, path)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(directory: Path, path: Path, *, strict: bool) -> int:
    """The lock file's descriptor, opened inside the checked directory and checked itself."""
    dir_fd = _open_directory(directory, strict=strict)
    try:
        fd = os.open(path.name, _FILE_FLAGS, PRIVATE_FILE_MODE, dir_fd=dir_fd)
    except OSError as error:
        raise LockError(f"lock file {path}: {_open_reason(error, path)}") from error
    finally:
        os.close(dir_fd)
    return _checked(fd, f"lock file {path}", lambda: _check_file(path, os.fstat(fd)))


def _open_directory(directory: Path, *, strict: bool) -> int:
    """The lock directory's descriptor: created (0700) when missing, never through a symlink."""
    created = _make_directory(directory)
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as error:
        raise LockError(f"lock directory {directory}: {_open_reason(error, directory)}") from error

    def check() -> None:
        info = os.fstat(fd)
        if created and info.st_uid == os.getuid():
            os.fchmod(fd, PRIVATE_DIRECTORY_MODE)  # exactly 0700 whatever the umask left
            info = os.fstat(fd)
        _check_directory(directory, info, strict=strict)

    return _checked(fd, f"lock directory {directory}", check)


def _checked(fd: int, what: str, check: Callable[[], None]) -> int:
    """`fd` once `check()` passes; when it fails, `fd` is closed and the failure is a
    LockError naming `what`."""
    try:
        check()
    except OSError as error:
        os.close(fd)
        raise LockError(f"{what}: {os_error_reason(error)}") from error
    except LockError:
        os.close(fd)
        raise
    return fd


def _make_directory(directory: Path) -> bool:
    """Create the directory (mode 0700, parents as needed); True when this call created it."""
    try:
        directory.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True)
    except FileExistsError:
        return False  # whatever is there is checked once opened
    except OSError as error:
        raise LockError(f"lock directory {directory}: {os_error_reason(error)}") from error
    return True


def _check_directory(directory: Path, info: os.stat_result, *, strict: bool) -> None:
    """Refuse a lock directory that is not the user's own and closed to others."""
    uid = os.getuid()
    if not stat.S_ISDIR(info.st_mode):
        raise LockError(f"lock directory {directory}: is not a directory")
    if info.st_uid != uid:
        raise LockError(
            f"lock directory {directory}: owned by uid {info.st_uid}, not by this user "
            f"(uid {uid}); another user could plant links in it"
        )
    mode = stat.S_IMODE(info.st_mode)
    forbidden = 0o077 if strict else 0o022
    if mode & forbidden:
        allowed = "mode 0700" if strict else "no group or other write permission"
        raise LockError(
            f"lock directory {directory}: mode {mode:04o} lets others in; it needs {allowed}"
        )


def _check_file(path: Path, info: os.stat_result) -> None:
    """Refuse a lock file that is not a plain file of this user's (nothing else is written)."""
    uid = os.getuid()
    if not stat.S_ISREG(info.st_mode):
        raise LockError(f"lock file {path}: is not a regular file")
    if info.st_uid != uid:
        raise LockError(f"lock file {path}: owned by uid {info.st_uid}, not by this user ({uid})")
    if info.st_nlink != 1:  # a hard link would make the holder record land in another file
        raise LockError(f"lock file {path}: has {info.st_nlink} hard links, not 1")


def _open_reason(error: OSError, path: Path) -> str:
    """Why an open without following links failed, in words: a symlink (ELOOP, or ENOTDIR
    with O_DIRECTORY) or a non-directory is named as such; else the system's reason."""
    try:
        mode: int | None = os.lstat(path).st_mode
    except OSError:
        mode = None  # a parent is the problem: the system's reason says so
    link = mode is not None and stat.S_ISLNK(mode)
    if error.errno == errno.ELOOP or (error.errno == errno.ENOTDIR and link):
        return "is a symlink (never followed)"
    if error.errno == errno.ENOTDIR and mode is not None and not stat.S_ISDIR(mode):
        return "is not a directory"
    return os_error_reason(error)


def _acquire(
    fd: int, path: Path, project: str, timeout: float, sleep: Callable[[float], None]
) -> None:
    poll = Poll(timeout, delay=0.2, sleep=sleep)
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not told and timeout:  # a long wait, for a live view
                told = True
                _log.debug(ProgressEvent.LOCK_WAIT, project=project, timeout=timeout)
            if poll.expired():
                holder = _read_holder(fd, path) or {}
                who = (
                    f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                    f"since {holder.get('started', '?')}"
                )
                waited = f" after waiting {timeout:g} s" if timeout else ""
                raise LockHeldError(
                    f"another apply holds the lock of project {project!r}{waited}: {who} ({path})"
                ) from None
            poll.wait()
        except OSError as error:  # not held elsewhere: flock itself failed (ENOLCK, say)
            raise LockError(f"lock file {path}: {os_error_reason(error)}") from error


def _record_holder(fd: int, path: Path, project: str) -> None:
    """Log a takeover of a dead holder's lock, then write this process as the holder."""
    previous = _read_holder(fd, path)
    if previous:
        _log.warning("took over a lock left by a dead process", project=project, **previous)
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        _write(fd, json.dumps(holder))
    except OSError as error:  # a full disk, say
        raise LockError(
            f"lock file {path}: cannot record the holder: {os_error_reason(error)}"
        ) from error


def _clear_holder(fd: int, path: Path) -> None:
    """Empty the holder record on release; a failure only warns (the flock still goes)."""
    try:
        _write(fd, "")
    except OSError as error:
        _log.warning(
            "could not clear the lock's holder record", path=str(path), error=os_error_reason(error)
        )


def _read_holder(fd: int, path: Path) -> dict[str, object]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
    except OSError as error:
        raise LockError(
            f"lock file {path}: cannot read the holder: {os_error_reason(error)}"
        ) from error
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write(fd: int, text: str) -> None:
    """Replace the holder record: only ever on the verified lock file's own descriptor."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())
    os.fsync(fd)
