"""A run's saved result (`apply --save-result`) and its comparison with a baseline (`--baseline`).

`RunRecord` is the saved JSON: what changed, every check, each image's ID and size, which image
each service ran, and the time each step took. `compare` sets a run against a baseline record:
image sizes (by service, since a split changes which image a service runs), regressions (checks
that passed in the baseline and fail now), new checks, and timing changes; with the state's
`compare:` requirements it also says which are unmet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.errors import InputError, Location
from reconciler.reconcile.requirements import Requirement, judge
from reconciler.runtime.files import read_text
from reconciler.state.model import CompareSpec

__all__ = [
    "CheckRecord",
    "Comparison",
    "ImageRecord",
    "MetricsRecord",
    "Regression",
    "Requirement",
    "RunRecord",
    "SampleRecord",
    "SizeChange",
    "TimingChange",
    "compare",
    "load_record",
]

FORMAT = "reconciler-result"
_MB = 1_000_000


class _Record(BaseModel):
    # Later versions may add keys: a reader ignores what it does not know.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)  # built on first use


class ImageRecord(_Record):
    """One image as the run found it at its end."""

    id: str
    size: int = Field(ge=0)


class SampleRecord(_Record):
    """An HTTP check's sample: each answered request's latency, and how many failed."""

    latencies_ms: list[float] = Field(default_factory=list)
    errors: int = Field(default=0, ge=0)


class CheckRecord(_Record):
    """One check's outcome."""

    name: str
    passed: bool
    detail: str = ""
    seconds: float = 0.0
    kind: str = ""
    sample: SampleRecord | None = None
    value: float | None = None  # a Prometheus check's reading


class MetricsRecord(_Record):
    """One service's runtime (`reconciler.reconcile.metrics.ServiceMetrics`)."""

    restarts: int = 0
    ready_seconds: float | None = None
    ready_after_seconds: float | None = None
    memory_idle_bytes: list[int] = Field(default_factory=list)
    memory_peak_bytes: int | None = None
    cpu_idle_pct: list[float] = Field(default_factory=list)
    cpu_peak_pct: float | None = None


class RunRecord(_Record):
    """The saved result of one apply."""

    format: Literal["reconciler-result"] = "reconciler-result"
    version: int = 1
    state: str
    saved_at: str = ""
    succeeded: bool
    error: str | None = None
    summary: dict[str, int] = Field(default_factory=dict)
    changes: list[dict[str, Any]] = Field(default_factory=list)
    checks: list[CheckRecord] = Field(default_factory=list)
    images: dict[str, ImageRecord] = Field(default_factory=dict)
    services: dict[str, str] = Field(default_factory=dict, description="service -> image")
    timings: dict[str, float] = Field(default_factory=dict, description="step -> seconds")
    metrics: dict[str, MetricsRecord] = Field(
        default_factory=dict, description="service -> its runtime"
    )

    def to_json(self) -> str:
        """The saved form: indented JSON, keys in declaration order."""
        return self.model_dump_json(indent=2) + "\n"


def load_record(path: Path) -> RunRecord:
    """Read a saved result; bad input raises `InputError` naming the file, line and key."""
    try:
        text = read_text(path, "baseline")
    except FileNotFoundError:
        raise InputError("baseline not found", Location(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        where = Location(path, error.lineno, error.colno)
        raise InputError(f"baseline is not JSON: {error.msg}", where) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f'not a saved result (want "format": "{FORMAT}"; write one with '
            "`apply --save-result PATH`)",
            Location(path, key="format"),
        )
    try:
        return RunRecord.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        line = _line_of(text, str(first["loc"][0])) if first["loc"] else None
        raise InputError(first["msg"], Location(path, line, None, key)) from None


def _line_of(text: str, key: str) -> int | None:
    """The 1-based line where a top-level `"key":` appears in indented JSON, if found."""
    needle = json.dumps(key) + ":"
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(needle):
            return number
    return None


@dataclass(frozen=True)
class SizeChange:
    """One image's size now against the image the same service ran in the baseline."""

    reference: str
    services: tuple[str, ...]
    before_reference: str | None
    before: int | None  # bytes; None when the baseline had no such image
    after: int

    @property
    def delta_mb(self) -> float | None:
        """Change in MB (negative: smaller now)."""
        return None if self.before is None else (self.after - self.before) / _MB

    @property
    def reduction_pct(self) -> float | None:
        """Size reduction in percent of the baseline (negative: larger now)."""
        if self.before is None or self.before == 0:
            return None
        return (self.before - self.after) * 100 / self.before


@dataclass(frozen=True)
class Regression:
    """A check that passed in the baseline and fails now."""

    name: str
    before: str
    now: str


@dataclass(frozen=True)
class TimingChange:
    """One step's time in the baseline and now."""

    step: str
    before: float | None
    after: float | None


@dataclass(frozen=True)
class Comparison:
    """A run set against a baseline record, and the `compare:` requirements it leaves unmet."""

    baseline_state: str
    baseline_saved_at: str
    sizes: tuple[SizeChange, ...] = ()
    regressions: tuple[Regression, ...] = ()
    fixed: tuple[str, ...] = ()  # failed in the baseline, pass now
    new_checks: tuple[str, ...] = ()
    not_run: tuple[str, ...] = ()  # in the baseline, not run now
    timings: tuple[TimingChange, ...] = ()
    unmet: tuple[str, ...] = field(default=())
    requirements: tuple[Requirement, ...] = ()  # the `compare:` metric requirements, judged

    def to_dict(self) -> dict[str, Any]:
        """JSON form, for `--json` and the saved result."""
        return {
            "baseline": {"state": self.baseline_state, "saved_at": self.baseline_saved_at},
            "sizes": [
                {
                    "image": size.reference,
                    "services": list(size.services),
                    "baseline_image": size.before_reference,
                    "baseline_bytes": size.before,
                    "bytes": size.after,
                    "delta_mb": _round(size.delta_mb),
                    "reduction_pct": _round(size.reduction_pct),
                }
                for size in self.sizes
            ],
            "regressions": [vars(regression) for regression in self.regressions],
            "fixed": list(self.fixed),
            "new_checks": list(self.new_checks),
            "not_run": list(self.not_run),
            "timings": [vars(timing) for timing in self.timings],
            "requirements": [vars(requirement) for requirement in self.requirements],
            "unmet": list(self.unmet),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def compare(
    baseline: RunRecord,
    current: RunRecord,
    spec: CompareSpec | None,
    *,
    measured: bool = True,
) -> Comparison:
    """Set `current` against `baseline`; `spec`'s requirements that fail are in `unmet`. The
    requirements on metrics are judged only for a `measured` run (not `plan --baseline`)."""
    sizes = _sizes(baseline, current)
    before = {check.name: check for check in baseline.checks}
    now = {check.name: check for check in current.checks}
    regressions = tuple(
        Regression(name, before[name].detail, check.detail)
        for name, check in now.items()
        if name in before and before[name].passed and not check.passed
    )
    fixed = tuple(
        name
        for name, check in now.items()
        if name in before and not before[name].passed and check.passed
    )
    steps = [step for step in current.timings if step in baseline.timings or step == "total"]
    steps += [step for step in baseline.timings if step not in current.timings]
    timings = tuple(
        TimingChange(step, baseline.timings.get(step), current.timings.get(step)) for step in steps
    )
    requirements = judge(spec, baseline, current) if spec is not None and measured else ()
    failed = tuple(f"{r.requirement} {r.subject}: {r.detail}" for r in requirements if r.failed)
    return Comparison(
        baseline.state,
        baseline.saved_at,
        sizes,
        regressions,
        fixed,
        new_checks=tuple(name for name in now if name not in before),
        not_run=tuple(name for name in before if name not in now) if current.checks else (),
        timings=timings,
        unmet=_unmet(spec, sizes, regressions) + failed,
        requirements=requirements,
    )


def _sizes(baseline: RunRecord, current: RunRecord) -> tuple[SizeChange, ...]:
    """Each image of the current run, against what the same service ran in the baseline."""
    users: dict[str, list[str]] = {}
    for service, reference in current.services.items():
        users.setdefault(reference, []).append(service)
    changes = []
    for reference, image in current.images.items():
        services = tuple(users.get(reference, ()))
        before_ref = next(
            (baseline.services[s] for s in services if baseline.services.get(s) in baseline.images),
            reference if reference in baseline.images else None,
        )
        before = baseline.images[before_ref].size if before_ref is not None else None
        changes.append(SizeChange(reference, services, before_ref, before, image.size))
    return tuple(changes)


def _unmet(
    spec: CompareSpec | None, sizes: tuple[SizeChange, ...], regressions: tuple[Regression, ...]
) -> tuple[str, ...]:
    if spec is None:
        return ()
    unmet = []
    by_reference = {size.reference: size for size in sizes}
    for reference, wanted in spec.size_reduction_pct.items():
        size = by_reference.get(reference)
        if size is None:
            unmet.append(f"{reference}: not among this run's images, so its size is unknown")
        elif size.reduction_pct is None:
            unmet.append(f"{reference}: the baseline has no image for {', '.join(size.services)}")
        elif size.reduction_pct < wanted:
            unmet.append(
                f"{reference}: size reduction {size.reduction_pct:.1f}% is under the required "
                f"{wanted:g}% ({size.before_reference} {size.before / _MB:.0f} MB -> "  # type: ignore[operator]
                f"{size.after / _MB:.0f} MB)"
            )
    if spec.no_regressions:
        unmet += [
            f"regression: {r.name!r} passed in the baseline and fails now ({r.now})"
            for r in regressions
        ]
    return tuple(unmet)
