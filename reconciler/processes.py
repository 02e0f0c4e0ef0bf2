"""Every child process of a run (docker, pip, debootstrap) starts and ends here.

A child runs in its own session, so a Ctrl-C on the terminal reaches reconciler alone and
reconciler decides: a child that is safe to cut (a build, a read, a download) is terminated at
the first stop request; one that must not be cut (compose up, a migration) runs to its end or
its own timeout, and only a second request terminates it. A child never outlives the run: it is
terminated when the run leaves `run` for any reason, and `setpriv --pdeathsig` kills it if
reconciler itself is killed. Commands are argv lists; nothing goes through a shell.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from reconciler.interrupt import StopToken
from reconciler.logs import get_logger

__all__ = ["Finished", "OnStop", "ProcessTimeout", "run"]

_log = get_logger(__name__)
_POLL = 0.05
_GRACE = 3.0  # after SIGTERM, how long a child may take to exit before SIGKILL
# util-linux (essential on Debian): the child gets SIGKILL if reconciler dies without cleaning up.
_SETPRIV = shutil.which("setpriv")


class OnStop(Enum):
    """What a first stop request does to a running child."""

    CUT = "cut"  # terminate it at once (builds, reads, downloads, checks)
    FINISH = "finish"  # let it finish within its timeout; a second request cuts it


@dataclass(frozen=True)
class Finished:
    """A child that ran to its end."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class ProcessTimeout(Exception):
    """A child did not finish within its timeout; it was terminated. Carries its output so far."""

    def __init__(self, argv: Sequence[str], timeout: float, stdout: str, stderr: str) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"no answer within {timeout:g} s")


def run(
    argv: Sequence[str],
    *,
    stop: StopToken,
    on_stop: OnStop,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str | None = None,
    on_line: Callable[[str], None] | None = None,
    stdin: str | None = None,
) -> Finished:
    """Run `argv` to its end and return what it printed; never raises for a nonzero exit.

    `stdin`, when given, is written to the child's standard input, which is then closed (a
    password for `docker login --password-stdin`: never in argv); otherwise stdin is /dev/null.

    `on_line`, when given, is called with each line the child prints (stdout or stderr, without
    its line ending) as it comes, from a reader thread; the output is still returned whole.

    Raises `StopRequested` when stopped (after terminating the child), `ProcessTimeout` after
    `timeout` seconds, and `FileNotFoundError` when the program does not exist.
    """
    what = what or _what(argv)
    if stop.requested and (on_stop is OnStop.CUT or stop.urgent):
        raise stop.stopped(f"before {what}")
    spawn = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv] if _SETPRIV else list(argv)
    if _SETPRIV and shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    started = time.monotonic()
    child = subprocess.Popen(
        spawn,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    if stdin is not None:
        _feed(child, stdin)
    out: list[str] = []
    err: list[str] = []
    told = False
    wait = child.communicate if on_line is None else _LineReader(child, on_line).communicate
    try:
        while True:
            try:
                stdout, stderr = wait(timeout=_POLL)
            except subprocess.TimeoutExpired:
                pass
            else:
                return Finished(
                    tuple(argv), child.returncode, stdout, stderr, time.monotonic() - started
                )
            if stop.requested and not told and on_stop is OnStop.FINISH and not stop.urgent:
                told = True
                _log.warning("stop requested; letting this finish first", command=what)
            if stop.requested and (on_stop is OnStop.CUT or stop.urgent):
                _log.warning("stop requested; terminating", command=what)
                _terminate(child, out, err, wait)
                raise stop.stopped(f"during {what}")
            if timeout is not None and time.monotonic() - started > timeout:
                _terminate(child, out, err, wait)
                raise ProcessTimeout(argv, timeout, "".join(out), "".join(err))
    finally:
        if child.poll() is None:
            _terminate(child, out, err, wait)


_Wait = Callable[..., tuple[str, str]]


def _feed(child: subprocess.Popen[str], text: str) -> None:
    """Write `text` to the child's stdin and close it (a child that exits early is no error)."""
    assert child.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        child.stdin.write(text)
    with contextlib.suppress(BrokenPipeError, OSError):
        child.stdin.close()
    child.stdin = None  # closed: `communicate` must not flush it again


def _terminate(
    child: subprocess.Popen[str], out: list[str], err: list[str], communicate: _Wait
) -> None:
    """SIGTERM the child's process group, SIGKILL it after a grace period; collect its output."""
    for signum, wait in ((signal.SIGTERM, _GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        try:
            stdout, stderr = communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        out.append(stdout or "")
        err.append(stderr or "")
        return


class _LineReader:
    """A child's stdout and stderr read line by line by two threads, each line passed to `on_line`.

    `communicate` answers as `Popen.communicate` does: both outputs once the child ended and
    both pipes closed, or `subprocess.TimeoutExpired`.
    """

    def __init__(self, child: subprocess.Popen[str], on_line: Callable[[str], None]) -> None:
        self._child = child
        self._out: list[str] = []
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=_read_lines, args=(stream, chunks, on_line), daemon=True)
            for stream, chunks in ((child.stdout, self._out), (child.stderr, self._err))
        ]
        for thread in self._threads:
            thread.start()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        end = None if timeout is None else time.monotonic() + timeout
        self._child.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(None if end is None else max(end - time.monotonic(), 0.0))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self._child.args, timeout or 0.0)
        return "".join(self._out), "".join(self._err)


def _read_lines(stream: object, chunks: list[str], on_line: Callable[[str], None]) -> None:
    assert isinstance(stream, io.TextIOBase)
    with stream:
        for line in stream:
            chunks.append(line)
            with contextlib.suppress(Exception):  # a faulty callback must not lose the output
                on_line(line.rstrip("\r\n"))


def _what(argv: Sequence[str]) -> str:
    text = " ".join(argv[:6])
    return text if len(argv) <= 6 else text + " ..."
