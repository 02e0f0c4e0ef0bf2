"""Every child process of a run (docker, pip, debootstrap) starts and ends here.

A child runs in its own session, so a Ctrl-C on the terminal reaches reconciler alone and
reconciler decides: a child that is safe to cut (a build, a read, a download) is terminated at
the first stop request (and one that ends on its own as the request lands is not used); one
that must not be cut (compose up, a migration) runs to its end or its own timeout, and only a
second request terminates it. A child never outlives the run: it is terminated when the run
leaves `run` for any reason, and `setpriv --pdeathsig` kills it if reconciler itself is
killed. Commands are argv lists; nothing goes through a shell.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from reconciler.logs import get_logger
from reconciler.runtime.interrupt import StopToken

__all__ = [
    "Background",
    "Finished",
    "OnStop",
    "ProcessTimeout",
    "exit_text",
    "pipe",
    "run",
    "start",
]

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
    returncode: int  # negative: ended by that signal (as Popen reports it)
    stdout: str
    stderr: str
    seconds: float

    @property
    def ended(self) -> str:
        """How it ended, in words: `exit 3`, or `killed by signal 9 (SIGKILL)`."""
        return exit_text(self.returncode)


def exit_text(returncode: int) -> str:
    """A child's end in words: `exit N`, or for Popen's negative code `killed by signal 9
    (SIGKILL)` (never `exit -9`: a kill is not something the program said)."""
    if returncode >= 0:
        return f"exit {returncode}"
    number = -returncode
    try:
        return f"killed by signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"killed by signal {number}"


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

    `stdin`, when given, is written to the child's standard input (never logged); else the
    child reads from /dev/null. It cannot be combined with `on_line`.

    `on_line`, when given, is called with each line the child prints (stdout or stderr, without
    its line ending) as it comes, from a reader thread; the output is still returned whole.

    Raises `StopRequested` when stopped (after terminating the child), `ProcessTimeout` after
    `timeout` seconds, and `FileNotFoundError` when the program does not exist.
    """
    what = what or _what(argv)
    if stop.requested and (on_stop is OnStop.CUT or stop.urgent):
        raise stop.stopped(f"before {what}")
    spawn = _spawn_argv(argv)
    started = time.monotonic()
    assert stdin is None or on_line is None, "stdin and on_line do not combine"
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
    out: list[str] = []
    err: list[str] = []
    told = False
    wait = child.communicate if on_line is None else _LineReader(child, on_line).communicate
    if stdin is not None:
        wait = _feeding(child, stdin)
    try:
        while True:
            try:
                stdout, stderr = wait(timeout=_POLL)
            except subprocess.TimeoutExpired:
                pass
            else:
                # Ended on its own as the stop came: not used, as if it had been cut.
                with stop.unless_stopped(f"during {what}", cut=on_stop is OnStop.CUT):
                    return Finished(
                        tuple(argv), child.returncode, stdout, stderr, time.monotonic() - started
                    )
            if stop.requested and not told and on_stop is OnStop.FINISH and not stop.urgent:
                told = True
                _log.warning("stop requested; letting this finish first", command=what)
            if stop.requested and (on_stop is OnStop.CUT or stop.urgent):
                stop.terminating(what)
                _terminate(child, out, err, wait)
                raise stop.stopped(f"during {what}")
            if timeout is not None and time.monotonic() - started > timeout:
                _terminate(child, out, err, wait)
                raise ProcessTimeout(argv, timeout, "".join(out), "".join(err))
    finally:
        if child.poll() is None:
            _terminate(child, out, err, wait)


_Wait = Callable[..., tuple[str, str]]


def _spawn_argv(argv: Sequence[str]) -> list[str]:
    """`argv` under `setpriv --pdeathsig KILL` when available (the child dies with reconciler);
    `FileNotFoundError` when its program does not exist (setpriv would only exit 127)."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        raise FileNotFoundError(2, "No such file or directory", argv[0])
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv] if _SETPRIV else list(argv)


def _kill_group(child: subprocess.Popen[Any]) -> None:
    """SIGTERM a running child's process group, SIGKILL it after a grace period."""
    for signum, wait in ((signal.SIGTERM, _GRACE), (signal.SIGKILL, None)):
        if child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(wait)


_CHUNK = 1 << 20


def pipe(
    source: Sequence[str],
    sink: Sequence[str],
    *,
    stop: StopToken,
    on_bytes: Callable[[int], None],
    timeout: float | None = None,
    what: str | None = None,
) -> tuple[Finished, Finished]:
    """Run `source | sink`, copying the bytes through this process to count them.

    `on_bytes` is called with the running total after each chunk, from the copying thread. A
    stop request cuts both (a sink such as `docker load` that gets a truncated stream loads
    nothing). Returns both as they ended (never raises for a nonzero exit); raises as `run`.
    """
    what = what or f"{_what(source)} | {_what(sink)}"
    if stop.requested:
        raise stop.stopped(f"before {what}")
    children: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        for argv, stdin in ((source, subprocess.DEVNULL), (sink, subprocess.PIPE)):
            children.append(
                subprocess.Popen(
                    _spawn_argv(argv),
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
        producer, consumer = children
        outputs: dict[int, tuple[bytes, bytes]] = {}
        threads = [
            threading.Thread(target=_copy, args=(producer, consumer, on_bytes), daemon=True),
            *(
                threading.Thread(target=_collect, args=(child, index, outputs), daemon=True)
                for index, child in enumerate(children)
            ),
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads) or any(
            child.poll() is None for child in children
        ):
            time.sleep(_POLL)
            if stop.requested:
                stop.terminating(what)
                raise stop.stopped(f"during {what}")
            if timeout is not None and time.monotonic() - started > timeout:
                raise ProcessTimeout(list(sink), timeout, "", "")
        seconds = time.monotonic() - started

        def ended(index: int, argv: Sequence[str]) -> Finished:
            out, err = outputs[index]
            return Finished(
                tuple(argv),
                children[index].returncode,
                out.decode(errors="replace"),
                err.decode(errors="replace"),
                seconds,
            )

        return ended(0, source), ended(1, sink)
    finally:
        for child in children:
            _kill_group(child)


def _copy(
    producer: subprocess.Popen[bytes],
    consumer: subprocess.Popen[bytes],
    on_bytes: Callable[[int], None],
) -> None:
    """Copy the producer's stdout into the consumer's stdin, counting; close both at the end."""
    assert producer.stdout is not None
    assert consumer.stdin is not None
    total = 0
    with producer.stdout as reader, consumer.stdin as writer:
        while chunk := os.read(reader.fileno(), _CHUNK):
            try:
                _write_all(writer.fileno(), chunk)
            except BrokenPipeError:
                return  # the consumer ended early: its exit code says why
            total += len(chunk)
            with contextlib.suppress(Exception):  # a faulty callback must not stop the copy
                on_bytes(total)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _collect(
    child: subprocess.Popen[bytes], index: int, outputs: dict[int, tuple[bytes, bytes]]
) -> None:
    """The child's stderr (and, for the consumer, its stdout) once it ends."""
    stdout = b""
    if index == 1 and child.stdout is not None:
        with child.stdout as stream:
            stdout = stream.read()
    assert child.stderr is not None
    with child.stderr as stream:
        stderr = stream.read()
    child.wait()
    outputs[index] = (stdout, stderr)


def _feeding(child: subprocess.Popen[str], data: str) -> _Wait:
    """`child.communicate`, sending `data` to its stdin on the first call only (as it must)."""
    pending: list[str] = [data]

    def communicate(timeout: float | None = None) -> tuple[str, str]:
        return child.communicate(pending.pop() if pending else None, timeout=timeout)

    return communicate


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


class Background:
    """A child that keeps running beside the run (the engine lock's `docker run -i`).

    Its stdin is a pipe whose only write end this process holds (pipes are close-on-exec, so no
    other child inherits it): closing it, or this process dying, is the child's end of input.
    Its first stdout line is read by a thread, for `first_line`; stderr is kept for errors.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.argv = tuple(argv)
        self._child = subprocess.Popen(
            _spawn_argv(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            start_new_session=True,  # a Ctrl-C on the terminal reaches reconciler alone
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_out(self) -> None:
        assert self._child.stdout is not None
        with self._child.stdout as stream:
            for line in stream:
                self._lines.put(line.rstrip("\r\n"))
        self._lines.put(None)

    def _read_err(self) -> None:
        assert self._child.stderr is not None
        with self._child.stderr as stream:
            for line in stream:
                self._err.append(line)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._child.pid

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self._child.poll() is None

    @property
    def returncode(self) -> int | None:
        """The child's exit code once it ended, else None."""
        return self._child.poll()

    def stderr(self, timeout: float = 1.0) -> str:
        """What the child wrote on stderr (all of it once it ended: its reader is joined)."""
        if self._child.poll() is not None:
            self._threads[1].join(timeout)
        return "".join(self._err)

    def first_line(self, *, stop: StopToken, timeout: float, what: str) -> str | None:
        """The child's first stdout line; None when it ended without one.

        Raises `ProcessTimeout` (the child terminated) after `timeout` s, and `StopRequested`
        (the child terminated) at a stop request: waiting for it is always safe to cut.
        """
        started = time.monotonic()
        while True:
            try:
                line = self._lines.get(timeout=_POLL)
            except queue.Empty:
                pass
            else:
                if line is None:
                    self._child.wait()
                return line
            if stop.requested:
                stop.terminating(what)
                self.terminate()
                raise stop.stopped(f"during {what}")
            if time.monotonic() - started > timeout:
                self.terminate()
                raise ProcessTimeout(self.argv, timeout, "", self.stderr())

    def close(self, timeout: float) -> bool:
        """Close the child's stdin and wait up to `timeout` s for it to end; True if it did."""
        if self._child.stdin is not None and not self._child.stdin.closed:
            with contextlib.suppress(OSError):  # the child may be gone already (broken pipe)
                self._child.stdin.close()
        try:
            self._child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def terminate(self) -> None:
        """SIGTERM the child's process group, SIGKILL it after a grace period."""
        _kill_group(self._child)
        if self._child.stdin is not None:
            with contextlib.suppress(OSError):
                self._child.stdin.close()


def start(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Background:
    """Start `argv` as a `Background` child (no shell); `FileNotFoundError` if it does not
    exist."""
    return Background(argv, env)
