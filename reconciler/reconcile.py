"""The reconcile loop over `STEPS`: observe -> diff (pure, per step) -> apply in order -> verify.

One batched snapshot (`observe.observe`) is taken, then each selected step's `observe` projects
its own facts from it, concurrently; the loop then calls each step's `diff` and `apply` in
order, with no step-specific code (`steps.contract`).

This is the library's front door (`reconciler.plan`, `reconciler.apply`, `reconciler.down`);
the CLI is a thin shell over it. Nothing here prints; progress goes to structlog.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from reconciler.docker.adapter import DockerAdapter, DockerCall
from reconciler.errors import (
    ApplyError,
    CheckFailedError,
    ConvergenceError,
    HealthTimeoutError,
    InputError,
    InternalError,
    ReconcilerError,
    StopRequested,
)
from reconciler.facts import Snapshot
from reconciler.interrupt import StopToken
from reconciler.lock import project_lock
from reconciler.logs import get_logger
from reconciler.observe import observe
from reconciler.plans import MAKES_IMAGE, STEP_ORDER, Change, Plan, Step
from reconciler.project import project_name
from reconciler.secrets import Secrets
from reconciler.state import State
from reconciler.steps import checks, compose_file, images, migrations, services
from reconciler.steps.checks import CheckResult
from reconciler.steps.contract import StepDefinition

__all__ = [
    "STEPS",
    "ApplyResult",
    "CheckFailedError",
    "Observation",
    "apply",
    "diff",
    "down",
    "lock_name",
    "make_adapter",
    "names_in_order",
    "plan",
    "select_steps",
]

_log = get_logger(__name__)
_IMPLEMENTED = STEP_ORDER

# The steps, in apply order: adding one is a module with a `STEP` and a line here. Each is
# generic over its own facts type; the loop hands a step only the facts its `observe` returned.
STEPS: tuple[StepDefinition[Any], ...] = (
    compose_file.STEP,
    images.STEP,
    services.STEP,
    migrations.STEP,
    checks.STEP,
)
assert tuple(definition.step for definition in STEPS) == STEP_ORDER


@dataclass(frozen=True)
class Observation:
    """One observation: the shared snapshot, and each selected step's facts (by step)."""

    snapshot: Snapshot
    facts: Mapping[Step, object]


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

    @property
    def counts(self) -> dict[str, int]:
        """The recap: resources ok, changes made, and failures (failed changes and checks)."""
        failed = len(self.failed) + sum(1 for check in self.checks if not check.passed)
        if self.error is not None and not failed:
            failed = 1
        return {"ok": len(self.plan.ok), "changed": len(self.applied), "failed": failed}

    def failure_of(self, change: Change) -> str:
        """Why a failed change failed (not the plan's reason for making it)."""
        if isinstance(self.error, HealthTimeoutError) and change.key in self.error.diagnostics:
            return self.error.diagnostics[change.key].splitlines()[0].removeprefix("state: ")
        return str(self.error) if self.error is not None else "failed"

    def to_dict(self) -> dict[str, Any]:
        """The `apply --json` shape: the plan-JSON fields for what was done, plus the outcome."""
        data: dict[str, Any] = {
            "changes": [change.to_dict() for change in self.applied],
            "ok": [row.to_dict() for row in self.plan.ok],
            "failed": [
                {**change.to_dict(), "error": self.failure_of(change)} for change in self.failed
            ],
            "checks": [
                {
                    "name": check.name,
                    "passed": check.passed,
                    "detail": check.detail,
                    "seconds": round(check.seconds, 3),
                }
                for check in self.checks
            ],
            "rolled_back": list(self.rolled_back),
            "summary": self.counts,
        }
        if self.error is not None:
            data["error"] = str(self.error)
            data["error_kind"] = type(self.error).__name__
        return data


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
    """The lock key of a state's compose project: compose's own project name for it."""
    return project_name(state.compose.file, state.compose.project)


def make_adapter(state: State, *, stop: StopToken | None = None) -> DockerAdapter:
    """The docker adapter for the state's compose file and project, stopped by `stop`."""
    return DockerAdapter(state.compose.file, state.compose.project, stop=stop or StopToken())


def plan(
    state: State,
    *,
    steps: Collection[Step] = _IMPLEMENTED,
    adapter: DockerAdapter | None = None,
    secrets: Secrets | None = None,
) -> Plan:
    """Observe and diff: what `apply` would change. Changes nothing; takes no lock.

    `secrets`, when given, receives the secret values observed (for redacting output).

    Raises `InputError` for invalid input and another `ReconcilerError` when observing fails
    (an unexpected exception becomes `InternalError`).
    """
    adapter = adapter or make_adapter(state)
    with _boundary("observe"):
        observation = _observe(state, adapter, steps)
        if secrets is not None:
            secrets.update(observation.snapshot.secrets)
        return diff(state, observation.facts, steps)


def apply(
    state: State,
    *,
    steps: Collection[Step] = _IMPLEMENTED,
    adapter: DockerAdapter | None = None,
    rollback_on_failure: bool = False,
    stop: StopToken | None = None,
    lock_timeout: float = 0.0,
    lock: bool = True,
    secrets: Secrets | None = None,
) -> ApplyResult:
    """Take the project's lock, plan, apply step by step, observe again to verify, run checks.

    One failure boundary: `InputError` (invalid input, raised before anything is changed) is
    the only exception this raises. Every other failure, from the lock being held or the
    first observation failing to an `OSError` or a bug inside a step, ends as a failed result
    whose `error` says why (a bug: `InternalError`, with its traceback). With
    `rollback_on_failure`, a failure after the compose file or images changed restores the
    previous file bytes and images and re-converges the services that ran before.
    `stop.request()` (the CLI's signal handlers call it) stops the run: see `StopToken`.
    `secrets`, when given, receives the secret values observed (for redacting output).
    """
    adapter = adapter or make_adapter(state, stop=stop)
    try:
        with _project_lock(state, adapter, lock=lock, timeout=lock_timeout):
            return _apply_locked(state, steps, adapter, rollback_on_failure, secrets or Secrets())
    except InputError:
        raise
    except ReconcilerError as error:  # the lock, or the first observation
        _log.error("apply failed", error=str(error))
        return ApplyResult(Plan(), error=error, calls=tuple(adapter.calls))


def _apply_locked(  # noqa: PLR0911 - each way an apply ends returns its result here
    state: State,
    steps: Collection[Step],
    adapter: DockerAdapter,
    rollback_on_failure: bool,
    secrets: Secrets,
) -> ApplyResult:
    with _boundary("observe"):
        observed = _observe(state, adapter, steps)
        secrets.update(observed.snapshot.secrets)
        the_plan = diff(state, observed.facts, steps)
    # For a live view: the plan before anything runs, in the plan-JSON shape.
    _log.debug("plan", changes=[c.to_dict() for c in the_plan.changes], ok=len(the_plan.ok))
    run = _Run(state, adapter, the_plan)
    if the_plan.empty:
        _log.info("in sync; nothing to do", ok=len(the_plan.ok))
    for definition in STEPS:
        step = definition.step
        changes = the_plan.for_step(step)
        if not changes:
            continue
        try:
            adapter.stop.check(f"step {step}")
            with _boundary(str(step)):
                done = definition.apply(changes, state, observed.facts[step], adapter)
        except ReconcilerError as error:
            _log.error("step failed", step=str(step), error=str(error))
            failed = _failed_changes(changes, error)
            run.applied.extend(c for c in changes if c not in failed)
            return run.fail(error, failed, observed.snapshot, rollback_on_failure)
        for change in done:
            _log.info("changed", step=str(step), target=change.target, action=change.action)
        run.applied.extend(done)
    try:
        with _boundary("verify"):
            final = _observe(state, adapter, steps) if the_plan.changes else observed
            remaining = diff(state, final.facts, steps)
    except ReconcilerError as error:
        return run.fail(error, (), observed.snapshot, rollback_on_failure)
    if not remaining.empty:
        lines = tuple(f"{c.step} {c.action} {c.target}: {c.reason}" for c in remaining.changes)
        still = ConvergenceError("still differs after apply:\n  " + "\n  ".join(lines), lines)
        return run.fail(still, remaining.changes, observed.snapshot, rollback_on_failure)
    if run.applied:
        _log.info("converged", changed=len(run.applied))
    if Step.CHECKS in steps:
        try:
            adapter.stop.check("checks")
            with _boundary("checks"):
                run.checks = checks.run(state, adapter, final.snapshot.images)
        except StopRequested as error:
            return run.result(error)
        except ReconcilerError as error:
            return run.fail(error, (), observed.snapshot, rollback_on_failure)
        failing = [result for result in run.checks if not result.passed]
        if failing:
            names = ", ".join(f"{r.name} ({r.detail})" for r in failing)
            return run.fail(
                CheckFailedError(f"checks failed: {names}"),
                (),
                observed.snapshot,
                rollback_on_failure,
            )
    run.sizes = {ref: image.size for ref, image in final.snapshot.images.items()}
    return run.result()


@contextmanager
def _boundary(where: str) -> Iterator[None]:
    """Turn whatever escapes `where` into a ReconcilerError: OSError as ApplyError, else a bug.

    Each boundary is a phase of the run (observe, a step, verify, checks): its start and its
    end are logged at debug (`step started`, `step finished`) for a live view.
    """
    started = time.monotonic()
    _log.debug("step started", step=where)
    try:
        yield
        _log.debug("step finished", step=where, seconds=round(time.monotonic() - started, 3))
    except ReconcilerError:
        raise
    except OSError as error:
        raise ApplyError(f"{where}: {error}") from error
    except Exception as error:
        _log.error("internal error", where=where, error=repr(error))
        raise InternalError(error, traceback.format_exc()) from error


@contextmanager
def _project_lock(
    state: State, adapter: DockerAdapter, *, lock: bool, timeout: float
) -> Iterator[None]:
    if not lock:
        yield
        return
    with project_lock(lock_name(state), timeout=timeout, sleep=adapter.stop.sleep):
        yield


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
        before: Snapshot,
        rollback: bool,
    ) -> ApplyResult:
        if rollback and self.applied and not isinstance(error, StopRequested):
            self.rolled_back = _roll_back(self.state, self.adapter, before, self.applied)
        return self.result(error, failed)


def _roll_back(
    state: State, adapter: DockerAdapter, before: Snapshot, applied: list[Change]
) -> tuple[str, ...]:
    """Restore the compose file bytes and images of `before`, then re-converge services."""
    done: list[str] = []
    try:
        if any(change.step is Step.COMPOSE_FILE for change in applied):
            compose_file.write_atomically(before.compose_file, before.compose_text.encode("utf-8"))
            done.append(f"restored {state.shown(state.compose.file)} to its previous bytes")
        for change in applied:
            old = before.images.get(change.key) if change.step is Step.IMAGES else None
            if old is not None and change.action in MAKES_IMAGE:
                adapter.tag(old.id, change.key)
                done.append(f"re-tagged {change.key} to its previous image {old.id[7:19]}")
        snapshot = observe(state, adapter, (Step.SERVICES,), {})
        facts = services.STEP.observe(state, snapshot, adapter)
        plan_back = services.STEP.diff(state, facts, Plan())
        if plan_back.changes:
            services.STEP.apply(plan_back.changes, state, facts, adapter)
            done += [f"{c.action} {c.target} as before" for c in plan_back.changes]
    except Exception as error:
        done.append(f"rollback incomplete: {error}")
        _log.error("rollback failed", error=str(error))
    for line in done:
        _log.warning("rolled back", what=line)
    return tuple(done)


def down(
    state: State,
    *,
    volumes: bool = False,
    adapter: DockerAdapter | None = None,
    lock_timeout: float = 0.0,
    lock: bool = True,
) -> None:
    """Stop and remove the project's containers (and named volumes when `volumes`).

    Takes the project's lock like `apply`; raises a `ReconcilerError` when it fails.
    """
    adapter = adapter or make_adapter(state)
    with _project_lock(state, adapter, lock=lock, timeout=lock_timeout), _boundary("down"):
        adapter.down(volumes=volumes)


def _failed_changes(changes: tuple[Change, ...], error: ReconcilerError) -> tuple[Change, ...]:
    """The changes an error is about: the services that never got ready, else the whole step."""
    if isinstance(error, HealthTimeoutError):
        failed = tuple(change for change in changes if change.key in error.diagnostics)
        if failed:
            return failed
    return changes


def _pins(state: State, steps: Collection[Step]) -> dict[str, str]:
    # With compose-file skipped, the file is not edited, so docker steps follow the file as is.
    return state.pins() if Step.COMPOSE_FILE in steps else {}


def _observe(state: State, adapter: DockerAdapter, steps: Collection[Step]) -> Observation:
    """The snapshot, then each selected step's facts from it, the steps' own reads concurrently.

    Those reads (the migrations' alembic execs, the images' input digests) add no docker call
    per service; a step that was not selected is not observed.
    """
    snapshot = observe(state, adapter, steps, _pins(state, steps))
    chosen = [definition for definition in STEPS if definition.step in steps]
    with ThreadPoolExecutor(max(len(chosen), 1), thread_name_prefix="observe-step") as pool:
        reads = [
            (definition.step, pool.submit(definition.observe, state, snapshot, adapter))
            for definition in chosen
        ]
        facts = {step: read.result() for step, read in reads}
    return Observation(snapshot, facts)


def diff(
    state: State, facts: Mapping[Step, object], steps: Collection[Step] = _IMPLEMENTED
) -> Plan:
    """Pure: the changes that take the observed `facts` (by step) to `state`, for `steps`.

    In apply order; each step's diff sees the plan of the steps before it (the services step
    recreates what the images step rebuilds).
    """
    result = Plan()
    for definition in STEPS:
        if definition.step in steps:
            result += definition.diff(state, facts[definition.step], result)
    return result
