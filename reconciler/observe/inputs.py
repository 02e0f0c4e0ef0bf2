"""Input digests: the files a service's container reads that compose's config hash does not cover.

Compose recreates a container when its configuration or image changes, not when the content of
a bind-mounted file or directory, an `env_file` or a `configs:` file changes. Each such input is
digested here (a file by mode and content, a directory by a sorted walk of relative paths, modes
and contents), and after each converged apply the digests are recorded per container ID in
`inputs-<project>.json` under `records.directory()` (the user's state directory). A container
whose recorded digest of an input differs from the current one is drift; a container with no
record (created by someone else: a new ID) is unknown, taken as current, and recorded at the
next apply.

Why a file and not a container label: a label added to the compose model would change compose's
own config hash (and so recreate everything once, and again whenever a digest changes, through
compose rather than through the plan). Why the user's state directory: beside the compose file
or the state it would sit in build contexts (`build: .` would rebuild on every record, and a
`COPY .` would ship it), and the lock directory defaults to /tmp, which a reboot empties while
containers outlive reboots. Records are keyed by project; container IDs are per engine, so a
stale or foreign entry never matches and only leaves a container unknown. The record is read
and written through `reconciler.runtime.records`: a damaged one is a warning and counts as none
(every container unknown), and a write that fails is a warning, never a failed apply.

A read-write bind mount of a directory is left out: the container writes there (a database's
data directory), so a change there is no evidence of drift. Walks are capped (`MAX_ENTRIES`
entries; past `MAX_BYTES` of content, files count by size and mtime): the digest says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler.compose.interpolate import InterpolationError, interpolate
from reconciler.docker.facts import ContainerFacts, InputSource
from reconciler.errors import InputError
from reconciler.runtime import records
from reconciler.runtime.files import open_regular
from reconciler.runtime.records import InputsEntry, InputsRecord

__all__ = [
    "MAX_BYTES",
    "MAX_ENTRIES",
    "InputDigest",
    "env_file_sources",
    "input_label",
    "path_digest",
    "read_record",
    "record_path",
    "service_digests",
    "write_record",
]

MAX_ENTRIES = 5000  # entries of a directory walk that are digested
MAX_BYTES = 64 * 1024 * 1024  # content hashed per input; later files count by size and mtime
_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputDigest:
    """The digest of one input, and why it covers less than everything (empty: it does not)."""

    digest: str
    capped: str = ""


def input_label(path: Path, compose_file: Path) -> str:
    """How plans name an input: relative to the compose file's directory when inside it."""
    base = compose_file.parent
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def service_digests(sources: Iterable[InputSource], compose_file: Path) -> dict[str, InputDigest]:
    """label -> digest of a service's inputs; read-write bind-mounted directories left out."""
    digests: dict[str, InputDigest] = {}
    for source in sources:
        if source.kind == "bind" and not source.read_only and source.path.is_dir():
            continue
        digests[input_label(source.path, compose_file)] = path_digest(source.path)
    return digests


def path_digest(
    path: Path, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES
) -> InputDigest:
    """A file's or directory's digest: type, mode and content of everything under it.

    A missing path has a digest of its own ("missing"): compose, not the plan, complains.
    Symlinks inside a directory count by their target text, never followed; special files
    (sockets, devices) by their type and mode only.
    """
    budget = [max_bytes]
    notes: list[str] = []
    digest = hashlib.sha256()
    try:
        top = path.lstat() if path.is_symlink() and not path.exists() else path.stat()
    except FileNotFoundError:
        return InputDigest("missing")
    except OSError as error:
        return InputDigest(f"unreadable: {error.strerror}")
    if stat.S_ISDIR(top.st_mode):
        digest.update(b"dir\0")
        entries = _walk(path)
        for count, relative in enumerate(entries):
            if count >= max_entries:
                notes.append(f"only the first {max_entries} entries of the directory are digested")
                break
            digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
            _entry(path / relative, digest, budget)
    else:
        _entry(path, digest, budget, follow=True)
    if budget[0] < 0:
        notes.append(
            f"files past the first {max_bytes // (1024 * 1024)} MiB count by size and mtime"
        )
    return InputDigest("sha256:" + digest.hexdigest(), "; ".join(notes))


def _walk(top: Path) -> Iterable[str]:
    """Relative paths under `top`, sorted, directories before their contents; no symlink
    followed. Lazy, so a capped walk stops early."""

    def visit(directory: Path, prefix: str) -> Iterable[str]:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return
        for name in names:
            relative = f"{prefix}{name}"
            yield relative
            child = directory / name
            if child.is_dir() and not child.is_symlink():
                yield from visit(child, relative + "/")

    return visit(top, "")


def _entry(path: Path, digest: Any, budget: list[int], *, follow: bool = False) -> None:
    """Add one entry's type, mode and content (files) or target (symlinks) to `digest`."""
    try:
        info = path.stat() if follow else path.lstat()
    except OSError as error:
        digest.update(f"unreadable {error.strerror}\0".encode())
        return
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        with contextlib.suppress(OSError):
            digest.update(f"link {mode:o} {os.readlink(path)}\0".encode("utf-8", "surrogateescape"))
        return
    if stat.S_ISDIR(info.st_mode):
        digest.update(f"dir {mode:o}\0".encode())
        return
    if not stat.S_ISREG(info.st_mode):
        digest.update(f"special {stat.S_IFMT(info.st_mode):o} {mode:o}\0".encode())
        return
    if info.st_size > budget[0]:
        budget[0] = -1
        digest.update(f"file {mode:o} size {info.st_size} mtime {info.st_mtime_ns}\0".encode())
        return
    budget[0] -= info.st_size
    content = hashlib.sha256()
    try:
        with open_regular(path, "file") as handle:
            while chunk := handle.read(_CHUNK):
                content.update(chunk)
    except (OSError, InputError) as error:
        digest.update(f"file {mode:o} unreadable {error}\0".encode())
        return
    digest.update(f"file {mode:o} {content.hexdigest()}\0".encode())


def env_file_sources(
    text: str, compose_file: Path, environment: Mapping[str, str]
) -> dict[str, tuple[InputSource, ...]]:
    """service -> its `env_file` entries, read from the compose file's text.

    compose's normalised model merges env files into `environment` and drops the key, so the
    paths come from the file itself (merge keys resolved; `extends` from other files is not
    followed). Paths interpolate with `environment` and resolve against the compose file's
    directory. A file that does not load as YAML gives none: compose reports it.
    """
    try:
        document = YAML(typ="safe").load(text)
    except YAMLError:
        return {}
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict):
        return {}
    found: dict[str, tuple[InputSource, ...]] = {}
    for name, spec in services.items():
        entries = spec.get("env_file") if isinstance(spec, dict) else None
        if entries is None:
            continue
        sources = []
        for entry in entries if isinstance(entries, list) else [entries]:
            raw = entry.get("path") if isinstance(entry, dict) else entry
            if not isinstance(raw, str):
                continue
            try:
                resolved = interpolate(raw, environment)
            except InterpolationError:
                continue
            path = Path(resolved)
            path = path if path.is_absolute() else compose_file.parent / path
            sources.append(InputSource("env_file", Path(os.path.normpath(path))))
        found[str(name)] = tuple(sources)
    return found


def record_path(project: str) -> Path:
    """Where the input digests of a project's containers are recorded."""
    return records.directory() / f"inputs-{project}.json"


def read_record(path: Path) -> dict[str, dict[str, str]]:
    """container ID -> input label -> digest, as recorded; empty when there is none, and when
    it cannot be used (a warning, `reconciler.runtime.records`): every container is then unknown,
    taken as current, and recorded at the next converged apply."""
    record = records.load(path, InputsRecord)
    if record is None:
        return {}
    return {cid: dict(entry.inputs) for cid, entry in record.containers.items()}


def write_record(
    path: Path,
    containers: Iterable[ContainerFacts],
    digests: Mapping[str, Mapping[str, InputDigest]],
) -> bool:
    """Record each container's current input digests (only containers with inputs); replace
    the file atomically, and only when its content changes. Returns whether it was written.

    Never raises: a failed write is a warning (`records.save`), and the containers it left
    out are unknown to the next run, as ones made by others are.
    """
    entries = {
        container.id: InputsEntry(
            service=container.service,
            inputs={label: d.digest for label, d in sorted(digests[container.service].items())},
        )
        for container in sorted(containers, key=lambda c: c.id)
        if not container.oneoff and digests.get(container.service)
    }
    if not entries and not path.is_file():
        return False  # nothing to record, and no record to empty
    return records.save(path, InputsRecord(version=1, containers=entries))
