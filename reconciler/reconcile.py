"""The reconcile loop: observe -> diff (pure, per step) -> apply in step order -> verify.

This is the library's front door (`reconciler.plan`, `reconciler.apply`, `reconciler.down`);
the CLI is a thin shell over it. Nothing here prints; progress goes to structlog.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import structlog

from reconciler.docker.adapter import DockerAdapter, DockerCall
from reconciler.errors import ConvergenceError, HealthTimeoutError, InputError, ReconcilerError
from reconciler.observe import Observed, observe
from reconciler.plan import STEP_ORDER, Change, Plan, Step
from reconciler.state import State
from reconciler.steps import compose_file, images, services

__all__ = [
    "ApplyResult",
    "apply",
    "diff",
    "down",
    "make_adapter",
    "names_in_order",
    "plan",
    "select_steps",
]

_log = structlog.get_logger(__name__)
_IMPLEMENTED = (Step.COMPOSE_FILE, Step.IMAGES, Step.SERVICES)


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did: the plan it followed, what it changed, and how it ended."""

    plan: Plan
    applied: tuple[Change, ...] = ()
    failed: tuple[Change, ...] = ()
    error: ReconcilerError | None = None
    calls: tuple[DockerCall, ...] = field(default=(), repr=False)

    @property
    def succeeded(self) -> bool:
        """True when every change was applied and the environment verified as converged."""
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
) -> ApplyResult:
    """Plan, apply the changes step by step, then observe again to verify convergence.

    Raises `InputError` (before anything is changed) for invalid input; every other failure is
    reported in the result, with the change that failed.
    """
    adapter = adapter or make_adapter(state)
    observed = _observe(state, adapter, steps)
    the_plan = diff(state, observed, steps)
    if the_plan.empty:
        _log.info("in sync; nothing to do", ok=len(the_plan.ok))
        return ApplyResult(the_plan, calls=tuple(adapter.calls))
    applied: list[Change] = []
    pins = _pins(state, steps)
    for step in STEP_ORDER:
        changes = the_plan.for_step(step)
        if not changes:
            continue
        try:
            _apply_step(
                step, changes=changes, state=state, pins=pins, observed=observed, adapter=adapter
            )
        except ReconcilerError as error:
            _log.error("step failed", step=str(step), error=str(error))
            failed = _failed_changes(changes, error)
            done = tuple(applied) + tuple(c for c in changes if c not in failed)
            return ApplyResult(the_plan, done, failed, error, tuple(adapter.calls))
        for change in changes:
            _log.info("changed", step=str(step), target=change.target, action=change.action)
        applied.extend(changes)
    try:
        remaining = diff(state, _observe(state, adapter, steps), steps)
    except ReconcilerError as error:
        return ApplyResult(the_plan, tuple(applied), (), error, tuple(adapter.calls))
    if not remaining.empty:
        lines = tuple(f"{c.step} {c.action} {c.target}: {c.reason}" for c in remaining.changes)
        still = ConvergenceError("still differs after apply:\n  " + "\n  ".join(lines), lines)
        return ApplyResult(the_plan, tuple(applied), remaining.changes, still, tuple(adapter.calls))
    _log.info("converged", changed=len(applied))
    return ApplyResult(the_plan, tuple(applied), calls=tuple(adapter.calls))


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


def _label(state: State) -> str:
    path = state.compose.file
    return str(path.relative_to(state.root)) if path.is_relative_to(state.root) else str(path)


def diff(state: State, observed: Observed, steps: Collection[Step] = _IMPLEMENTED) -> Plan:
    """Pure: the changes that take `observed` to `state`, for `steps`, in apply order."""
    pins = _pins(state, steps)
    result = Plan()
    if Step.COMPOSE_FILE in steps:
        result += compose_file.diff(state, observed, label=_label(state))
    else:
        compose_file.check_services_exist(state, observed)
    rebuilt: set[str] = set()
    if Step.IMAGES in steps:
        image_plan = images.diff(state, observed)
        rebuilt = {c.target for c in image_plan.changes if c.action != "download"}
        result += image_plan
    if Step.SERVICES in steps:
        result += services.diff(pins, observed, rebuilt=rebuilt)
    return result


def _apply_step(
    step: Step,
    *,
    changes: tuple[Change, ...],
    state: State,
    pins: dict[str, str],
    observed: Observed,
    adapter: DockerAdapter,
) -> None:
    if step is Step.COMPOSE_FILE:
        compose_file.apply(state, observed)
    elif step is Step.IMAGES:
        images.apply(changes, state, observed, adapter)
    elif step is Step.SERVICES:
        assert observed.config is not None
        services.apply(changes, state, adapter, observed.config)
