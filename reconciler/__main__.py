"""`python -m reconciler`: the CLI. Signals are taken over before anything heavy is imported,
so a Ctrl-C at any moment ends in a clean stop (exit 130/143), never a traceback.

The process ends with `os._exit` once its output is flushed: interpreter shutdown puts the
default signal dispositions back, and a signal landing then would kill a run that already
finished and replace its exit code.
"""

import signal

# First of all, before any other import (even the stop token's own pulls in `dataclasses` and
# `inspect`, tens of milliseconds on a loaded machine): a signal from now on is only recorded,
# then handed to the run's stop token, instead of Python's KeyboardInterrupt mid-import.
_early: list[int] = []
signal.signal(signal.SIGINT, lambda signum, frame: _early.append(signum))
signal.signal(signal.SIGTERM, lambda signum, frame: _early.append(signum))

import contextlib  # noqa: E402 - after the early handlers, on purpose
import gc  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from reconciler.runtime.interrupt import StopToken, install_handlers  # noqa: E402

stop = StopToken()
install_handlers(stop)
for early in _early:
    stop.request(early)

# The start-up imports allocate several hundred thousand long-lived objects (modules, classes,
# pydantic validators): cyclic collections during them only scan that heap again and again,
# about 0.04 s per run. Collection is off until they are done, then everything imported so far
# is frozen out of later collections (`gc.freeze`), which stay on for the run itself.
gc.disable()

# structlog imports rich when it is installed (for its tracebacks), about 0.1 s of CPU on every
# start; only the live view uses rich. Hidden during the start-up imports, rich is imported for
# real by the live view when a terminal asks for one.
_hidden = "rich" not in sys.modules
if _hidden:
    sys.modules["rich"] = None  # type: ignore[assignment]
from reconciler.cli.main import main  # noqa: E402 - after the handlers, on purpose

if _hidden:
    del sys.modules["rich"]
gc.freeze()
gc.enable()

try:
    code = main(stop=stop)
except SystemExit as done:  # --help or a usage error, already printed: its exit code
    code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
# SIGPIPE stays ignored, as Python sets it at start-up: a reader that went away is an EPIPE
# error on a write, which the CLI's streams absorb, never a signal that ends the run.
for stream in (sys.stdout, sys.stderr):
    with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
        stream.flush()
os._exit(code)
