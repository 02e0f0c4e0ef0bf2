"""Run `python -m reconciler` cases as child processes, several at once, each in its own process
group with a timeout (a hang is killed and reported) and memory and file-size limits (a read of
/dev/zero must not take the machine down with it).

By default a child is forked from the test process, which has reconciler imported already, and
calls `reconciler.cli.main.main` as `python -m reconciler` does (its own signal handlers, environment,
directory and standard streams): about 0.3 s of interpreter start and imports saved per run, so
the corpus fits the fast suite. `EDGES_EXEC=1` (set by `make test`) runs each case through a new
`python -m reconciler` instead, exactly as a user does."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.cli.main import main
from reconciler.runtime.interrupt import StopToken, install_handlers

__all__ = ["HANG_BOUND_SECONDS", "TIMEOUT_SECONDS", "Outcome", "Run", "run_all"]

TIMEOUT_SECONDS = 10.0  # killed after this: a hang
# A hang detector, not a benchmark: the target is 2 s; a case over this bound is as good as hung.
HANG_BOUND_SECONDS = 5.0
_MEMORY_LIMIT = (
    1 << 30
)  # address space of one run (and its children): a read of /dev/zero stops here
_FILE_LIMIT = 256 << 20  # largest file one run may write
_POLL = 0.02


@dataclass(frozen=True)
class Run:
    """One CLI run: argv after `python -m reconciler`, its directory and environment, and where
    its stdout and stderr go (files, so that no pipe can fill up and block it)."""

    key: str
    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    io_dir: Path


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its exit code (None when killed after the timeout), its wall time and
    its output (undecodable bytes shown as \\xNN)."""

    argv: tuple[str, ...]
    code: int | None
    elapsed: float
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        """True when the run was killed after `TIMEOUT_SECONDS`."""
        return self.code is None


class _Forked:
    """A forked child running the CLI, with the part of Popen's interface the runner uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._code: int | None = None

    def poll(self) -> int | None:
        if self._code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._code = os.waitstatus_to_exitcode(status)
        return self._code

    def wait(self) -> int:
        if self._code is None:
            self._code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self._code


@dataclass
class _Running:
    run: Run
    process: subprocess.Popen[bytes] | _Forked
    started: float
    out: Path
    err: Path


def _fork(run: Run, out: Path, err: Path) -> _Forked:
    """The CLI in a forked child: what `python -m reconciler` would do, minus its imports."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 70
    try:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_LIMIT, _FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.chdir(run.cwd)
        os.environ.clear()
        os.environ.update(run.env)
        tempfile.tempdir = None  # computed again from the case's TMPDIR
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, out), (2, err)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - for the child's life
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        stop = StopToken()
        install_handlers(stop)
        code = main(list(run.argv), stop=stop)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # the child must never return into pytest
        with contextlib.suppress(BaseException):
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
    finally:
        os._exit(code)


def _start(run: Run) -> _Running:
    run.io_dir.mkdir(parents=True, exist_ok=True)
    out, err = run.io_dir / "stdout", run.io_dir / "stderr"
    if os.environ.get("EDGES_EXEC") != "1":
        return _Running(run, _fork(run, out, err), time.monotonic(), out, err)
    argv = [sys.executable, "-m", "reconciler", *run.argv]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            argv,
            cwd=run.cwd,
            env=dict(run.env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group, killed as one on a hang
        )
    started = time.monotonic()
    # Set from outside (no preexec_fn): the interpreter needs ~0.3 s before its first read.
    resource.prlimit(process.pid, resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (_FILE_LIMIT, _FILE_LIMIT))
    resource.prlimit(process.pid, resource.RLIMIT_CORE, (0, 0))
    return _Running(run, process, started, out, err)


def _finish(running: _Running, *, killed: bool) -> Outcome:
    elapsed = time.monotonic() - running.started
    if killed:
        with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
            os.killpg(running.process.pid, signal.SIGKILL)
    code = running.process.wait()
    return Outcome(
        argv=tuple(running.run.argv),
        code=None if killed else code,
        elapsed=elapsed,
        stdout=running.out.read_bytes().decode("utf-8", "backslashreplace"),
        stderr=running.err.read_bytes().decode("utf-8", "backslashreplace"),
    )


def run_all(
    runs: Sequence[Run], *, parallel: int = 2, timeout: float = TIMEOUT_SECONDS
) -> dict[str, Outcome]:
    """Run every `Run`, at most `parallel` at a time; each is killed after `timeout` s."""
    waiting = list(runs)
    running: list[_Running] = []
    outcomes: dict[str, Outcome] = {}
    while waiting or running:
        while waiting and len(running) < parallel:
            running.append(_start(waiting.pop(0)))
        time.sleep(_POLL)
        for item in list(running):
            over = time.monotonic() - item.started > timeout
            if item.process.poll() is not None or over:
                outcomes[item.run.key] = _finish(item, killed=item.process.poll() is None)
                running.remove(item)
    return outcomes
