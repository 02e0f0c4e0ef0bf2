"""Benchmark: how often the verdict calls a regression between runs of the same build.

Converges the e2e stack with the verdict's e2e test's state (a sampled forking CGI check, 100
requests, 2 in flight, and the latency, error-rate and memory requirements), then applies it
`RUNS` times more with nothing changed, saving each run's result. Every ordered pair of those
results is then judged as `--baseline` would judge it (`RUNS * (RUNS - 1)` verdicts between
identical builds), and each requirement's outcomes are counted, with the closest call: the
run pair whose p95 or median came nearest to its limit, and the smallest p-value seen. A false
alarm is any "fail"; the verdict's e2e test asks for none in 10 reruns.
Run: .venv/bin/python -m tests.benchmarks.bench_false_alarms [RUNS]
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections import Counter
from pathlib import Path

from reconciler.reconcile.baseline import RunRecord, load_record
from reconciler.reconcile.requirements import Requirement, judge
from reconciler.state.load import load_state
from tests.conftest import make_stack, remove_stack, run_cli
from tests.reconcile.test_requirements import configure

RUNS = 12


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    with tempfile.TemporaryDirectory() as temp:
        stack = make_stack(Path(temp), port=18098)
        try:
            configure(stack)
            records: list[RunRecord] = []
            for index in range(runs + 1):
                saved = stack.directory / f"run-{index}.json"
                done = run_cli("apply", stack.state_file, "--save-result", saved)
                if done.returncode != 0:
                    raise SystemExit(f"run {index} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
                if index:  # the first apply converges the stack: its readiness is a fresh start's
                    records.append(load_record(saved))
            spec = load_state(stack.state_file).compare
            assert spec is not None
        finally:
            remove_stack(stack)
    verdicts: dict[str, list[Requirement]] = {}
    for baseline, current in itertools.permutations(records, 2):
        for requirement in judge(spec, baseline, current):
            verdicts.setdefault(requirement.requirement, []).append(requirement)
    print(f"{runs} applies of the same build, {runs * (runs - 1)} ordered pairs judged")
    for name, judged in sorted(verdicts.items()):
        outcomes = Counter(r.outcome for r in judged)
        counts = ", ".join(f"{outcome} {count}" for outcome, count in sorted(outcomes.items()))
        growth = max(judged, key=lambda r: (r.current or 0) - (r.baseline or 0))
        tested = [r.p_value for r in judged if r.p_value is not None]
        print(f"  {name}: {counts}")
        print(f"    largest growth: {growth.detail}")
        if tested:
            print(f"    smallest p-value: {min(tested):.3g}")
    alarms = sum(r.failed for judged in verdicts.values() for r in judged)
    print(f"false alarms: {alarms} of {sum(len(j) for j in verdicts.values())} judgements")


if __name__ == "__main__":
    main()
