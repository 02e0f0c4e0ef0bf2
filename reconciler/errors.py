"""The one error hierarchy of reconciler.

Every module raises one of these; the CLI (`reconciler.cli.main`) maps them to exit codes in one
place. Errors that wrap a third-party exception keep it as `__cause__`.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ApplyError",
    "CheckFailedError",
    "ConvergenceError",
    "DockerError",
    "HealthTimeoutError",
    "InputError",
    "InternalError",
    "Location",
    "LockError",
    "LockHeldError",
    "LockLostError",
    "PermanentDockerError",
    "PlanFileError",
    "ReconcilerError",
    "RecordError",
    "RegistryError",
    "StalePlanError",
    "StopRequested",
    "TransientDockerError",
    "describe",
    "os_error_reason",
    "os_error_text",
]


class ReconcilerError(Exception):
    """Base of every error reconciler raises on purpose."""

    exit_code: int = 1


@dataclass(frozen=True)
class Location:
    """Where in an input file a problem sits: file, 1-based line and column, and key path."""

    file: Path
    line: int | None = None
    column: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.key}" if self.key else where


class InputError(ReconcilerError):
    """Invalid input (state file, compose file, arguments). Raised before anything is changed."""

    exit_code = 3

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class DockerError(ReconcilerError):
    """A docker CLI call failed."""

    def __init__(self, message: str, *, command: tuple[str, ...] = (), output: str = "") -> None:
        self.message = message
        self.command = command
        self.output = output
        super().__init__(message)


class TransientDockerError(DockerError):
    """A fault worth retrying: daemon unreachable, i/o timeout, deadline exceeded."""


class PermanentDockerError(DockerError):
    """A fault that retrying cannot fix: invalid compose file, build failure, missing image."""


class ApplyError(ReconcilerError):
    """Applying a change failed for a reason other than a docker CLI fault."""


class HealthTimeoutError(ApplyError):
    """Services did not become healthy before their deadline; carries their diagnostics."""

    def __init__(self, message: str, diagnostics: dict[str, str]) -> None:
        self.diagnostics = diagnostics
        super().__init__(message)


class RegistryError(ReconcilerError):
    """A registry could not be read or logged in to: a `pull: digest` image's tag could not be
    compared with the registry, or `docker login` failed (exit 1). Never carries a password."""


class LockHeldError(ReconcilerError):
    """Another apply holds the project's lock (exit 1)."""


class LockError(ReconcilerError):
    """The project's lock file or its directory cannot be used: unsafe (a symlink, another
    user's, open to others) or failing (full disk, no permission). The message names the path
    and the reason (exit 1)."""


class LockLostError(ReconcilerError):
    """The project's engine lock ended while this run held it (its connection to the engine
    dropped): the run stops before its next change (exit 1)."""


class InternalError(ReconcilerError):
    """An unexpected exception: a bug in reconciler. Carries the traceback for a bug report."""

    def __init__(self, error: BaseException, traceback_text: str) -> None:
        self.traceback_text = traceback_text
        super().__init__(
            f"internal error (a bug in reconciler): {type(error).__name__}: {error}".rstrip(": ")
        )


class CheckFailedError(ApplyError):
    """One or more functional checks did not pass before their deadline."""


class StopRequested(ReconcilerError):
    """A stop was requested by a signal (or `StopToken.request`): exit 128 + the signal."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        super().__init__(f"stopped by {name} {where}; everything done so far is consistent")


class ConvergenceError(ReconcilerError):
    """After applying, observing again still found differences."""

    def __init__(self, message: str, remaining: tuple[str, ...]) -> None:
        self.remaining = remaining
        super().__init__(message)


class PlanFileError(InputError):
    """A saved plan file that cannot be read or is not a valid plan file (exit 3)."""


class RecordError(ReconcilerError):
    """A record whose use outlives the run (this machine's key for plan files) cannot be kept.

    Every other record only warns (`reconciler.runtime.records`): a run goes on without it.
    """


class StalePlanError(ReconcilerError):
    """A saved plan no longer matches the state, files or environment it was made from (exit 1).

    `changed` names each component that moved (state file, compose file, a step's facts).
    """

    def __init__(self, message: str, changed: tuple[str, ...]) -> None:
        self.changed = changed
        super().__init__(message)


def os_error_text(error: OSError) -> str:
    """An `OSError` in words for a person: the file(s) it names, then the errno's meaning
    (`/srv/app/.env: No space left on device`), never Python's `[Errno 28] ...` form."""
    reason = os_error_reason(error)
    names = [_file_name(name) for name in (error.filename, error.filename2) if name is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def os_error_reason(error: OSError) -> str:
    """The errno's meaning alone (`No space left on device`), for a message that names the file
    itself."""
    reason = error.strerror
    if not reason and error.errno:
        reason = os.strerror(error.errno)
    return reason or str(error) or type(error).__name__


def _file_name(name: object) -> str:
    if isinstance(name, int):  # an error on a descriptor
        return f"file descriptor {name}"
    if isinstance(name, (str, bytes, os.PathLike)):
        return os.fsdecode(name)
    return str(name)


def describe(error: BaseException) -> str:
    """An error in words: an OSError as `os_error_text` gives it, any other as it says."""
    return os_error_text(error) if isinstance(error, OSError) else str(error)
