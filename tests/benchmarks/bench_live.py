"""Benchmark: what the live view adds to a no-op `apply`, on a pseudo-terminal, same run.

Converges the e2e stack once, then runs `python -m reconciler apply` on it ROUNDS times with
`--progress plain` (the baseline: the console log) and ROUNDS times with `--progress live`,
alternating, each on a fresh pty read to its end. Prints the medians and their ratio.
Run: .venv/bin/python -m tests.benchmarks.bench_live [ROUNDS]
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import reconciler
from tests.conftest import make_stack, remove_stack
from tests.terminal import Terminal

ROUNDS = 15


def apply_seconds(state_file: Path, progress: str) -> tuple[float, float]:
    """Wall time of one no-op apply on a pty (start to end of output), and its CPU time
    (user + system, its docker children included)."""
    argv = [sys.executable, "-m", "reconciler", "apply", str(state_file), "--progress", progress]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    terminal = Terminal(argv)
    try:
        code = terminal.wait(120)
    finally:
        terminal.close()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert code == 0, terminal.display()
    assert "changed=0 failed=0" in terminal.display(), terminal.display()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    with tempfile.TemporaryDirectory() as temp:
        stack = make_stack(Path(temp), port=int(os.environ.get("RTEST_API_PORT", "18092")))
        try:
            result = reconciler.apply(reconciler.load_state(stack.state_file))
            assert result.succeeded, result.error
            runs: dict[str, list[tuple[float, float]]] = {"plain": [], "live": []}
            apply_seconds(stack.state_file, "live")  # warm the caches once, uncounted
            for _ in range(rounds):
                for progress in ("plain", "live"):
                    runs[progress].append(apply_seconds(stack.state_file, progress))
        finally:
            remove_stack(stack)
    print(f"no-op apply of the converged 3-service e2e stack on a pty, median of {rounds} each")
    for index, what in ((0, "wall"), (1, "CPU ")):
        plain, live = (statistics.median(r[index] for r in runs[key]) for key in ("plain", "live"))
        print(f"  {what} --progress plain (baseline): {plain:.3f} s  ratio 1.000")
        print(
            f"  {what} --progress live:             {live:.3f} s  ratio {live / plain:.3f}"
            f"  ({100 * (live / plain - 1):+.1f} %)"
        )


if __name__ == "__main__":
    main()
