"""The record store: the one way reconciler reads and writes the files it keeps for itself.

| record | file (STATE_DIR: `directory()`) | kept by |
|---|---|---|
| `InputsRecord` | `STATE_DIR/inputs-PROJECT.json` | `reconciler.observe.inputs` |
| `ConfigHashesRecord` | `STATE_DIR/config-hashes-PROJECT.json` | `observe.config_hashes` |
| `SecretsRecord` | `STATE_DIR/PROJECT/secrets.json` | `reconciler.secrets.store` |
| a key (32 bytes) | `STATE_DIR/PROJECT/secrets.key` | `reconciler.secrets.store` |
| a key (32 bytes) | `STATE_DIR/_machine/secrets.key` | `reconciler.secrets.store` |
| `WheelhouseMarker` | `WHEELHOUSE/.reconciler-wheelhouse.json` | `reconciler.images.wheelhouse` |

Records are evidence, never authority. Each is JSON of a versioned pydantic model (strict: no
coercion). A missing record is none. A record that cannot be used is a warning naming the file
and what is wrong, and is then treated as none, so the next write replaces it: not a regular
file (a directory, a FIFO: never opened blocking), over its cap, not UTF-8, not JSON, `null`,
`[]`, another version, a value of the wrong type anywhere. No damaged record ever stops a run:
a record only saves work or remembers what a container was made from, and without it the run
does the work again or takes the container as its plan says (see each record's module).

Writes are atomic (`files.write_atomic`: 0600 unless told, the directory made 0700: the
file-mode policy, `files.PRIVATE_FILE_MODE` and `files.PRIVATE_DIRECTORY_MODE`), and only
when the bytes change. A write that fails (disk full, read-only, a directory in the record's
place) never raises: it is a warning naming the file and what the loss costs (the one exception:
this machine's key for plan files, which must outlive the process, `ensure_key(durable=True)`,
is `RecordError` when it cannot be stored). Records describe
what mutations did (a container's record needs its new ID), so they are written after them, and
a failure to write one never fails an apply whose services converged. The bytes that could not
be written are kept in memory for the rest of the process (`_UNWRITTEN`), so that the same run's
verification sees what it just did; a later process does not, and the warning says what that
costs.
"""

from __future__ import annotations

import json
import os
import secrets as random
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from reconciler.errors import InputError, ReconcilerError, RecordError, os_error_reason
from reconciler.logs import get_logger
from reconciler.runtime.files import (
    PRIVATE_DIRECTORY_MODE,
    PRIVATE_FILE_MODE,
    FileWriteError,
    decode_utf8,
    read_bytes,
    write_atomic,
)

__all__ = [
    "ConfigHashesRecord",
    "InputsEntry",
    "InputsRecord",
    "ReadinessRecord",
    "ReadyEntry",
    "Record",
    "SecretsRecord",
    "WheelhouseMarker",
    "directory",
    "ensure_key",
    "load",
    "read_key",
    "save",
]

_log = get_logger(__name__)
_KIND = "record"  # the files module's kind: its cap, and how its messages name the file
_LOCK = threading.Lock()
# One key made at a time: fleet targets plan in threads, and two threads making this machine's
# key at once would each digest plan files under a key the other then replaces.
_MAKING_KEY = threading.Lock()
# path -> bytes this process meant to write there but could not (see the module docstring)
_UNWRITTEN: dict[str, bytes] = {}


class Record(BaseModel):
    """A record's model: `WHAT` names it in messages, `LOSS` says what a lost write costs."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    WHAT: ClassVar[str] = "record"
    LOSS: ClassVar[str] = "it is made again later"
    VERSION: ClassVar[int] = 1  # the `version` a top-level record must hold

    def encode(self) -> bytes:
        """The record's bytes on disk: indented JSON, keys in the order given."""
        return (json.dumps(self.model_dump(mode="json"), indent=1) + "\n").encode("utf-8")


class InputsEntry(Record):
    """One container's entry: its service, and the digest of each input by label."""

    service: str = ""
    inputs: dict[str, str]


class InputsRecord(Record):
    """container ID -> the digests of its inputs when it was last converged."""

    WHAT: ClassVar[str] = "input digest record"
    LOSS: ClassVar[str] = (
        "a later change of these containers' bind-mounted or env files goes unseen until "
        "the next apply records them"
    )

    version: Literal[1]
    containers: dict[str, InputsEntry]


class ConfigHashesRecord(Record):
    """digest of a model, the command and compose's binary -> compose's hash per service."""

    WHAT: ClassVar[str] = "config hash cache"
    LOSS: ClassVar[str] = "the next plan asks compose for the config hashes again"

    version: Literal[1]
    models: dict[str, dict[str, str]]


class SecretsRecord(Record):
    """container ID -> secret name -> keyed hash of the value it was created with."""

    WHAT: ClassVar[str] = "secret records"
    LOSS: ClassVar[str] = (
        "a later run finds no record of these containers' secrets and recreates the services "
        "whose secrets compose's config hash does not cover"
    )

    version: Literal[1]
    containers: dict[str, dict[str, str]]


class ReadyEntry(Record):
    """When one container became ready: its run (docker's StartedAt) and the moment (epoch s)
    it was first seen ready; `ready_after`, when known, the last moment it was seen not ready
    (a failed healthcheck's start, the container's start, or the wait's previous look), so it
    became ready between the two: a healthcheck sees readiness only once an interval."""

    started_at: str
    ready_at: float
    ready_after: float | None = None


class ReadinessRecord(Record):
    """container ID -> when its current run became ready, as the services wait saw it."""

    WHAT: ClassVar[str] = "readiness record"
    LOSS: ClassVar[str] = "a saved result does not know these containers' time to ready"

    version: Literal[1]
    containers: dict[str, ReadyEntry]


class WheelhouseMarker(Record):
    """The digest of the requirement files the wheelhouse was last filled from.

    A marker holds the digest alone (no `version` key): that is version 1.
    """

    WHAT: ClassVar[str] = "wheelhouse marker"
    LOSS: ClassVar[str] = "the next run downloads the wheels again"

    version: Literal[1] = 1
    digest: str

    def encode(self) -> bytes:
        """The digest alone, on one line, as markers always were: the marker lies in build
        contexts that ship the wheelhouse, and other bytes would rebuild their images."""
        return (json.dumps({"digest": self.digest}) + "\n").encode("utf-8")


R = TypeVar("R", bound=Record)


def directory() -> Path:
    """Where records live, the one lookup of it: $RECONCILER_STATE_DIR, else the platform's
    user state directory (`platformdirs`; on Linux $XDG_STATE_HOME/reconciler, else
    ~/.local/state/reconciler)."""
    configured = os.environ.get("RECONCILER_STATE_DIR")
    if configured:
        return Path(configured)
    # Imported here: a few ms that a run whose records live in $RECONCILER_STATE_DIR skips.
    import platformdirs  # noqa: PLC0415

    return Path(platformdirs.user_state_dir("reconciler", appauthor=False))


def load(path: Path, model: type[R]) -> R | None:
    """The record at `path` as `model`; None when there is none or it cannot be used (warned)."""
    raw = _bytes(path, model.WHAT)
    if raw is None:
        return None
    record, problem = _parse(raw, path, model)
    if problem:
        _ignored(path, model.WHAT, problem)
    return record


def save(path: Path, record: Record, *, mode: int = PRIVATE_FILE_MODE) -> bool:
    """Write `record` at `path` unless it already holds exactly those bytes; True if written.

    Never raises: a failed write is a warning saying what its loss costs (`Record.LOSS`).
    """
    return _write(path, record.encode(), record.WHAT, record.LOSS, mode)


def read_key(path: Path, size: int, *, what: str) -> bytes | None:
    """The key of `size` bytes at `path`; None when there is none or it is unusable (warned)."""
    raw = _bytes(path, what, cap=size)
    if raw is not None and len(raw) != size:
        _ignored(path, what, f"holds {len(raw)} bytes, not {size}")
        return None
    return raw


def ensure_key(path: Path, size: int, *, what: str, loss: str, durable: bool = False) -> bytes:
    """The key at `path`, made (random, 0600) when missing or unusable.

    An unusable key is replaced, with a warning saying what that costs (`loss`: whatever it
    keyed no longer matches). A key that cannot be stored is a warning and lives for this
    process only; with `durable` (a key whose use outlives the process) it is `RecordError`.
    """
    with _MAKING_KEY:
        return _ensure_key(path, size, what=what, loss=loss, durable=durable)


def _ensure_key(path: Path, size: int, *, what: str, loss: str, durable: bool) -> bytes:
    key = read_key(path, size, what=what)
    if key is not None:
        return key
    if os.path.isfile(path):  # of the wrong size (a directory or FIFO: its write warns)
        _log.warning(f"making a new {what}; {loss}", path=str(path))
    key = random.token_bytes(size)
    if durable:
        problem = _attempt(path, key, PRIVATE_FILE_MODE)
        if problem is not None:
            raise RecordError(f"cannot keep {what} at {path}: {problem}")
    else:
        _write(path, key, what, loss, PRIVATE_FILE_MODE)
    return key


def _bytes(path: Path, what: str, *, cap: int | None = None) -> bytes | None:
    """The record's bytes: this process's unwritten ones, else the file's; None when missing
    or unreadable (warned)."""
    with _LOCK:
        kept = _UNWRITTEN.get(_key(path))
    if kept is not None:
        return kept
    try:
        return read_bytes(path, _KIND, cap=cap)
    except FileNotFoundError:
        return None
    except InputError as error:
        _ignored(path, what, _described(error), special=_special(path))
    except OSError as error:  # the reader turns OSErrors into InputErrors; belt and braces
        _ignored(path, what, os_error_reason(error))
    return None


def _special(path: Path) -> bool:
    """True when something other than a regular file (or a link to one) is at `path`."""
    return os.path.lexists(path) and not os.path.isfile(path)


def _parse(raw: bytes, path: Path, model: type[R]) -> tuple[R | None, str]:
    """The record in `raw`, or None and what is wrong with it."""
    data, problem = _json(raw, path)
    if problem:
        return None, problem
    if not isinstance(data, dict):
        return None, f"holds {_json_type(data)}, not an object"
    field = model.model_fields.get("version")
    default = None if field is None or field.is_required() else field.default
    version = data.get("version", default)
    if version != model.VERSION or isinstance(version, bool):
        return None, (
            f"version {json.dumps(version)}, not {model.VERSION} (another reconciler's format)"
        )
    try:
        return model.model_validate(data), ""
    except ValidationError as error:
        return None, _validation(error)


def _json(raw: bytes, path: Path) -> tuple[Any, str]:
    """The JSON value in `raw`, or None and why it is not JSON."""
    try:
        return json.loads(decode_utf8(raw, path)), ""
    except InputError as error:
        return None, _described(error)
    except json.JSONDecodeError as error:
        return None, f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
    except (ValueError, RecursionError) as error:  # a huge number, nesting past the stack
        return None, f"not JSON: {error}"


def _write(path: Path, data: bytes, what: str, loss: str, mode: int) -> bool:
    """Write `data` at `path` unless already there; on failure warn, remember, return False."""
    if _holds(path, data):
        return False
    problem = _attempt(path, data, mode)
    if problem is None:
        return True
    _log.warning(f"cannot write {what}; {loss}", path=str(path), error=problem)
    with _LOCK:
        _UNWRITTEN[_key(path)] = data
    return False


def _holds(path: Path, data: bytes) -> bool:
    """True when the file at `path` already holds exactly `data` (then nothing is pending)."""
    try:
        same = read_bytes(path, _KIND) == data
    except (OSError, ReconcilerError):
        return False  # missing or unusable: written (an unusable one was warned about when read)
    if same:
        _forget(path)
    return same


def _attempt(path: Path, data: bytes, mode: int) -> str | None:
    """Write `data` at `path` (its directory made 0700); None, or why it could not."""
    try:
        path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
        write_atomic(path, data, kind=_KIND, mode=mode)
    except InputError as error:  # not a regular file, a symlink: the caller names the path
        return error.message
    except FileWriteError as error:  # disk full, read-only
        return error.reason
    except OSError as error:  # the directory cannot be made
        return os_error_reason(error)
    except ReconcilerError as error:
        return str(error)
    _forget(path)
    return None


def _forget(path: Path) -> None:
    with _LOCK:
        _UNWRITTEN.pop(_key(path), None)


def _key(path: Path) -> str:
    return os.path.abspath(path)


def _ignored(path: Path, what: str, problem: str, *, special: bool = False) -> None:
    # A special file is never written over (the writer replaces regular files only): say so.
    then = "never written over: remove it" if special else "rewritten at the next write"
    _log.warning(f"ignoring {what}: {problem}; treated as empty and {then}", path=str(path))


def _described(error: InputError) -> str:
    """An input error's message, with its line and column when it has them (not its path)."""
    where = error.location
    if where is None or where.line is None:
        return error.message
    column = f", column {where.column}" if where.column is not None else ""
    return f"{error.message} at line {where.line}{column}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array" if value else "[]"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _validation(error: ValidationError) -> str:
    """The first few of pydantic's complaints, each at its dotted place in the record."""
    shown = [
        f"{'.'.join(str(part) for part in item['loc']) or 'top level'}: {item['msg']}"
        for item in error.errors(include_url=False)[:3]
    ]
    more = error.error_count() - len(shown)
    return "wrong shape: " + "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
