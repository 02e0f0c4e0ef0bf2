"""Benchmark: baseline -> split canary with reconciler, against plain compose, in one run.

Converges the baseline, times `apply` of the split state (re-pin, builds from the layer cache,
recreate, health waits, migrations check, every functional check), then times
`docker compose up -d --wait --force-recreate` of the same three app services on the same
images: the manual runbook's `up` without its `sleep 30`, edits, builds or checks. Works on a
copy of the repository, like the e2e test. Prints both and their ratio, and the image sizes.
Run: .venv/bin/python -m tests.benchmarks.bench_canary
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import reconciler
from tests.reconcile.test_loop_canary import copy_tree, down, ensure_wheelhouse


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    ensure_wheelhouse()
    with tempfile.TemporaryDirectory() as temp:
        tree = copy_tree(Path(temp) / "repo")
        cli = [sys.executable, "-m", "reconciler"]
        try:
            baseline = timed([*cli, "apply", "states/canary-baseline.yaml"], tree)
            split = timed([*cli, "apply", "states/canary.yaml", "--report", "report.md"], tree)
            noop = timed([*cli, "apply", "states/canary.yaml"], tree)
            compose = [
                "docker",
                "compose",
                "-f",
                "deploy/environments/canary/docker-compose.yml",
                "-p",
                "ktrdr-canary",
            ]
            recreate = timed(
                [
                    *compose,
                    "up",
                    "-d",
                    "--wait",
                    "--force-recreate",
                    "--no-deps",
                    "backend",
                    "backtest-worker",
                    "training-worker",
                ],
                tree,
            )
            report = (tree / "report.md").read_text()
            sizes = reconciler.apply(reconciler.load_state(tree / "states" / "canary.yaml")).sizes
        finally:
            down(tree)
    print(f"baseline apply (from the state of this machine):   {baseline:7.1f} s")
    print(f"baseline -> split apply (reconciler):               {split:7.1f} s")
    print(f"compose up -d --wait --force-recreate, same images: {recreate:7.1f} s")
    print(f"ratio split apply / compose up:                     {split / recreate:7.2f}")
    print(f"second apply (no-op, checks only):                  {noop:7.1f} s")
    backend, worker = sizes["ktrdr-backend:test"], sizes["ktrdr-worker-cpu:test"]
    print(
        f"image sizes: backend {backend / 1e6:.0f} MB, worker-cpu {worker / 1e6:.0f} MB, "
        f"worker/backend {worker / backend:.2f}"
    )
    print()
    print(report)


if __name__ == "__main__":
    main()
