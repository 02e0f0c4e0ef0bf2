"""Benchmark: what sampling and the statistics add to a canary apply, and what each way of
reading resource use costs, in the same run.

On a copy of the repository, converges the baseline (saving its result) and the split canary,
then times no-op applies of the split canary (median of `ROUNDS`): without the backtest check's
`sample` and the metric requirements (the baseline of this benchmark), as shipped (40 sampled
backtest starts), with `--save-result` (each service's runtime measured), and with
`--baseline` (measured, and every requirement judged by the statistics). Prints each one's
seconds and its extra seconds and percent over the first. Then one `docker stats --no-stream`
sample of the canary's containers against one read of their memory from the cgroup files
(local engine only; the way reconciler does not take, for comparison), and the phases of the
last measured apply (`timings` in its saved result: the checks, then the idle samples).
Run: .venv/bin/python -m tests.benchmarks.bench_metrics
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.benchmarks.timing import median_seconds
from tests.reconcile.test_loop_canary import copy_tree, down, ensure_wheelhouse

ROUNDS = 3
COMPOSE = ["docker", "compose", "-p", "ktrdr-canary"]


def run(argv: list[str], cwd: Path, *, verdict: bool = False) -> None:
    """Run `argv` in `cwd`; a failure stops the benchmark, except a failed verdict (exit 1)
    when `verdict`: its time is what is measured, whatever the comparison found."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0 and not (verdict and done.returncode == 1):
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def unsampled(tree: Path) -> Path:
    """states/canary.yaml without the check's `sample` and the metric requirements."""
    text = (tree / "states" / "canary.yaml").read_text()
    text = re.sub(r"\n *# Once it passed: .*\n *sample: .*", "", text)
    text = re.sub(
        r"\n  (latency_p95_increase_pct|error_rate_max|memory_increase_pct|ready_time_increase_pct):\n    .*",
        "",
        text,
    )
    path = tree / "states" / "canary-unsampled.yaml"
    path.write_text(text)
    return path


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
    ensure_wheelhouse()
    with tempfile.TemporaryDirectory() as temp:
        tree = copy_tree(Path(temp) / "repo")
        cli = [sys.executable, "-m", "reconciler", "apply"]
        try:
            run([*cli, "states/canary-baseline.yaml", "--save-result", "baseline.json"], tree)
            run([*cli, "states/canary.yaml"], tree)
            plain_state = str(unsampled(tree))
            plain = median_seconds(lambda: run([*cli, plain_state], tree), ROUNDS)
            sampled = median_seconds(lambda: run([*cli, "states/canary.yaml"], tree), ROUNDS)
            saved = median_seconds(
                lambda: run([*cli, "states/canary.yaml", "--save-result", "split.json"], tree),
                ROUNDS,
            )
            judged = median_seconds(
                lambda: run(
                    [*cli, "states/canary.yaml", "--baseline", "baseline.json"], tree, verdict=True
                ),
                ROUNDS,
            )
            ids = subprocess.run(
                [*COMPOSE, "ps", "-q"], cwd=tree, check=True, capture_output=True, text=True
            ).stdout.split()
            stats = median_seconds(
                lambda: run(["docker", "stats", "--no-stream", "--no-trunc", *ids], tree), 7
            )
            try:
                cgroup = median_seconds(lambda: [cgroup_memory(cid) for cid in ids], 7)
                cgroup_text = f"{cgroup:.3f} s"
            except (OSError, RuntimeError, ValueError) as error:
                cgroup_text = f"not readable here ({error})"
            split = json.loads((tree / "split.json").read_text())
            metrics, timings = split["metrics"], split["timings"]
        finally:
            down(tree)
    print(f"no-op apply of the split canary, median of {ROUNDS} each")
    print(f"  no sample, no requirements (baseline): {plain:6.1f} s  ratio 1.00")
    for name, seconds in (
        ("40 backtest starts sampled", sampled),
        ("sampled, --save-result (measured)", saved),
        ("sampled, --baseline (measured, judged)", judged),
    ):
        extra = seconds - plain
        print(
            f"  {name + ':':<39} {seconds:6.1f} s  ratio {seconds / plain:.2f}"
            f"  (+{extra:.1f} s, +{extra * 100 / plain:.0f}%)"
        )
    print(f"one resource sample of the canary's {len(ids)} containers, median of 7")
    print(f"  docker stats --no-stream:              {stats:.3f} s")
    print(f"  cgroup memory files (local only):      {cgroup_text}")
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    print(f"the last measured apply's phases: {phases}")
    for service, m in metrics.items():
        idle = statistics.median(m["memory_idle_bytes"]) / 1e6 if m["memory_idle_bytes"] else 0
        print(f"  {service}: ready {m['ready_seconds']} s, idle memory {idle:.0f} MB")


if __name__ == "__main__":
    main()
