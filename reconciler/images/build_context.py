"""Content digest of an image's build inputs, stored on the image as a label.

The digest covers every file docker would send (`.dockerignore` honoured as moby's pattern
matcher does it, see `reconciler.images.dockerignore`), the Dockerfile, the build args and
the target, so the images step rebuilds exactly when one of them changed. The files reconciler
edits itself (the governed compose file, its env files, the state's `files:`) are left out even
when they sit in the context: counting them would make every pin or key edit rebuild every
image built from that context. Pure file reading, no docker calls.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection
from pathlib import Path

from reconciler.docker.facts import BuildConfig
from reconciler.errors import InputError, Location
from reconciler.images.dockerignore import (
    DockerignoreError,
    PatternMatcher,
    exclude_paths,
    read_patterns,
)
from reconciler.runtime.files import decode_utf8, open_regular, read_bytes, read_optional_bytes

__all__ = ["DIGEST_LABEL", "context_digest", "ignore_patterns"]

DIGEST_LABEL = "io.reconciler.context-digest"
_CHUNK = 1 << 20


def context_digest(build: BuildConfig, *, compose_file: Path, edited: Collection[Path] = ()) -> str:
    """sha256 over the build context as docker filters it, the Dockerfile, args and target,
    leaving out the compose file and the `edited` files (those reconciler edits)."""
    context = build.context
    if not context.is_dir():
        raise InputError(f"build context {context} is not a directory", Location(compose_file))
    dockerfile = build.dockerfile
    try:
        dockerfile_bytes = read_bytes(dockerfile, "Dockerfile")
    except FileNotFoundError:
        raise InputError(f"Dockerfile {dockerfile} not found", Location(compose_file)) from None
    digest = hashlib.sha256()
    digest.update(b"dockerfile\0" + dockerfile_bytes + b"\0")
    for key, value in sorted(build.args.items()):
        digest.update(f"arg\0{key}\0{value}\0".encode())
    digest.update(f"target\0{build.target or ''}\0".encode())
    skip = {_relative_to(path, context) for path in (compose_file, *edited)} - {None}
    for relative in _included_files(context, dockerfile):
        if relative in skip:
            continue
        path = context / relative
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode) & 0o111  # docker keeps the executable bits
        digest.update(f"file\0{relative}\0{mode:o}\0".encode())
        if stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(path).encode() + b"\0")
        elif stat.S_ISREG(info.st_mode):
            digest.update(_file_digest(path, info) + b"\0")
    return "sha256:" + digest.hexdigest()


# Images often share one context (a wheelhouse of hundreds of MB): hash each file once per
# process, keyed so that any change to the file (size, mtime, inode) is hashed again.
_FILE_DIGESTS: dict[tuple[str, int, int, int], bytes] = {}


def _file_digest(path: Path, info: os.stat_result) -> bytes:
    key = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
    cached = _FILE_DIGESTS.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with open_regular(path, "build context file") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        cached = _FILE_DIGESTS[key] = digest.digest()
    return cached


def _included_files(context: Path, dockerfile: Path) -> list[str]:
    patterns = ignore_patterns(context)
    try:
        included = exclude_paths(
            str(context), patterns, dockerfile=_relative_to(dockerfile, context)
        )
    except DockerignoreError as error:  # the Dockerfile's own name is not a valid pattern
        raise InputError(str(error), Location(dockerfile)) from None
    files = [
        name for name in included if not (context / name).is_dir() or (context / name).is_symlink()
    ]
    return sorted(files)


def ignore_patterns(context: Path) -> list[str]:
    """The patterns of the context's `.dockerignore`, read as docker reads them (none when it
    has none); a pattern docker refuses is an InputError at the file."""
    ignore_file = context / ".dockerignore"
    raw = read_optional_bytes(ignore_file, ".dockerignore")
    if raw is None:
        return []
    patterns = read_patterns(decode_utf8(raw, ignore_file))
    try:
        PatternMatcher(patterns)
    except DockerignoreError as error:
        raise InputError(str(error), Location(ignore_file)) from None
    return patterns


def _relative_to(path: Path, directory: Path) -> str | None:
    """`path` relative to `directory` in docker's slash form, or None when outside it."""
    resolved, base = path.resolve(), directory.resolve()
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else None
