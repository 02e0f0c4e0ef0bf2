"""Lay out a case's files (regular files, FIFOs, sockets, symlinks, devices, sparse files) and
take snapshots of directory trees that never open a special file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Entry", "Tree", "expand", "lay_out", "snapshot", "write_entry"]

_CHUNK = 1 << 20


def expand(text: str, placeholders: Mapping[str, str]) -> str:
    """`text` with each placeholder (such as `@CASE@`) replaced by its value."""
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    return text


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    """chdir into `directory` for the block (AF_UNIX paths are limited to 108 bytes)."""
    before = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def write_entry(path: Path, spec: Any, placeholders: Mapping[str, str]) -> None:
    """Create one entry: text (a str), or {hex|fifo|socket|symlink|dir|chardev|sparse: ...}."""
    if spec is None:  # a default left out on purpose
        return
    if isinstance(spec, str):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(expand(spec, placeholders).encode("utf-8"))
        return
    (kind, value), *rest = spec.items()
    assert not rest, f"one kind per entry: {spec}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "hex":
        path.write_bytes(bytes.fromhex(value))
    elif kind == "bom_text":
        path.write_bytes(b"\xef\xbb\xbf" + expand(value, placeholders).encode("utf-8"))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with _inside(path.parent), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
            bound.bind(path.name)  # the socket file stays after the close
    elif kind == "symlink":
        os.symlink(expand(value, placeholders), path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "chardev":
        major, minor = value
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(major, minor))
    elif kind == "sparse":
        with path.open("wb") as handle:
            handle.truncate(int(value))
    else:
        raise AssertionError(f"unknown entry kind {kind!r} for {path}")


def lay_out(directory: Path, entries: Mapping[str, Any], placeholders: Mapping[str, str]) -> None:
    """Create `entries` (relative path -> spec) below `directory`, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, spec in entries.items():
        write_entry(directory / expand(name, placeholders), spec, placeholders)


@dataclass(frozen=True)
class Entry:
    """What a snapshot knows of one path: its kind, and its content digest or link target."""

    kind: str  # file, dir, symlink, fifo, socket, chardev, blockdev
    detail: str = ""  # sha256 and mode of a file, link target, device number


Tree = dict[str, Entry]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_SPECIAL = {
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
}


def _entry(path: Path) -> Entry:
    info = path.lstat()
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return Entry("symlink", os.readlink(path))
    if stat.S_ISDIR(mode):
        return Entry("dir", f"{stat.S_IMODE(mode):o}")
    if stat.S_ISREG(mode):  # the only kind ever opened
        return Entry("file", f"{_file_digest(path)} {stat.S_IMODE(mode):o}")
    kind = _SPECIAL.get(stat.S_IFMT(mode), "other")
    device = f"{os.major(info.st_rdev)},{os.minor(info.st_rdev)}" if kind.endswith("dev") else ""
    return Entry(kind, device)


def snapshot(directory: Path) -> Tree:
    """Every path below `directory` (relative, symlinks not followed) with its `Entry`."""
    tree: Tree = {}
    if not directory.exists():
        return tree
    for root, dirs, names in os.walk(directory):
        for name in [*dirs, *names]:
            path = Path(root) / name
            tree[str(path.relative_to(directory))] = _entry(path)
    return tree
