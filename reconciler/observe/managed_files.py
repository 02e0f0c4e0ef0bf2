"""Files the state manages beside the compose file (`files:`): what they hold, what they must.

`observe_file` reads one (its bytes, mode, and the bytes of its `source:`); `desired_file` is
pure: the bytes and mode the state asks for, with the YAML edits that get there (through
`reconciler.compose.yaml_set`, the compose editor's splice and re-parse check). The
compose-file step plans and writes them (`reconciler.runtime.files.write_atomic`); observation calls
`desired_file` early so that bad input fails before docker is asked anything.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from reconciler.compose.yaml_set import SetResult, set_values
from reconciler.errors import InputError, Location
from reconciler.runtime.files import (
    SHARED_FILE_MODE,
    decode_utf8,
    read_bytes,
    read_optional_bytes,
)
from reconciler.secrets.redact import looks_secret
from reconciler.state.model import FileSpec, file_format
from reconciler.state.paths import parse_path

__all__ = [
    "DesiredFile",
    "ObservedFile",
    "desired_file",
    "hidden_because",
    "observe_file",
    "read_managed",
]

_DEFAULT_MODE = SHARED_FILE_MODE
# Names that say "key material" although no secret-looking word is in them.
_SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".kdbx")
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


@dataclass(frozen=True)
class ObservedFile:
    """A managed file as observed: its bytes and permission bits (None: it does not exist),
    and the bytes of the state's `source:` file when it has one."""

    path: Path
    data: bytes | None
    mode: int | None
    source_data: bytes | None = None


@dataclass(frozen=True)
class DesiredFile:
    """What a managed file must hold: its bytes, its mode (None: keep it as it is), and for a
    YAML file the edits (and paths already in place) that turn its bytes into these."""

    data: bytes
    mode: int | None
    edits: SetResult | None = None


def observe_file(path: Path, spec: FileSpec, root: Path | None) -> ObservedFile:
    """Read a managed file and its `source:` through the bounded reader (inside `root` when
    given); a missing file is `data=None`, not an error."""
    data, mode = read_managed(path, root)
    source_data = None
    if spec.source is not None:
        try:
            source_data = read_bytes(spec.source, "source file", root=root)
        except FileNotFoundError:
            raise InputError("source file not found", Location(spec.source)) from None
    return ObservedFile(path, data, mode, source_data)


def read_managed(path: Path, root: Path | None) -> tuple[bytes | None, int | None]:
    """A managed file's bytes and permission bits, (None, None) when it does not exist."""
    data = read_optional_bytes(path, "file", root=root)
    if data is None:
        return None, None
    try:
        return data, stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None, None


def desired_file(spec: FileSpec, observed: ObservedFile) -> DesiredFile:
    """The bytes and mode `spec` asks of the observed file (pure; InputError when it cannot)."""
    mode = int(spec.mode, 8) if spec.mode is not None else None
    if spec.content is not None:
        return DesiredFile(spec.content.encode("utf-8"), mode)
    if spec.source is not None:
        assert observed.source_data is not None, "observe_file reads the source"
        return DesiredFile(observed.source_data, mode)
    kind = file_format(observed.path, spec)
    if kind != "yaml":  # the loader refuses the rest; a guard for callers that did not load
        raise InputError(f"{kind} files are not supported yet", Location(observed.path))
    if observed.data is None:
        raise InputError(
            "the file does not exist; `set` edits an existing YAML file (give `content` or "
            "`source` to create one)",
            Location(observed.path),
        )
    text = decode_utf8(observed.data, observed.path)
    values = {parse_path(dotted): value for dotted, value in (spec.values or {}).items()}
    result = set_values(text, values, source=observed.path)
    return DesiredFile(result.text.encode("utf-8"), mode, result)


def hidden_because(path: Path, spec: FileSpec, *contents: bytes | None) -> str | None:
    """Why a whole file's content must never be shown, or None when its diff may be (masked
    line by line like the compose file's).

    A file is secret when its name says so (a secret-looking word such as `password`,
    `secret`, `token` or `key`, or a key-material suffix such as `.pem`), when the state
    gives it an owner-only mode (no group or other bits, e.g. 0600), or when it holds a
    private key.
    """
    name = path.name
    if looks_secret(name) or name.lower().endswith(_SECRET_SUFFIXES):
        return "its name looks secret"
    if spec.mode is not None and int(spec.mode, 8) & 0o077 == 0:
        return f"its mode {spec.mode} is owner-only"
    if any(data is not None and _PRIVATE_KEY.search(data) for data in contents):
        return "it holds a private key"
    return None
