"""Benchmark: `plan` on a converged stack against `docker compose up -d --wait`, same run.

Prints medians and their ratio (baseline: compose's own no-op up on the same stack): the
library's plan, the CLI's plan and no-op apply (start-up included: the target is at most 0.2 s
for the CLI's plan), and a bare interpreter's start for scale; and prints docker CLI calls per
plan for 3 and 40 services.
Run: .venv/bin/python -m tests.benchmarks.bench_plan
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import reconciler
from reconciler.reconcile.loop import make_adapter
from tests.benchmarks.timing import median_seconds
from tests.conftest import make_stack, remove_stack
from tests.observe.test_snapshot import down, write_fleet

ROUNDS = 7


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        stack = make_stack(Path(temp), port=18090)
        try:
            state = reconciler.load_state(stack.state_file)
            result = reconciler.apply(state)
            assert result.succeeded, result.error
            compose = stack.compose_argv()
            baseline = median_seconds(lambda: run([*compose, "up", "-d", "--wait"]))
            library = median_seconds(lambda: reconciler.plan(state))
            cli = median_seconds(
                lambda: run([sys.executable, "-m", "reconciler", "plan", str(stack.state_file)])
            )
            cli_apply = median_seconds(
                lambda: run([sys.executable, "-m", "reconciler", "apply", str(stack.state_file)])
            )
            bare = median_seconds(lambda: run([sys.executable, "-c", "pass"]))
        finally:
            remove_stack(stack)
        print(f"converged 3-service stack, median of {ROUNDS} runs each")
        print(f"  docker compose up -d --wait (baseline): {baseline:.3f} s  ratio 1.00")
        print(
            f"  reconciler.plan() (library):           {library:.3f} s  ratio {library / baseline:.2f}"
        )
        print(f"  python -m reconciler plan (CLI):       {cli:.3f} s  ratio {cli / baseline:.2f}")
        print(
            f"  python -m reconciler apply (CLI, no-op):{cli_apply:.3f} s  "
            f"ratio {cli_apply / baseline:.2f}"
        )
        print(f"  python -c pass (bare interpreter):     {bare:.3f} s  ratio {bare / baseline:.2f}")

        for count in (3, 40):
            project = f"rb{uuid.uuid4().hex[:8]}"
            state_file = write_fleet(Path(temp) / f"fleet{count}", project, count)
            try:
                fleet = reconciler.load_state(state_file)
                assert reconciler.apply(fleet).succeeded
                adapter = make_adapter(fleet)
                reconciler.plan(fleet, adapter=adapter)
                print(f"  docker CLI calls per plan, {count:2d} services: {len(adapter.calls)}")
            finally:
                down(state_file, project)


if __name__ == "__main__":
    main()
