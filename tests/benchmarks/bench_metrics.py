"""Benchmark: what measuring a run's runtime adds to an apply, and what each way of reading
resource use costs, in the same run.

On the converged e2e stack with a sampled HTTP check (60 requests) and the metric
requirements: the median of an apply without measuring (baseline), with `--save-result`
(samples and resource use measured), and with `--baseline` (measured and judged by the
statistics); the extra seconds and percent of each. Then one `docker stats --no-stream` sample
of the stack's three containers against one read of their memory from the cgroup files (local
engine only; the way reconciler does not take, for comparison).
Run: .venv/bin/python -m tests.benchmarks.bench_metrics
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import make_stack, remove_stack
from tests.reconcile.test_requirements import configure

ROUNDS = 5


def median_seconds(action: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Median wall time of `rounds` runs of `action`."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def cgroup_memory(container_id: str) -> int:
    """A container's memory use read from its cgroup (v1 or v2), through its main process."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container_id],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy
            return int(Path(f"/sys/fs/cgroup{path}/memory.current").read_text())
        if "memory" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes").read_text())
    raise RuntimeError("no memory cgroup")


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        stack = make_stack(Path(temp), port=18091)
        try:
            configure(stack)
            apply = [sys.executable, "-m", "reconciler", "apply", str(stack.state_file)]
            result = stack.directory / "result.json"
            run([*apply, "--save-result", str(result)])
            plain = median_seconds(lambda: run(apply))
            saved = median_seconds(lambda: run([*apply, "--save-result", str(result)]))
            judged = median_seconds(lambda: run([*apply, "--baseline", str(result)]))
            ids = subprocess.run(
                stack.compose_argv("ps", "-q"), check=True, capture_output=True, text=True
            ).stdout.split()
            stats = median_seconds(
                lambda: run(["docker", "stats", "--no-stream", "--no-trunc", *ids]), rounds=7
            )
            try:
                cgroup = median_seconds(lambda: [cgroup_memory(cid) for cid in ids], rounds=7)
                cgroup_text = f"{cgroup:.3f} s"
            except (OSError, RuntimeError, ValueError) as error:
                cgroup_text = f"not readable here ({error})"
            metrics = json.loads(result.read_text())["metrics"]
        finally:
            remove_stack(stack)
    print(f"converged 3-service stack, 60 sampled requests, median of {ROUNDS} applies each")
    print(f"  apply (no measurement, baseline):   {plain:.2f} s  ratio 1.00")
    for name, seconds in (("apply --save-result", saved), ("apply --baseline", judged)):
        extra = seconds - plain
        print(
            f"  {name + ':':<34} {seconds:.2f} s  ratio {seconds / plain:.2f}"
            f"  (+{extra:.2f} s, +{extra * 100 / plain:.0f}%)"
        )
    print(f"one resource sample of {len(ids)} containers, median of 7")
    print(f"  docker stats --no-stream:           {stats:.3f} s")
    print(f"  cgroup memory files (local only):   {cgroup_text}")
    print("measured: " + ", ".join(f"{s} ready {m['ready_seconds']} s" for s, m in metrics.items()))


if __name__ == "__main__":
    main()
