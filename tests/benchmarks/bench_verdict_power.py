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
from collections.abc import Sequence

from reconciler.reconcile.baseline import RunRecord
from reconciler.reconcile.requirements import judge
from reconciler.state.model import CompareSpec
from reconciler.stats import mann_whitney_greater, percentile
from tests.reconcile.test_requirements import lognormal

DRAWS = 300
LIMIT, FLOOR = 25.0, 20.0
SCALES = (1.0, 1.12, 1.2, 1.3, 1.6, 2.0)


def _record(latencies: list[float]) -> RunRecord:
    sample = {"latencies_ms": latencies, "errors": 0}
    check = {"name": "api", "passed": True, "kind": "http", "sample": sample}
    return RunRecord.model_validate({"state": "s", "succeeded": True, "checks": [check]})


def plain_fails(
    old: Sequence[float],
    new: Sequence[float],
    before: float,
    now: float,
    *,
    limit: float,
    floor: float,
    alpha: float = 0.05,
) -> bool:
    """The plain rule, this benchmark's baseline: the statistic (`before`, `now`) beyond the
    limit and the floor, and the samples larger at all at `alpha`."""
    large = now > before * (1 + limit / 100) and now - before > floor
    return large and mann_whitney_greater(new, old).p_value < alpha


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
                old, new = lognormal(rng, 1.0, count), lognormal(rng, scale, count)
                p95s = percentile(old, 95), percentile(new, 95)
                plain += plain_fails(old, new, *p95s, limit=LIMIT, floor=FLOOR)
                (judged,) = judge(spec, _record(old), _record(new))
                verdict += judged.outcome == "fail"
            print(
                f"{count:>8} {scale:>6.2f}x {plain * 100 / draws:>16.0f}% "
                f"{verdict * 100 / draws:>13.0f}%"
            )


if __name__ == "__main__":
    main()
