"""The reconcile loop: observe -> diff (pure, per step) -> apply in step order -> verify.

This is the library's front door (`reconciler.plan`, `reconciler.apply`, `reconciler.down`);
the CLI is a thin shell over it. Nothing here prints; progress goes to structlog.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import structlog

from reconciler.docker.adapter import DockerAdapter, DockerCall
from reconciler.errors import (
    ApplyError,
    ConvergenceError,
    HealthTimeoutError,
    InputError,
    ReconcilerError,
)
from reconciler.interrupt import StopRequested, stop_point
from reconciler.observe import Observed, observe
from reconciler.plan import STEP_ORDER, Change, Plan, Step
from reconciler.state import State
from reconciler.steps import checks, compose_file, images, migrations, services
from reconciler.steps.checks import CheckResult

__all__ = [
    "ApplyResult",
    "CheckFailedError",
    "apply",
    "diff",
    "down",
    "lock_name",
    "make_adapter",
    "names_in_order",
    "plan",
    "select_steps",
]

_log = structlog.get_logger(__name__)
_IMPLEMENTED = STEP_ORDER


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did: the plan it followed, what it changed, checks, and how it ended."""

    plan: Plan
    applied: tuple[Change, ...] = ()
    failed: tuple[Change, ...] = ()
    error: ReconcilerError | None = None
    checks: tuple[CheckResult, ...] = ()
    rolled_back: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)
    calls: tuple[DockerCall, ...] = field(default=(), repr=False)

    @property
    def succeeded(self) -> bool:
        """True when every change was applied, the environment converged and checks passed."""
        return self.error is None

    @property
    def changed(self) -> bool:
        """True when apply changed something (Ansible's `changed`)."""
        return bool(self.applied)


def select_steps(only: Iterable[str] = (), skip: Iterable[str] = ()) -> tuple[Step, ...]:
    """Steps to run, in apply order, from `--only` and `--skip` names."""
    names = {str(step) for step in Step}
    only, skip = list(only), list(skip)
    for name in [*only, *skip]:
        if name not in names:
            raise InputError(f"unknown step {name!r}; steps are: {', '.join(names_in_order())}")
    chosen = [step for step in STEP_ORDER if (not only or step in only) and step not in skip]
    return tuple(step for step in chosen if step in _IMPLEMENTED)


def names_in_order() -> list[str]:
    """Step names in apply order."""
    return [str(step) for step in STEP_ORDER]


def lock_name(state: State) -> str:
    """The lock key of a state's compose project: its name, else one derived from the file."""
    if state.compose.project:
        return state.compose.project
    digest = hashlib.sha256(str(state.compose.file).encode()).hexdigest()[:12]
    return f"{state.compose.file.parent.name}-{digest}"


def make_adapter(state: State) -> DockerAdapter:
    """The docker adapter for the state's compose file and project."""
    return DockerAdapter(state.compose.file, state.compose.project)


def plan(
    state: State,
    *,
    steps: Collection[Step] = _IMPLEMENTED,
    adapter: DockerAdapter | None = None,
) -> Plan:
    """Observe and diff: what `apply` would change. Changes nothing."""
    adapter = adapter or make_adapter(state)
    return diff(state, _observe(state, adapter, steps), steps)


def apply(
    state: State,
    *,
    steps: Collection[Step] = _IMPLEMENTED,
    adapter: DockerAdapter | None = None,
    rollback_on_failure: bool = False,
) -> ApplyResult:
    """Plan, apply the changes step by step, observe again to verify, then run the checks.

    Raises `InputError` (before anything is changed) for invalid input; every other failure is
    reported in the result, with the change that failed. With `rollback_on_failure`, a failure
    after the compose file or images changed restores the previous file bytes and images and
    re-converges the services that ran before.
    """
    adapter = adapter or make_adapter(state)
    observed = _observe(state, adapter, steps)
    the_plan = diff(state, observed, steps)
    run = _Run(state, adapter, the_plan)
    if the_plan.empty:
        _log.info("in sync; nothing to do", ok=len(the_plan.ok))
    for step in STEP_ORDER:
        changes = the_plan.for_step(step)
        if not changes:
            continue
        try:
            stop_point(f"step {step}")
            done = _apply_step(
                step, changes=changes, state=state, observed=observed, adapter=adapter
            )
        except ReconcilerError as error:
            _log.error("step failed", step=str(step), error=str(error))
            failed = _failed_changes(changes, error)
            run.applied.extend(c for c in changes if c not in failed)
            return run.fail(error, failed, observed, rollback_on_failure)
        for change in done:
            _log.info("changed", step=str(step), target=change.target, action=change.action)
        run.applied.extend(done)
    try:
        final = _observe(state, adapter, steps) if the_plan.changes else observed
        remaining = diff(state, final, steps)
    except ReconcilerError as error:
        return run.fail(error, (), observed, rollback_on_failure)
    if not remaining.empty:
        lines = tuple(f"{c.step} {c.action} {c.target}: {c.reason}" for c in remaining.changes)
        still = ConvergenceError("still differs after apply:\n  " + "\n  ".join(lines), lines)
        return run.fail(still, remaining.changes, observed, rollback_on_failure)
    if run.applied:
        _log.info("converged", changed=len(run.applied))
    if Step.CHECKS in steps:
        try:
            stop_point("checks")
        except StopRequested as error:
            return run.result(error)
        run.checks = checks.run(state, adapter, final.images)
        failing = [result for result in run.checks if not result.passed]
        if failing:
            names = ", ".join(f"{r.name} ({r.detail})" for r in failing)
            return run.fail(
                CheckFailedError(f"checks failed: {names}"), (), observed, rollback_on_failure
            )
    run.sizes = {ref: image.size for ref, image in final.images.items()}
    return run.result()


class CheckFailedError(ApplyError):
    """One or more functional checks did not pass before their deadline."""


@dataclass
class _Run:
    """The mutable record of one apply, turned into a frozen `ApplyResult` at the end."""

    state: State
    adapter: DockerAdapter
    plan: Plan
    applied: list[Change] = field(default_factory=list)
    checks: tuple[CheckResult, ...] = ()
    rolled_back: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)

    def result(
        self, error: ReconcilerError | None = None, failed: tuple[Change, ...] = ()
    ) -> ApplyResult:
        return ApplyResult(
            self.plan,
            tuple(self.applied),
            failed,
            error,
            self.checks,
            self.rolled_back,
            self.sizes,
            tuple(self.adapter.calls),
        )

    def fail(
        self,
        error: ReconcilerError,
        failed: tuple[Change, ...],
        before: Observed,
        rollback: bool,
    ) -> ApplyResult:
        if rollback and self.applied and not isinstance(error, StopRequested):
            self.rolled_back = _roll_back(self.state, self.adapter, before, self.applied)
        return self.result(error, failed)


def _roll_back(
    state: State, adapter: DockerAdapter, before: Observed, applied: list[Change]
) -> tuple[str, ...]:
    """Restore the compose file bytes and images of `before`, then re-converge services."""
    done: list[str] = []
    try:
        if any(change.step is Step.COMPOSE_FILE for change in applied):
            compose_file.write_atomically(before.compose_file, before.compose_text.encode("utf-8"))
            done.append(f"restored {state.shown(state.compose.file)} to its previous bytes")
        for change in applied:
            old = before.images.get(change.target) if change.step is Step.IMAGES else None
            if old is not None and change.action in {"build", "import", "pull"}:
                adapter.tag(old.id, change.target)
                done.append(f"re-tagged {change.target} to its previous image {old.id[7:19]}")
        services_only = (Step.SERVICES,)
        observed = observe(state, adapter, services_only, {})
        plan_back = diff(state, observed, services_only)
        if plan_back.changes:
            assert observed.config is not None
            services.apply(plan_back.changes, state, adapter, observed.config)
            done += [f"{c.action} {c.target} as before" for c in plan_back.changes]
    except ReconcilerError as error:
        done.append(f"rollback incomplete: {error}")
        _log.error("rollback failed", error=str(error))
    for line in done:
        _log.warning("rolled back", what=line)
    return tuple(done)


def down(state: State, *, volumes: bool = False, adapter: DockerAdapter | None = None) -> None:
    """Stop and remove the project's containers (and named volumes when `volumes`)."""
    adapter = adapter or make_adapter(state)
    adapter.down(volumes=volumes)


def _failed_changes(changes: tuple[Change, ...], error: ReconcilerError) -> tuple[Change, ...]:
    """The changes an error is about: the services that never got ready, else the whole step."""
    if isinstance(error, HealthTimeoutError):
        failed = tuple(change for change in changes if change.target in error.diagnostics)
        if failed:
            return failed
    return changes


def _pins(state: State, steps: Collection[Step]) -> dict[str, str]:
    # With compose-file skipped, the file is not edited, so docker steps follow the file as is.
    return state.pins() if Step.COMPOSE_FILE in steps else {}


def _observe(state: State, adapter: DockerAdapter, steps: Collection[Step]) -> Observed:
    return observe(state, adapter, steps, _pins(state, steps))


def diff(state: State, observed: Observed, steps: Collection[Step] = _IMPLEMENTED) -> Plan:
    """Pure: the changes that take `observed` to `state`, for `steps`, in apply order."""
    pins = _pins(state, steps)
    result = Plan()
    if Step.COMPOSE_FILE in steps:
        result += compose_file.diff(state, observed)
    rebuilt: set[str] = set()
    if Step.IMAGES in steps:
        image_plan = images.diff(state, observed)
        rebuilt = {c.target for c in image_plan.changes if c.action != "download"}
        result += image_plan
    if Step.SERVICES in steps:
        result += services.diff(pins, observed, rebuilt=rebuilt)
    if Step.MIGRATIONS in steps:
        result += migrations.diff(state, observed.migrations)
    if Step.CHECKS in steps:
        result += checks.diff(state)
    return result


def _apply_step(
    step: Step,
    *,
    changes: tuple[Change, ...],
    state: State,
    observed: Observed,
    adapter: DockerAdapter,
) -> tuple[Change, ...]:
    """Apply one step's changes; return those really made."""
    if step is Step.COMPOSE_FILE:
        compose_file.apply(state, observed)
    elif step is Step.IMAGES:
        images.apply(changes, state, observed, adapter)
    elif step is Step.SERVICES:
        assert observed.config is not None
        services.apply(changes, state, adapter, observed.config)
    elif step is Step.MIGRATIONS:
        return migrations.apply(changes, state, adapter)
    return changes
