"""Benchmark: how often the latency verdict fails, by how much slower the canary really is.

Draws seeded latencies shaped as a loaded endpoint's (lognormal: median 60 ms, p95 about
126 ms) for a baseline and for a canary whose every request is `x` times slower, `DRAWS` times
per row, and judges each pair with `latency_p95_increase_pct: 25` (floor 20 ms, confidence
0.95) two ways: the verdict's rule (the test asks whether the canary is slower by more than the
limits) and, as the baseline of this comparison, the plain test (whether it is slower at all)
with the same p95 condition. A row within the limit (x <= 1.25) should fail rarely: each of its
failures is a false alarm; a row beyond it should fail often: that is the rule's power.
Run: .venv/bin/python -m tests.benchmarks.bench_verdict_power [DRAWS]
"""

from __future__ import annotations

import random
import sys

from reconciler.reconcile.baseline import RunRecord
from reconciler.reconcile.requirements import judge
from reconciler.state.model import CompareSpec
from reconciler.stats import mann_whitney_greater, percentile

DRAWS = 300
LIMIT, FLOOR = 25.0, 20.0
SCALES = (1.0, 1.12, 1.2, 1.3, 1.6, 2.0)


def _record(latencies: list[float]) -> RunRecord:
    sample = {"latencies_ms": latencies, "errors": 0}
    check = {"name": "api", "passed": True, "kind": "http", "sample": sample}
    return RunRecord.model_validate({"state": "s", "succeeded": True, "checks": [check]})


def _plain_fails(old: list[float], new: list[float]) -> bool:
    before, now = percentile(old, 95), percentile(new, 95)
    large = now > before * (1 + LIMIT / 100) and now - before > FLOOR
    return large and mann_whitney_greater(new, old).p_value < 0.05


def main() -> None:
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else DRAWS
    spec = CompareSpec.model_validate(
        {"latency_p95_increase_pct": {"api": LIMIT}, "latency_floor_ms": FLOOR}
    )
    print(f"latency_p95_increase_pct {LIMIT:g}%, floor {FLOOR:g} ms; {draws} seeded draws a row")
    print(f"{'requests':>8} {'slower':>7} {'plain test fails':>17} {'verdict fails':>14}")
    for count in (40, 100, 200):
        for scale in SCALES:
            rng = random.Random(7)
            plain = verdict = 0
            for _ in range(draws):
                old = [rng.lognormvariate(4.1, 0.45) for _ in range(count)]
                new = [scale * rng.lognormvariate(4.1, 0.45) for _ in range(count)]
                plain += _plain_fails(old, new)
                (judged,) = judge(spec, _record(old), _record(new))
                verdict += judged.outcome == "fail"
            print(
                f"{count:>8} {scale:>6.2f}x {plain * 100 / draws:>16.0f}% "
                f"{verdict * 100 / draws:>13.0f}%"
            )


if __name__ == "__main__":
    main()
