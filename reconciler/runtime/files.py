"""The one door for files read or written on the user's behalf: a bounded reader, an atomic writer.

Every file a run reads because the user pointed at it (state, fleet and plan files, the compose
file, env files, `files:` targets and sources, baselines, secret files, Dockerfiles,
`.dockerignore`, build-context files) goes through `read_bytes` / `read_text` / `open_regular`,
and every file a run writes (the compose file, `files:` targets, env files, plan files, reports,
results, records) through `write_atomic`. Both treat the path as hostile until checked:

- only regular files are read; a FIFO, device, socket or directory is bad input naming the
  path and its kind, found without ever blocking (the open is `O_NONBLOCK`);
- a read stops at the cap of its kind (`CAPS`), and the message names the cap;
- given a root, a path whose real target (symlinks resolved) lies outside it is refused before
  a byte of it is read, and so is a symlink loop;
- text that is not UTF-8 is bad input at file:line:column;
- a write never replaces a non-regular file, writes through a symlink only to a target inside
  the root (and then writes the target, keeping the link), never writes onto one of the run's
  own inputs, and creates its temporary file itself (`O_TMPFILE`, else `O_EXCL` under a name
  it keeps), so that on failure it removes exactly that file and nothing else.

Refusals are `InputError` (exit 3); a write that fails midway (disk full, read-only) raises
`FileWriteError` (exit 1) with the original file untouched (or, when only the directory's
fsync after the rename failed, saying that the new bytes are in place).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from reconciler.errors import ApplyError, InputError, Location, os_error_reason

__all__ = [
    "CAPS",
    "PRIVATE_DIRECTORY_MODE",
    "PRIVATE_FILE_MODE",
    "SHARED_FILE_MODE",
    "FileWriteError",
    "check_inside",
    "check_output",
    "decode_utf8",
    "file_kind",
    "open_regular",
    "read_bytes",
    "read_optional_bytes",
    "read_text",
    "same_file",
    "write_atomic",
]

_MB = 1 << 20
# The most each kind of file may hold. A state file has tens of lines; compose files of
# hundreds of services stay under 1 MB; managed files and records are small configuration.
CAPS: dict[str, int] = {
    "state file": 1 * _MB,
    "fleet file": 1 * _MB,
    "plan file": 16 * _MB,
    "compose file": 16 * _MB,
    "env file": 1 * _MB,
    "file": 16 * _MB,
    "source file": 16 * _MB,
    "baseline": 16 * _MB,
    "secret file": 1 * _MB,
    "Dockerfile": 1 * _MB,
    ".dockerignore": 1 * _MB,
    "record": 16 * _MB,
}
_DEFAULT_CAP = 16 * _MB

# The file-mode policy, in one place. What reconciler keeps for itself (records, keys, lock
# files) is the user's alone; a file it writes for the user keeps its mode, and a new one is
# readable by all (plan files, reports, managed files without a `mode:`).
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
SHARED_FILE_MODE = 0o644


class FileWriteError(ApplyError):
    """A write failed midway (disk full, read-only file system): the target kept its old bytes;
    or, `replaced`, only making the rename durable failed: the new bytes are in place."""

    def __init__(self, path: Path, reason: str, *, replaced: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.replaced = replaced
        outcome = (
            "its new bytes are in place, but a crash could still lose them"
            if replaced
            else "the file kept its previous bytes"
        )
        super().__init__(f"{path}: cannot write: {reason}; {outcome}")


_KINDS = (
    (stat.S_ISREG, "regular file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISLNK, "symlink"),
)


def file_kind(mode: int) -> str:
    """A person's name for the type of file `mode` describes."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if error.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return os_error_reason(error)


def _nul_free(path: Path, kind: str) -> None:
    if "\0" in str(path):
        shown = str(path).replace("\0", "\\0")
        raise InputError(f"{kind} path contains a NUL byte", Location(Path(shown)))


def check_inside(path: Path, root: Path, kind: str) -> Path:
    """`path`'s real location (symlinks resolved); InputError when it lies outside `root`."""
    _nul_free(path, kind)
    try:
        real = Path(os.path.realpath(path, strict=False))
    except OSError as error:  # realpath(strict=False) raises only for loops on some Pythons
        raise InputError(f"cannot resolve {kind}: {_reason(error)}", Location(path)) from None
    base = Path(os.path.realpath(root))
    if real != base and not real.is_relative_to(base):
        raise InputError(
            f"{kind} resolves to {real}, outside the state's root {base} (a symlink out of "
            "the root; set `allow_outside_root: true` in the state to allow it)",
            Location(path),
        )
    return real


@contextmanager
def open_regular(path: Path, kind: str, *, root: Path | None = None) -> Iterator[BinaryIO]:
    """`path` opened for reading, after checking it is a regular file (inside `root` if given).

    The open never blocks: a FIFO opened `O_NONBLOCK` returns at once and is refused by its
    type. Raises InputError naming the path and what is wrong; FileNotFoundError passes through
    for callers that treat a missing file as a fact.
    """
    _nul_free(path, kind)
    if root is not None:
        check_inside(path, root, kind)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ENXIO:  # opening a socket (or an unconnected device)
            kind_of = _kind_at(path)
            raise InputError(f"{kind} is a {kind_of}, not a regular file", Location(path)) from None
        raise InputError(f"cannot read {kind}: {_reason(error)}", Location(path)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                f"{kind} is a {file_kind(info.st_mode)}, not a regular file", Location(path)
            )
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def _kind_at(path: Path) -> str:
    try:
        return file_kind(os.stat(path).st_mode)
    except OSError:
        return "special file"


def read_optional_bytes(
    path: Path, kind: str, *, root: Path | None = None, cap: int | None = None
) -> bytes | None:
    """The bytes of `path`, or None when it does not exist (see `read_bytes`)."""
    try:
        return read_bytes(path, kind, root=root, cap=cap)
    except FileNotFoundError:
        return None


def read_bytes(path: Path, kind: str, *, root: Path | None = None, cap: int | None = None) -> bytes:
    """The bytes of the regular file `path`, at most the cap of `kind` (InputError beyond it).

    FileNotFoundError passes through, so that each caller says what a missing file means.
    """
    limit = cap if cap is not None else CAPS.get(kind, _DEFAULT_CAP)
    with open_regular(path, kind, root=root) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise InputError(f"cannot read {kind}: {_reason(error)}", Location(path)) from None
    if len(data) > limit:
        raise InputError(
            f"{kind} is larger than its cap of {_size(limit)}; refusing to read it",
            Location(path),
        )
    return data


def read_text(path: Path, kind: str, *, root: Path | None = None, cap: int | None = None) -> str:
    """`read_bytes` decoded as UTF-8 (a BOM is kept); a bad byte is an InputError at its line."""
    return decode_utf8(read_bytes(path, kind, root=root, cap=cap), path)


def decode_utf8(raw: bytes, source: Path) -> str:
    """`raw` as text; a byte that is not UTF-8 is an InputError at its line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise InputError(
            f"not UTF-8: byte 0x{raw[error.start]:02x} cannot be decoded",
            Location(source, line, column),
        ) from None


def _size(limit: int) -> str:
    return f"{limit // _MB} MiB" if limit % _MB == 0 else f"{limit} bytes"


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` are the same file on disk (either may be missing)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _status(path: Path, given: Path, kind: str) -> os.stat_result | None:
    """`lstat` of `path` (None when nothing is there); InputError naming `given` otherwise."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise InputError(f"cannot write {kind}: {_reason(error)}", Location(given)) from None


def _write_target(path: Path, kind: str, root: Path | None, inputs: Iterable[Path]) -> Path:
    """Where a write of `path` must land: itself, or the target of a symlink allowed in root.

    InputError for a non-regular file, a symlink out of the root or a loop, and one of the
    run's own inputs.
    """
    _nul_free(path, kind)
    target = path
    info = _status(path, path, kind)
    if info is not None and stat.S_ISLNK(info.st_mode):
        if root is None:
            raise InputError(
                f"{kind} is a symlink; refusing to write through it (give the real path)",
                Location(path),
            )
        target = check_inside(path, root, kind)
        info = _status(target, path, kind)
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise InputError(
            f"{kind} is a {file_kind(info.st_mode)}; only a regular file is ever replaced",
            Location(path),
        )
    for other in inputs:
        if same_file(target, other) or Path(os.path.abspath(target)) == Path(
            os.path.abspath(other)
        ):
            raise InputError(
                f"{kind} would overwrite {other}, one of this run's own inputs",
                Location(path),
            )
    return target


def check_output(path: Path, kind: str, *, inputs: Iterable[Path] = ()) -> None:
    """Check, before anything changes, that `write_atomic` can write `path`: its directory
    exists and is writable, it is not a non-regular file or a symlink, and not an input."""
    _write_target(path, kind, None, inputs)
    directory = Path(os.path.abspath(path)).parent
    if not directory.is_dir():
        raise InputError(f"{kind}: directory {directory} does not exist", Location(path))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{kind}: directory {directory} is not writable", Location(path))


def write_atomic(
    path: Path,
    data: bytes,
    *,
    kind: str = "file",
    mode: int | None = None,
    root: Path | None = None,
    inputs: Iterable[Path] = (),
) -> None:
    """Replace `path` with `data` so that readers see the old bytes or the new, never a mix.

    The file keeps its mode unless `mode` is given; a new file gets `mode` or 0644. A symlink
    inside `root` is written through (its target replaced, the link kept); see the module's
    docstring for what is refused.
    """
    target = _write_target(path, kind, root, inputs)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = SHARED_FILE_MODE
        except OSError as error:
            raise FileWriteError(path, _reason(error)) from None
    directory = Path(os.path.abspath(target)).parent
    temp: Path | None = None
    replaced = False
    try:
        fd, temp = _create_temp(directory, Path(target).name)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
            if temp is None:  # an O_TMPFILE: give it a name only now, at the last moment
                temp = _link_anonymous(fd, directory, Path(target).name)
        finally:
            os.close(fd)
        os.replace(temp, target)
        temp, replaced = None, True
        _fsync_directory(directory)
    except OSError as error:
        raise FileWriteError(path, _reason(error), replaced=replaced) from None
    finally:
        if temp is not None:
            # Exactly the file this call created, never a pattern.
            with suppress(FileNotFoundError):
                os.unlink(temp)


def _temp_name(directory: Path, name: str) -> Path:
    # A name longer than NAME_MAX would fail; the token alone keeps it unique.
    stem = name if len(name) <= 180 else name[:180]
    return directory / f".{stem}.{os.urandom(6).hex()}.tmp"


def _create_temp(directory: Path, name: str) -> tuple[int, Path | None]:
    """A new file for the bytes: anonymous (`O_TMPFILE`, nothing to clean if killed), else a
    name created with `O_EXCL` that the caller keeps and removes on failure."""
    flags = os.O_WRONLY | os.O_CLOEXEC
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:
            return os.open(directory, flags | tmpfile, 0o600), None
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    for _ in range(16):
        temp = _temp_name(directory, name)
        try:
            return os.open(temp, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), temp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "could not create a unique temporary file")


def _link_anonymous(fd: int, directory: Path, name: str) -> Path:
    # os.link calls linkat(AT_SYMLINK_FOLLOW) only when given a dir fd; plain link() would not
    # follow /proc's magic link and fail with EXDEV.
    directory_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(16):
            temp = _temp_name(directory, name)
            try:
                os.link(f"/proc/self/fd/{fd}", temp, src_dir_fd=directory_fd)
                return temp
            except FileExistsError:
                continue
    finally:
        os.close(directory_fd)
    raise OSError(errno.EEXIST, "could not name the temporary file")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
