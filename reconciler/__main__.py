"""`python -m reconciler`: the CLI. Signals are taken over before anything heavy is imported,
so a Ctrl-C at any moment ends in a clean stop (exit 130/143), never a traceback.

The process ends with `os._exit` once its output is flushed: interpreter shutdown puts the
default signal dispositions back, and a signal landing then would kill a run that already
finished and replace its exit code.
"""

import contextlib
import os
import sys

from reconciler.interrupt import StopToken, install_handlers

stop = StopToken()
install_handlers(stop)

from reconciler.cli import main  # noqa: E402 - after the handlers, on purpose

code = main(stop=stop)
for stream in (sys.stdout, sys.stderr):
    with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
        stream.flush()
os._exit(code)
