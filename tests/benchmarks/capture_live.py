"""Show what a person sees of `apply` on a terminal: the screen each time the live view's
current activity changes, then the final screen.

    .venv/bin/python -m tests.benchmarks.capture_live [STATE] [-- APPLY ARGS...]

Runs `python -m reconciler apply STATE` on a 140x70 pseudo-terminal (read through pyte, as the
live-view tests do). Changes whatever the apply changes: run it on a state you mean to apply.
"""

from __future__ import annotations

import re
import sys

from tests.conftest import RECONCILER
from tests.terminal import Terminal

_NOW = re.compile(r"now: ([\w-]+)")


def main(argv: list[str]) -> int:
    state = argv[0] if argv and argv[0] != "--" else "states/canary.yaml"
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    terminal = Terminal([*RECONCILER, "apply", state, *extra], columns=140, lines=70)
    shown: set[str] = set()
    try:
        while terminal.process.poll() is None:
            terminal.read(0.5)
            screen = terminal.display()
            match = _NOW.search(screen)
            if match and match.group(1).strip() not in shown:
                shown.add(match.group(1).strip())
                print(
                    f"===== {terminal.frames[-1].at if terminal.frames else 0:.1f} s: "
                    f"now {match.group(1).strip()}"
                )
                print(screen.rstrip() + "\n", flush=True)
        code = terminal.wait(30)
        print(f"===== the end (exit {code})")
        print(terminal.display().rstrip())
        return 0
    finally:
        terminal.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
