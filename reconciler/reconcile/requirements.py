"""The `compare:` requirements on a run's metrics, judged against the baseline's.

Each requirement is one of pass, fail or inconclusive, with the numbers it was judged on:

- `latency_p95_increase_pct`: an HTTP check's sampled latencies. It fails when the 95th
  percentile grew by more than the limit and by more than `latency_floor_ms`, and the one-sided
  Mann-Whitney U test finds the latencies larger *by more than both* at `confidence` (Kayenta's
  rule: a difference must be both large and real, the shift's confidence interval clearing the
  tolerance rather than only zero). Fewer than `MIN_LATENCY_SAMPLES` on a side is inconclusive.
- `error_rate_max`: the share of the check's sampled requests that failed, against the limit.
- `memory_increase_pct`: a service's memory after the checks: its median sample against the
  baseline's (and `memory_floor_mb`), and the test on the samples, as for latency.
  Inconclusive when the samples are too few for the test ever to reach `confidence`.
- `prometheus_increase_pct`: a `prometheus` check's reading against the baseline's: one value a
  side, so the limit alone decides.
- `ready_time_increase_pct`: a service's one time from start to ready against the baseline's
  (and `ready_time_floor_s`): there is one value a side, so the limits alone decide. A
  healthcheck sees readiness once an interval, so this run's time counts from the earliest it
  can have been ready (`ready_after_seconds`: it was seen not ready then): one missed probe is
  not called a slower start.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from reconciler.state.model import CompareSpec
from reconciler.stats import mann_whitney_greater, percentile

if TYPE_CHECKING:
    from reconciler.reconcile.baseline import CheckRecord, MetricsRecord, RunRecord

__all__ = ["MIN_LATENCY_SAMPLES", "Requirement", "judge"]

# A 95th percentile of fewer latencies than this is not one (with 20, one value lies above it).
MIN_LATENCY_SAMPLES = 20
_MB = 1_000_000

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Requirement:
    """One requirement judged: on what (`subject`: a check or a service), its outcome, the
    baseline's and this run's value (`unit`), the test's p-value when one was run, and a line
    for people saying all of it."""

    requirement: str
    subject: str
    outcome: Outcome
    detail: str
    baseline: float | None = None
    current: float | None = None
    unit: str = ""
    limit: float | None = None
    p_value: float | None = None

    @property
    def failed(self) -> bool:
        """True for a regression: it fails the apply."""
        return self.outcome == "fail"


def judge(spec: CompareSpec, baseline: RunRecord, current: RunRecord) -> tuple[Requirement, ...]:
    """Every metric requirement of `spec`, judged on the two runs."""
    before = {check.name: check for check in baseline.checks}
    now = {check.name: check for check in current.checks}
    judged = [
        _latency(spec, name, limit, before.get(name), now.get(name))
        for name, limit in spec.latency_p95_increase_pct.items()
    ]
    judged += [
        _error_rate(name, limit, now.get(name)) for name, limit in spec.error_rate_max.items()
    ]
    judged += [
        _reading(name, limit, before.get(name), now.get(name))
        for name, limit in spec.prometheus_increase_pct.items()
    ]
    judged += [
        _memory(spec, name, limit, baseline.metrics.get(name), current.metrics.get(name))
        for name, limit in spec.memory_increase_pct.items()
    ]
    judged += [
        _ready_time(spec, name, limit, baseline.metrics.get(name), current.metrics.get(name))
        for name, limit in spec.ready_time_increase_pct.items()
    ]
    return tuple(judged)


def _latency(
    spec: CompareSpec,
    name: str,
    limit: float,
    before: CheckRecord | None,
    now: CheckRecord | None,
) -> Requirement:
    what = "latency_p95_increase_pct"
    old = before.sample.latencies_ms if before is not None and before.sample else []
    new = now.sample.latencies_ms if now is not None and now.sample else []
    if len(old) < MIN_LATENCY_SAMPLES or len(new) < MIN_LATENCY_SAMPLES:
        detail = (
            f"too few latencies to judge (baseline {len(old)}, now {len(new)}; "
            f"at least {MIN_LATENCY_SAMPLES} each)"
        )
        return Requirement(what, name, "inconclusive", detail, unit="ms", limit=limit)
    shift = _Shift(what, name, limit, spec.latency_floor_ms, "ms", "p95", "requests")
    return shift.judged(old, new, percentile(old, 95), percentile(new, 95), spec.confidence)


@dataclass(frozen=True)
class _Shift:
    """A requirement on samples: this run's `statistic` against the baseline's may grow by at
    most `limit` percent and `floor` units, unless the Mann-Whitney U test does not find this
    run's samples larger than the baseline's by more than both (then it passes).

    The test asks the question the limits ask, not only whether anything moved: two runs of
    one build differ by more than their samples show (the machine's load, the engine), so a
    shift of a few percent is "significant" between identical builds. It is an intersection-
    union test: this run's samples divided by 1 + `limit`/100 must be larger than the
    baseline's, and so must its samples less `floor`, each one-sided at `confidence`; the
    p-value is the larger of the two, and the pair holds its level without correction."""

    what: str
    subject: str
    limit: float
    floor: float
    unit: str
    statistic: str
    noun: str

    def judged(
        self,
        old: Sequence[float],
        new: Sequence[float],
        before: float,
        now: float,
        confidence: float,
    ) -> Requirement:
        growth = _growth(before, now)
        scale = 1 + self.limit / 100
        test = max(
            mann_whitney_greater([value / scale for value in new], old),
            mann_whitney_greater([value - self.floor for value in new], old),
            key=lambda result: result.p_value,
        )
        alpha = round(1 - confidence, 12)
        regressed = growth > self.limit and now - before > self.floor and test.p_value < alpha
        detail = (
            f"{self.statistic} {before:.1f} {self.unit} -> {now:.1f} {self.unit} "
            f"({growth:+.1f}%, at most +{self.limit:g}% and {self.floor:g} {self.unit}); "
            f"{_test_text(test.p_value, alpha)}; {len(old)} and {len(new)} {self.noun}"
        )
        outcome: Outcome = "fail" if regressed else "pass"
        p_value = _rounded(test.p_value)
        return Requirement(
            self.what, self.subject, outcome, detail, before, now, self.unit, self.limit, p_value
        )


def _error_rate(name: str, limit: float, now: CheckRecord | None) -> Requirement:
    what = "error_rate_max"
    sample = now.sample if now is not None else None
    sent = len(sample.latencies_ms) + sample.errors if sample is not None else 0
    if sample is None or not sent:
        detail = "no sampled requests to judge (does the check have `http.sample`?)"
        return Requirement(what, name, "inconclusive", detail, limit=limit)
    rate = sample.errors / sent
    detail = f"{sample.errors} of {sent} sampled requests failed ({rate:.2%}, at most {limit:.2%})"
    outcome: Outcome = "fail" if rate > limit else "pass"
    return Requirement(what, name, outcome, detail, None, rate, "", limit)


def _memory(
    spec: CompareSpec,
    name: str,
    limit: float,
    before: MetricsRecord | None,
    now: MetricsRecord | None,
) -> Requirement:
    what = "memory_increase_pct"
    old = before.memory_idle_bytes if before is not None else []
    new = now.memory_idle_bytes if now is not None else []
    alpha = round(1 - spec.confidence, 12)
    if not old or not new or 1 / math.comb(len(old) + len(new), len(new)) >= alpha:
        detail = (
            f"too few memory samples to judge (baseline {len(old)}, now {len(new)}): the "
            f"Mann-Whitney U test could not reach p < {alpha:g}"
        )
        return Requirement(what, name, "inconclusive", detail, unit="MB", limit=limit)
    shift = _Shift(what, name, limit, spec.memory_floor_mb, "MB", "median", "samples")
    old_mb, new_mb = [v / _MB for v in old], [v / _MB for v in new]  # in the floor's unit
    return shift.judged(
        old_mb, new_mb, statistics.median(old_mb), statistics.median(new_mb), spec.confidence
    )


def _ready_time(
    spec: CompareSpec,
    name: str,
    limit: float,
    before: MetricsRecord | None,
    now: MetricsRecord | None,
) -> Requirement:
    what = "ready_time_increase_pct"
    old = before.ready_seconds if before is not None else None
    new = now.ready_seconds if now is not None else None
    if old is None or new is None:
        detail = (
            f"ready time not known (baseline {_seconds(old)}, now {_seconds(new)}): it is "
            "measured for a service with a healthcheck that this run's wait saw become healthy"
        )
        return Requirement(what, name, "inconclusive", detail, old, new, "s", limit)
    earliest = now.ready_after_seconds if now is not None else None
    window = ""
    if earliest is not None and earliest < new:
        window = (
            f"; ready between {earliest:.2f} and {new:.2f} s: health checks look once an interval"
        )
    least = new if earliest is None else min(earliest, new)
    detail = (
        f"{old:.2f} s -> {new:.2f} s ({_growth(old, new):+.1f}%, at most +{limit:g}% and "
        f"{spec.ready_time_floor_s:g} s{window}; one value a side, no statistical test)"
    )
    slower = _growth(old, least) > limit and least - old > spec.ready_time_floor_s
    outcome: Outcome = "fail" if slower else "pass"
    return Requirement(what, name, outcome, detail, old, new, "s", limit)


def _reading(
    name: str, limit: float, before: CheckRecord | None, now: CheckRecord | None
) -> Requirement:
    what = "prometheus_increase_pct"
    old = before.value if before is not None else None
    new = now.value if now is not None else None
    if old is None or new is None:
        detail = f"no reading to compare (baseline {_number(old)}, now {_number(new)})"
        return Requirement(what, name, "inconclusive", detail, old, new, "", limit)
    growth = _growth(old, new)
    detail = f"{old:g} -> {new:g} ({growth:+.1f}%, at most +{limit:g}%; one value a side)"
    outcome: Outcome = "fail" if growth > limit else "pass"
    return Requirement(what, name, outcome, detail, old, new, "", limit)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _growth(old: float, new: float) -> float:
    """How much `new` grew against `old`, in percent (a growth from 0 is infinite)."""
    if old <= 0:
        return 0.0 if new <= 0 else math.inf
    return (new - old) * 100 / old


def _test_text(p_value: float, alpha: float) -> str:
    verdict = "larger" if p_value < alpha else "not shown larger"
    return f"Mann-Whitney U p = {p_value:.3g} ({verdict} by more than both at p < {alpha:g})"


def _rounded(value: float) -> float:
    return float(f"{value:.4g}")


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} s"
