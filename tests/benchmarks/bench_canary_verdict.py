"""Benchmark: does the split canary's verdict call a regression that is not there, when the
machine is busier during the canary than during the baseline (as in CI, where other tests run
beside it)?

On a copy of the repository, converges the monolith baseline (saving its result), then applies
the split canary once (recreating its services) and `RUNS - 1` times more with nothing changed,
saving each result, with `LOAD` busy loops running on the machine during the canary's applies
only. Each canary result is judged against the baseline as `apply --baseline` would, with
`states/canary.yaml`'s `compare:`, and also by the plain rule (the same limits, but the test
asking whether the samples are larger at all) for comparison. Prints each requirement's
outcomes under both, and each run's p95 and median memory of the backend.
Run: .venv/bin/python -m tests.benchmarks.bench_canary_verdict [RUNS] [LOAD]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from reconciler.reconcile.baseline import RunRecord, load_record
from reconciler.reconcile.requirements import judge
from reconciler.state.load import load_state
from reconciler.state.model import CompareSpec
from reconciler.stats import percentile
from tests.benchmarks.bench_metrics import run
from tests.benchmarks.bench_verdict_power import plain_fails
from tests.reconcile.test_loop_canary import copy_tree, down, ensure_wheelhouse

RUNS = 6
LOAD = 2
CHECK = "v3_minimal backtest completes"


def _plain(spec: CompareSpec, baseline: RunRecord, current: RunRecord) -> dict[str, bool]:
    """The latency and memory requirements judged by the plain rule: beyond the limit and the
    floor, and the samples larger at all at the confidence."""
    alpha = 1 - spec.confidence
    failed = {}
    before = {c.name: c for c in baseline.checks}
    now = {c.name: c for c in current.checks}
    for name, limit in spec.latency_p95_increase_pct.items():
        old_sample, new_sample = before[name].sample, now[name].sample
        assert old_sample is not None
        assert new_sample is not None
        old, new = old_sample.latencies_ms, new_sample.latencies_ms
        p95s = percentile(old, 95), percentile(new, 95)
        failed["latency_p95_increase_pct"] = plain_fails(
            old, new, *p95s, limit=limit, floor=spec.latency_floor_ms, alpha=alpha
        )
    for service, limit in spec.memory_increase_pct.items():
        old_mb = [v / 1e6 for v in baseline.metrics[service].memory_idle_bytes]
        new_mb = [v / 1e6 for v in current.metrics[service].memory_idle_bytes]
        medians = statistics.median(old_mb), statistics.median(new_mb)
        failed["memory_increase_pct"] = plain_fails(
            old_mb, new_mb, *medians, limit=limit, floor=spec.memory_floor_mb, alpha=alpha
        )
    return failed


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    load = int(sys.argv[2]) if len(sys.argv) > 2 else LOAD
    ensure_wheelhouse()
    cli = [sys.executable, "-m", "reconciler", "apply"]
    with tempfile.TemporaryDirectory() as temp:
        tree = copy_tree(Path(temp) / "repo")
        busy: list[subprocess.Popen[bytes]] = []
        try:
            down(tree)
            run([*cli, "states/canary-baseline.yaml", "--save-result", "baseline.json"], tree)
            busy = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)
            ]
            for index in range(runs):
                saved = f"canary-{index}.json"
                run([*cli, "states/canary.yaml", "--save-result", saved], tree)
            spec = load_state(tree / "states" / "canary.yaml").compare
            assert spec is not None
            baseline = load_record(tree / "baseline.json")
            canaries = [load_record(tree / f"canary-{index}.json") for index in range(runs)]
        finally:
            for process in busy:
                process.kill()
                process.wait()
            down(tree)
    verdict: Counter[tuple[str, str]] = Counter()
    plain: Counter[str] = Counter()
    base_check = next(c for c in baseline.checks if c.name == CHECK)
    assert base_check.sample is not None
    print(f"baseline (no load): p95 {percentile(base_check.sample.latencies_ms, 95):.1f} ms")
    for index, canary in enumerate(canaries):
        judged = judge(spec, baseline, canary)
        for requirement in judged:
            verdict[requirement.requirement, requirement.outcome] += 1
        for name, failed in _plain(spec, baseline, canary).items():
            plain[name] += failed
        check = next(c for c in canary.checks if c.name == CHECK)
        assert check.sample is not None
        lines = "; ".join(
            f"{r.requirement} {r.outcome}" + (f" p={r.p_value:.3g}" if r.p_value else "")
            for r in judged
        )
        print(
            f"canary {index} ({load} busy loops): p95 {percentile(check.sample.latencies_ms, 95):.1f} ms; {lines}"
        )
    print(f"{runs} canary runs against the baseline, {load} busy loops on {os.cpu_count()} cores")
    for name in sorted({name for name, _ in verdict}):
        counts = ", ".join(f"{o} {n}" for (r, o), n in sorted(verdict.items()) if r == name)
        extra = f"; plain rule: fail {plain[name]}" if name in plain else ""
        print(f"  {name}: {counts}{extra}")


if __name__ == "__main__":
    main()
