"""Secrets from a store: the values of a state's `secrets:`, and keyed hashes of them.

`SecretStore.values()` reads every secret once per run (its first call; later calls answer
from memory): from reconciler's own environment (`env`), a file (`file`, one trailing newline
stripped) or a program's stdout (`command`, an argv list run without a shell, with a timeout,
through `reconciler.runtime.processes`). The values go only into the environment of compose's calls
(the adapter's job) and into the run's `Secrets`, so that any output that happens to hold one
is masked. An error names the secret, and for a command its program and exit code: never the
value and never the command's output.

Drift: compose puts interpolated values into a service's configuration, so its config hash
changes with them and compose recreates the service by itself. What the hash does not cover is
a compose `secrets:`/`configs:` entry fed from the environment (`environment: NAME`) or from
interpolated `content:`: that reaches the container at creation only. For both, `SecretRecords`
keeps, per container, an HMAC-SHA256 of each secret it was created with, keyed with a random
per-project key (files 0600 under `records.directory()`): never the value, and a hash nobody
without the key can test guesses against. The plan compares them with the current values'
HMACs to say which secret changed, and recreates a service whose unhashed secret changed. Key
and records go through `reconciler.runtime.records`: evidence, never authority (see
`SecretRecords`).
"""

from __future__ import annotations

import hmac
import os
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path

from reconciler.errors import ApplyError, InputError
from reconciler.logs import get_logger
from reconciler.runtime import processes, records
from reconciler.runtime.files import open_regular, read_bytes
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.processes import OnStop, ProcessTimeout
from reconciler.runtime.records import SecretsRecord
from reconciler.secrets.redact import Secrets
from reconciler.state import State

__all__ = [
    "MACHINE",
    "SecretRecords",
    "SecretStore",
    "check_sources",
    "keyed_hash",
    "machine_key",
]

_log = get_logger(__name__)
_KEY_BYTES = 32
_KEY = "secret key"
_KEY_LOSS = (
    "no secret record made under another key matches: the services using a secret that "
    "compose's config hash does not cover are recreated"
)
# The records directory of this machine's own key: no compose project has this name (project
# names start with a letter or a digit).
MACHINE = "_machine"


class SecretStore:
    """The state's secrets, read on first use and then kept in memory for the run."""

    def __init__(
        self, state: State, *, stop: StopToken | None = None, register: Secrets | None = None
    ) -> None:
        self._state = state
        self._stop = stop or StopToken()
        self._register = register
        self._lock = threading.Lock()
        self._values: dict[str, str] | None = None

    def __call__(self) -> Mapping[str, str]:
        return self.values()

    def values(self) -> dict[str, str]:
        """NAME -> value for every secret of the state (read once; raises as `read` does)."""
        with self._lock:
            if self._values is None:
                values = {}
                for name in self._state.secrets:
                    value = self.read(name)
                    if self._register is not None:
                        self._register.register(value)
                    values[name] = value
                self._values = values
            return dict(self._values)

    def read(self, name: str) -> str:
        """The value of one secret, read now.

        Raises `InputError` when its variable is unset, its file unreadable or its program
        missing, and `ApplyError` when its program fails, times out or prints nothing.
        """
        spec = self._state.secrets[name]
        if spec.env is not None:
            value = os.environ.get(spec.env)
            if value is None:
                raise InputError(
                    f"secret {name}: environment variable {spec.env} is not set",
                    self._state.location(f"secrets.{name}"),
                )
            return value
        if spec.file is not None:
            return _read_file(name, spec.file, self._state)
        assert spec.command is not None, "validated: exactly one source"
        return self._run(name, spec.command, spec.timeout)

    def _run(self, name: str, argv: list[str], timeout: float) -> str:
        where = self._state.location(f"secrets.{name}.command")
        program = argv[0]
        directory = _state_directory(self._state)
        argv = [_program_path(self._state, program), *argv[1:]]
        _log.debug("reading secret", secret=name, program=program)
        try:
            done = processes.run(
                argv,
                stop=self._stop,
                on_stop=OnStop.CUT,
                timeout=timeout,
                cwd=directory,
                what=f"secret {name} ({program})",
            )
        except FileNotFoundError:
            raise InputError(f"secret {name}: program {program} not found", where) from None
        except PermissionError:
            raise InputError(f"secret {name}: program {program} is not executable", where) from None
        except ProcessTimeout:
            raise ApplyError(
                f"{where}: secret {name}: {program} did not finish within {timeout:g} s"
            ) from None
        if done.returncode != 0:
            ended = f"exited {done.returncode}" if done.returncode > 0 else f"was {done.ended}"
            raise ApplyError(
                f"{where}: secret {name}: {program} {ended} "
                "(its output is not shown: it may hold the secret)"
            )
        value = _strip_newline(done.stdout)
        if not value:
            raise ApplyError(f"{where}: secret {name}: {program} printed nothing on stdout")
        return value


def check_sources(state: State) -> None:
    """Check that every secret's source is there, reading no value and running nothing: its
    variable set, its file a readable regular file, its program found (on PATH, or for a path
    with a `/`, relative to the state file). `InputError` at the secret, as `read` would."""
    for name, spec in state.secrets.items():
        if spec.env is not None and spec.env not in os.environ:
            raise InputError(
                f"secret {name}: environment variable {spec.env} is not set",
                state.location(f"secrets.{name}"),
            )
        if spec.file is not None:
            _check_file(name, spec.file, state)
        if spec.command is not None:
            _check_program(name, spec.command[0], state)


def _check_file(name: str, path: Path, state: State) -> None:
    """The file opens as `_read_file` would read it (a regular file, inside the root): opened
    and closed, not a byte read."""
    where = state.location(f"secrets.{name}.file")
    try:
        with open_regular(path, "secret file", root=state.confine):
            pass
    except FileNotFoundError:
        raise InputError(f"secret {name}: cannot read {path}: not found", where) from None
    except InputError as error:
        raise InputError(f"secret {name}: {error}", where) from None


def _check_program(name: str, program: str, state: State) -> None:
    where = state.location(f"secrets.{name}.command")
    path = _program_path(state, program)
    found = path if "/" in path else shutil.which(path)
    if found is None or not Path(found).is_file():
        raise InputError(f"secret {name}: program {program} not found", where)
    if not os.access(found, os.X_OK):
        raise InputError(f"secret {name}: program {program} is not executable", where)


def _state_directory(state: State) -> Path | None:
    return state.source.parent if state.source.is_file() else None


def _program_path(state: State, program: str) -> str:
    """`program` as it is run: a relative path with a `/` (./get-token) is next to the state
    file; a bare name is looked up on PATH."""
    directory = _state_directory(state)
    if directory is not None and "/" in program and not Path(program).is_absolute():
        return str(directory / program)
    return program


def _read_file(name: str, path: Path, state: State) -> str:
    where = state.location(f"secrets.{name}.file")
    try:
        raw = read_bytes(path, "secret file", root=state.confine)
    except FileNotFoundError:
        raise InputError(f"secret {name}: cannot read {path}: not found", where) from None
    except InputError as error:
        # The reader names the path; the state's line and key say which secret wanted it.
        raise InputError(f"secret {name}: {error}", where) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"secret {name}: {path} is not UTF-8 text", where) from None
    return _strip_newline(text)


def _strip_newline(text: str) -> str:
    """`text` without one trailing newline (LF or CRLF), as `$(cat file)` would drop it."""
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


def keyed_hash(key: bytes, name: str, value: str) -> str:
    """HMAC-SHA256 of a secret's value under its name: comparable, but no guess can be tested
    against it without the key."""
    message = name.encode() + b"\0" + value.encode()
    return "hmac-sha256:" + hmac.new(key, message, "sha256").hexdigest()


def machine_key() -> bytes:
    """This machine's random key, made (0600, in a 0700 directory) when missing:
    `records.directory()/_machine/secrets.key`. Plan files digest text whose secret values are
    replaced by their keyed hash under it (`reconciler.reconcile.saved_plan`), so a digest still
    changes with a secret, but no guess can be tested against it off this machine.

    A key file of the wrong size is replaced with a warning: plan files saved under the old key
    are then refused as stale, never applied wrongly. A key that cannot be stored (a directory
    in its place, a full disk) is `RecordError`: a key living only in this process would make
    every plan file it saved stale for any other process.
    """
    return records.ensure_key(
        SecretRecords(MACHINE).key_path,
        _KEY_BYTES,
        what="this machine's key for plan files",
        loss="plan files saved under another key are refused as stale",
        durable=True,
    )


class SecretRecords:
    """A project's HMAC key and, per container id, the HMACs of the secrets it was created with.

    Both files are 0600 in a 0700 directory, read and written through `reconciler.runtime.records`;
    the records are replaced atomically, so a plan reading them beside an apply sees the old or
    the new records, never half of them. They are evidence, never authority: an unusable
    records file is a warning and counts as no records (each service whose secrets compose's
    config hash does not cover is then recreated, for nothing says which value it has).

    The key: one of the wrong size, or a directory in its place, is a warning; a plan then has
    no key (no secret is compared), and the next apply that brings a user of a secret up makes
    a new one. Regenerating rather than failing: the records made under the old key simply no
    longer match, which the plan treats as changed secrets (a recreate), never as current. A
    key that cannot be stored lives for the run (so that its verification sees the records it
    just made); the next run has none again and says so.
    """

    def __init__(self, project: str, directory: Path | None = None) -> None:
        self.directory = (directory or records.directory()) / project
        self.key_path = self.directory / "secrets.key"
        self.path = self.directory / "secrets.json"

    def key(self) -> bytes | None:
        """The project's key, or None when none was made yet (a plan never makes one) or it is
        unusable (warned)."""
        return records.read_key(self.key_path, _KEY_BYTES, what=_KEY)

    def ensure_key(self) -> bytes:
        """The project's key, made (random, 0600) when missing or unusable (see the class)."""
        return records.ensure_key(self.key_path, _KEY_BYTES, what=_KEY, loss=_KEY_LOSS)

    def read(self) -> dict[str, dict[str, str]]:
        """container id -> secret name -> keyed hash; empty when there are none (or unusable)."""
        record = records.load(self.path, SecretsRecord)
        if record is None:
            return {}
        return {cid: dict(hashes) for cid, hashes in record.containers.items()}

    def write(self, containers: Mapping[str, Mapping[str, str]]) -> bool:
        """Replace the records with `containers`; whether written (a failure only warns)."""
        data = {cid: dict(sorted(rec.items())) for cid, rec in sorted(containers.items())}
        return records.save(self.path, SecretsRecord(version=1, containers=data))
