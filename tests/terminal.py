"""A command on a pseudo-terminal, read as a person would see it: a pyte screen, and every read.

`Terminal` starts argv with stdin, stdout and stderr on the slave side of a pty of a given size,
reads the master side, timestamps each read (`frames`) and feeds a pyte terminal emulator
(`screen`). Tests assert on the screen's text, on the order things appeared (`text`, the output
stripped of control sequences), and on the gaps between reads (how often the terminal changed).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyte

_CONTROL = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
SHOW_CURSOR = b"\x1b[?25h"
HIDE_CURSOR = b"\x1b[?25l"


@dataclass(frozen=True)
class Frame:
    """One read of the terminal: when (seconds since start) and what."""

    at: float
    data: bytes


class Terminal:
    """`argv` running on a pty of `columns` x `lines`; close() kills it if it still runs."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        columns: int = 120,
        lines: int = 60,
        env: dict[str, str] | None = None,
    ) -> None:
        self.screen = pyte.Screen(columns, lines)
        self._stream = pyte.ByteStream(self.screen)
        self.frames: list[Frame] = []
        self._master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        environment = dict(env if env is not None else os.environ)
        environment.update({"TERM": "xterm-256color", "COLUMNS": str(columns)})
        environment.pop("NO_COLOR", None)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environment,
            start_new_session=True,
        )
        os.close(slave)
        self._eof = False

    # ---- reading ----------------------------------------------------------------------------

    def _read(self, timeout: float) -> None:
        if self._eof:
            time.sleep(min(timeout, 0.05))
            return
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: every slave descriptor closed (the process ended)
            data = b""
        if not data:
            self._eof = True
            return
        self.frames.append(Frame(time.monotonic() - self.started, data))
        self._stream.feed(data)

    def read(self, timeout: float) -> None:
        """Read what arrives within `timeout` seconds (nothing, at the end of the output)."""
        self._read(timeout)

    def read_until(self, predicate: Callable[[Terminal], bool], timeout: float) -> None:
        """Read until `predicate(self)` holds; AssertionError with the screen after `timeout`."""
        end = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > end:
                raise AssertionError(f"timed out; the screen shows:\n{self.display()}")
            if self._eof and self.process.poll() is not None:
                raise AssertionError(f"the process ended; the screen shows:\n{self.display()}")
            self._read(0.1)

    def wait(self, timeout: float) -> int:
        """Read to the end of the output; return the exit code."""
        end = time.monotonic() + timeout
        while not self._eof:
            if time.monotonic() > end:
                raise AssertionError(f"still running; the screen shows:\n{self.display()}")
            self._read(0.1)
        return self.process.wait(timeout=max(end - time.monotonic(), 1.0))

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Send `signum` to the process (as a Ctrl-C on its terminal would)."""
        self.process.send_signal(signum)

    def close(self) -> None:
        """Kill the process if it still runs, and close the pty."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)

    # ---- what a person sees -------------------------------------------------------------------

    def display(self) -> str:
        """The screen now, one line per row, trailing blanks dropped."""
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    @property
    def raw(self) -> bytes:
        """Everything written to the terminal so far."""
        return b"".join(frame.data for frame in self.frames)

    @property
    def text(self) -> str:
        """Everything written so far, control sequences removed (for the order of appearance)."""
        return _CONTROL.sub(b"", self.raw).decode("utf-8", "replace")

    def gaps(self, start: float, end: float) -> list[float]:
        """Seconds between successive reads within [start, end] (times since the start)."""
        times = [start, *(f.at for f in self.frames if start < f.at < end), end]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def shown_seconds(self, title: str, since: int = 0) -> list[float]:
        """The seconds the live view's header `title  12.3 s` showed at each of its redraws, in
        order (its own clock), from character `since` of `text` on."""
        pattern = re.escape(title) + r" +(\d+\.\d) s"
        return [float(seconds) for seconds in re.findall(pattern, self.text[since:])]

    def first_seen(self, needle: str) -> float:
        """When `needle` first appeared in the output (seconds since start)."""
        seen = b""
        for frame in self.frames:
            seen += frame.data
            if needle in _CONTROL.sub(b"", seen).decode("utf-8", "replace"):
                return frame.at
        raise AssertionError(f"{needle!r} never appeared")

    def cursor_restored(self) -> bool:
        """True when the cursor ends visible: no hide after the last show."""
        raw = self.raw
        return raw.rfind(HIDE_CURSOR) < raw.rfind(SHOW_CURSOR) or HIDE_CURSOR not in raw
