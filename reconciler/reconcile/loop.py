"""The reconcile loop over `STEPS`: observe -> diff (pure, per step) -> apply in order -> verify.

One batched snapshot (`observe.observe`) is taken, then each selected step's `observe` projects
its own facts from it, concurrently; the loop then calls each step's `diff` and `apply` in
order, with no step-specific code (`steps.contract`): the steps come from the one list,
`steps.registry` (per mode: the stack step in place of services in Swarm mode). Then verify:
a fresh observation must plan nothing more, and each step's verify phase runs (the checks).

This is the library's front door (`reconciler.plan`, `reconciler.apply`, `reconciler.down`);
the CLI is a thin shell over it. Nothing here prints; progress goes to structlog.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import re
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.docker.adapter import DockerAdapter, DockerCall
from reconciler.docker.facts import RegistryLogin
from reconciler.errors import (
    ApplyError,
    CheckFailedError,
    ConvergenceError,
    HealthTimeoutError,
    InputError,
    InternalError,
    LockLostError,
    ReconcilerError,
    StalePlanError,
    StopRequested,
    describe,
    os_error_text,
)
from reconciler.locks.engine import engine_lock, is_remote
from reconciler.locks.local import project_lock
from reconciler.logs import ProgressEvent, get_logger
from reconciler.observe.facts import Snapshot
from reconciler.observe.readiness import ReadinessRecords
from reconciler.observe.snapshot import observe, pulls_always
from reconciler.plans import MAKES_IMAGE, Change, Plan, Step
from reconciler.reconcile.metrics import ResourceSampler, ServiceMetrics
from reconciler.reconcile.saved_plan import PLAN_FILE, SavedPlan, load_plan, make
from reconciler.runtime.files import check_output
from reconciler.runtime.interrupt import StopToken
from reconciler.secrets.redact import Secrets
from reconciler.secrets.store import SecretStore
from reconciler.state import State, load_state
from reconciler.state.engine import parse_engine
from reconciler.state.project import project_name
from reconciler.steps import registry
from reconciler.steps.registry import (
    CaseResult,
    CheckResult,
    StepDefinition,
    StepIncomplete,
    VerifyContext,
)

if TYPE_CHECKING:  # the verdict's module is imported only by a run with a baseline
    from reconciler.reconcile.baseline import Comparison, RunRecord

__all__ = [
    "MAX_LOCK_TIMEOUT",
    "ApplyResult",
    "CheckFailedError",
    "Observation",
    "apply",
    "apply_plan",
    "compare_observed",
    "diff",
    "down",
    "lock_name",
    "make_adapter",
    "names_in_order",
    "plan",
    "save_plan",
    "select_steps",
]

_log = get_logger(__name__)
MAX_LOCK_TIMEOUT = 86400.0  # a day: a longer wait for another apply is a mistake


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
    image_ids: dict[str, str] = field(default_factory=dict)  # reference -> image ID, at the end
    services: dict[str, str] = field(default_factory=dict)  # service -> image it runs
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds, and "total"
    comparison: Comparison | None = None  # with the baseline, when one was given
    started_at: float = 0.0  # wall clock (epoch s)
    rollback_on_failure: bool = False  # asked for: a failure undoes what was applied
    metrics: dict[str, ServiceMetrics] = field(default_factory=dict)  # service -> its runtime

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
                    "kind": check.kind,
                    **(
                        {"cases": [_case_dict(case) for case in check.cases]} if check.cases else {}
                    ),
                    **_sample_dict(check),
                    **({"value": check.value} if check.value is not None else {}),
                }
                for check in self.checks
            ],
            "rolled_back": list(self.rolled_back),
            "summary": self.counts,
        }
        if self.error is not None:
            data["error"] = str(self.error)
            data["error_kind"] = type(self.error).__name__
        if self.timings:
            data["timings"] = self.timings
        if self.metrics:
            data["metrics"] = {name: m.to_dict() for name, m in self.metrics.items()}
        if self.comparison is not None:
            data["comparison"] = self.comparison.to_dict()
        return data

    def record(self, state_name: str) -> RunRecord:
        """The result to save (`apply --save-result`) and to compare later runs with."""
        from reconciler.reconcile.baseline import ImageRecord, RunRecord  # noqa: PLC0415

        data = self.to_dict()
        return RunRecord(
            state=state_name,
            saved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at or None)),
            succeeded=self.succeeded,
            error=data.get("error"),
            summary=self.counts,
            changes=data["changes"],
            checks=data["checks"],
            images={
                reference: ImageRecord(id=self.image_ids.get(reference, ""), size=size)
                for reference, size in self.sizes.items()
            },
            services=self.services,
            timings=self.timings,
            metrics=data.get("metrics", {}),
        )


def _sample_dict(check: CheckResult) -> dict[str, Any]:
    """An HTTP check's sample, in milliseconds, when it took one."""
    if not check.latencies and not check.errors:
        return {}
    latencies = [round(seconds * 1000, 3) for seconds in check.latencies]
    return {"sample": {"latencies_ms": latencies, "errors": check.errors}}


def _case_dict(case: CaseResult) -> dict[str, Any]:
    return {
        "classname": case.classname,
        "name": case.name,
        "outcome": case.outcome,
        "detail": case.detail,
        "seconds": round(case.seconds, 3),
    }


def select_steps(only: Iterable[str] = (), skip: Iterable[str] = ()) -> tuple[Step, ...]:
    """Steps to run, in apply order, from `--only` and `--skip` names."""
    names = registry.names()
    only, skip = list(only), list(skip)
    for name in [*only, *skip]:
        if name not in names:
            raise InputError(f"unknown step {name!r}; steps are: {', '.join(names)}")
    chosen = registry.select(only, skip)
    if not chosen:
        # Running no step would "succeed" having checked nothing: a selection mistake.
        raise InputError(
            f"the step selection is empty: only {', '.join(only) or 'all'}, skip "
            f"{', '.join(skip)} leaves no step to run"
        )
    return chosen


def names_in_order() -> list[str]:
    """Step names in apply order."""
    return registry.names()


def lock_name(state: State) -> str:
    """The lock key of a state's compose project: compose's own project name for it, and the
    engine when the state names one (one project on two engines: two locks, so the targets of a
    fleet never block each other)."""
    project = project_name(state.compose.file, state.compose.project)
    if state.engine is None:
        return project
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", state.engine).strip("-")[:60]
    digest = hashlib.sha256(state.engine.encode()).hexdigest()[:8]
    return f"{project}@{readable}-{digest}"


def make_adapter(
    state: State, *, stop: StopToken | None = None, secrets: Secrets | None = None
) -> DockerAdapter:
    """The docker adapter for the state's compose file and project, stopped by `stop`.

    It reads the state's `secrets:` when docker is first asked (once), passes them to compose
    in its environment, and registers each value with `secrets` (the run's masking) as read;
    it logs in to the state's `registries:` before their first pull or digest read.
    """
    stop = stop or StopToken()
    return DockerAdapter(
        state.compose.file,
        state.compose.project,
        stop=stop,
        env_files=tuple(state.compose.env_files),
        secrets=SecretStore(state, stop=stop, register=secrets) if state.secrets else None,
        profiles=tuple(state.compose.profiles),
        swarm=state.compose.mode == "swarm",
        engine=parse_engine(state.engine) if state.engine is not None else None,
        registries={
            host: RegistryLogin(spec.username, spec.password_secret)
            for host, spec in state.registries.items()
        },
    )


def plan(
    state: State,
    *,
    steps: Collection[Step] | None = None,
    adapter: DockerAdapter | None = None,
    secrets: Secrets | None = None,
) -> Plan:
    """Observe and diff: what `apply` would change. Changes nothing; takes no lock.

    `secrets`, when given, receives the secret values observed (for redacting output).

    Raises `InputError` for invalid input and another `ReconcilerError` when observing fails
    (an unexpected exception becomes `InternalError`).
    """
    steps = registry.order() if steps is None else steps
    adapter = adapter or make_adapter(state, secrets=secrets)
    with _boundary("observe"):
        observation = _observe(state, adapter, steps)
        if secrets is not None:
            secrets.update(observation.snapshot.secrets)
        return diff(state, observation.facts, steps)


def apply(
    state: State,
    *,
    steps: Collection[Step] | None = None,
    adapter: DockerAdapter | None = None,
    rollback_on_failure: bool = False,
    stop: StopToken | None = None,
    lock_timeout: float = 0.0,
    lock: bool = True,
    secrets: Secrets | None = None,
    baseline: RunRecord | None = None,
    saved: SavedPlan | None = None,
    measure: bool = False,
) -> ApplyResult:
    """Take the project's lock, plan, apply step by step, observe again to verify, run checks.

    With a `baseline` (a saved `RunRecord`), the result carries a comparison with it, and the
    state's `compare:` requirements (size reduction, no regressions, latency, errors, memory,
    ready time) can fail the apply. With `measure` (implied by a baseline), the run measures
    each service's runtime (`ApplyResult.metrics`: memory and CPU during and after the checks,
    restarts, ready time), which a saved result keeps for a later comparison.

    One failure boundary: `InputError` (invalid input, raised before anything is changed) is
    the only exception this raises. Every other failure, from the lock being held or the
    first observation failing to an `OSError` or a bug inside a step, ends as a failed result
    whose `error` says why (a bug: `InternalError`, with its traceback). A step that fails
    part-way reports exactly the changes it made as applied, the rest as failed. With
    `rollback_on_failure`, a failure after anything was written or changed undoes exactly
    that: each file written gets its previous bytes back (or is removed if it did not exist),
    each rebuilt tag its previous image, and when the services step ran, the services are
    re-converged as they were.
    `stop.request()` (the CLI's signal handlers call it) stops the run: see `StopToken`.
    `secrets`, when given, receives the secret values observed (for redacting output).
    `saved`: apply only if the fresh observation and plan match this saved plan (checked under
    the lock; else a failed result with `StalePlanError`); see `apply_plan`.
    """
    _check_lock_timeout(lock_timeout)
    steps = registry.order() if steps is None else steps
    if saved is not None:
        saved.check_target(state, steps)
    secrets = secrets or Secrets()
    adapter = adapter or make_adapter(state, stop=stop, secrets=secrets)
    run: _Run | None = None
    result: ApplyResult | None = None
    try:
        # The boundary holds the lock too: taking and releasing it can fail like any file.
        with (
            _faults("apply"),
            _project_lock(state, adapter, lock=lock, timeout=lock_timeout) as held,
        ):
            run = _Run(
                state, adapter, baseline=baseline, held=held, measure=measure or bool(baseline)
            )
            result = _apply_locked(run, steps, rollback_on_failure, secrets, saved=saved)
    except InputError:
        raise
    except ReconcilerError as error:  # the lock, the first observation, or a bug
        _log.error(ProgressEvent.APPLY_FAILED, error=str(error))
        if result is not None:  # the run had ended: releasing the lock failed
            return dataclasses.replace(result, error=result.error or error)
        if run is not None and run.applied:  # what was changed is still reported
            run.rollback_on_failure = rollback_on_failure
            return run.result(error)
        return ApplyResult(
            Plan(),
            error=error,
            calls=tuple(adapter.calls),
            started_at=time.time(),
            rollback_on_failure=rollback_on_failure,
        )
    return result


def _check_lock_timeout(seconds: float) -> None:
    # NaN fails every comparison: a deadline of `now + nan` is never reached (a wait forever).
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_LOCK_TIMEOUT):
        raise InputError(
            f"lock_timeout must be a number of seconds from 0 to {MAX_LOCK_TIMEOUT:g}, "
            f"not {seconds!r}"
        )


def save_plan(
    state: State,
    out: str | Path,
    *,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    adapter: DockerAdapter | None = None,
    secrets: Secrets | None = None,
    given: str | Path | None = None,
) -> Plan:
    """`plan`, then write it to the plan file `out` with fingerprints of what it was made from.

    `only`/`skip` select steps by name as the CLI does; `given` is the state path as the user
    wrote it (recorded beside the absolute one). `apply_plan(out)` applies exactly this plan.
    Raises like `plan`, and `InputError` before observing anything when `out` cannot be
    written there or is one of the state's input files (`State.input_files`).
    """
    only, skip = list(only), list(skip)
    steps = select_steps(only, skip)
    inputs = state.input_files()
    check_output(Path(out), PLAN_FILE, inputs=inputs)  # before docker is asked anything
    adapter = adapter or make_adapter(state, secrets=secrets)
    with _boundary("observe"):
        observation = _observe(state, adapter, steps)
        if secrets is not None:
            secrets.update(observation.snapshot.secrets)
        the_plan = diff(state, observation.facts, steps)
        saved = make(
            state,
            the_plan,
            observation.snapshot,
            observation.facts,
            steps,
            given=given,
            only=only,
            skip=skip,
        )
    saved.write(out, inputs=inputs)
    return the_plan


def apply_plan(
    saved: SavedPlan | str | Path,
    *,
    adapter: DockerAdapter | None = None,
    rollback_on_failure: bool = False,
    stop: StopToken | None = None,
    lock_timeout: float = 0.0,
    lock: bool = True,
    secrets: Secrets | None = None,
    baseline: RunRecord | None = None,
    measure: bool = False,
) -> ApplyResult:
    """Apply a saved plan (or the plan file at that path) exactly, or refuse.

    Loads the state the plan names and applies its steps with `apply(..., saved=...)`: under
    the lock, the fresh observation's fingerprints and plan must equal the saved ones, else the
    result fails with `StalePlanError` naming what changed (state file, compose file, a step's
    facts and targets), before anything is changed. Raises `InputError` (`PlanFileError`) for
    an unreadable or invalid plan file or state, like `apply`.
    """
    if not isinstance(saved, SavedPlan):
        saved = load_plan(saved)
    try:
        saved.check_state_file()  # before parsing it: a state edited since is stale, not bad
    except StalePlanError as error:
        _log.error(ProgressEvent.APPLY_FAILED, error=str(error))
        return ApplyResult(Plan(), error=error)
    state = load_state(saved.state_path)
    return apply(
        state,
        steps=saved.steps,
        adapter=adapter,
        rollback_on_failure=rollback_on_failure,
        stop=stop,
        lock_timeout=lock_timeout,
        lock=lock,
        secrets=secrets,
        baseline=baseline,
        saved=saved,
        measure=measure,
    )


def _apply_locked(
    run: _Run,
    steps: Collection[Step],
    rollback_on_failure: bool,
    secrets: Secrets,
    *,
    saved: SavedPlan | None = None,
) -> ApplyResult:
    state, adapter = run.state, run.adapter
    with _boundary("observe"), run.timed("observe"):
        observed = _observe(state, adapter, steps)
        secrets.update(observed.snapshot.secrets)
        the_plan = diff(state, observed.facts, steps)
        _check_saved(saved, state, observed, the_plan)
    # For a live view: the plan before anything runs, in the plan-JSON shape.
    _log.debug(
        ProgressEvent.PLAN, changes=[c.to_dict() for c in the_plan.changes], ok=len(the_plan.ok)
    )
    run.plan = the_plan
    run.final = observed.snapshot
    if the_plan.empty:
        _log.info(ProgressEvent.IN_SYNC, ok=len(the_plan.ok))
    facts = observed.facts
    for definition in registry.steps_for(state):
        step = definition.step
        changes = the_plan.for_step(step)
        if not changes:
            continue
        done: tuple[Change, ...] | None = None
        try:
            adapter.stop.check(f"step {step}")
            run.held()
            with _boundary(str(step)), run.timed(str(step)):
                done = _apply_step(run, definition, changes, facts[step])
            for change in done:
                _log.info(
                    ProgressEvent.CHANGED,
                    step=str(step),
                    target=change.target,
                    action=change.action,
                )
            run.applied.extend(done)
            if any(pulls_always(state, change) for change in done):
                the_plan, facts = _replan_after(step, the_plan, run, steps)
                run.plan = the_plan
        except ReconcilerError as error:
            _log.error(ProgressEvent.STEP_FAILED, step=str(step), error=str(error))
            failed = () if done is not None else run.step_failed(changes, error)
            return run.fail(error, failed, observed.snapshot, rollback_on_failure)
    try:
        with _boundary("verify"), run.timed("verify"):
            final = _observe(state, adapter, steps) if the_plan.changes else observed
            remaining = _unconverged(state, diff(state, final.facts, steps))
        run.final = final.snapshot
    except ReconcilerError as error:
        return run.fail(error, (), observed.snapshot, rollback_on_failure)
    if not remaining.empty:
        lines = tuple(f"{c.step} {c.action} {c.target}: {c.reason}" for c in remaining.changes)
        still = ConvergenceError("still differs after apply:\n  " + "\n  ".join(lines), lines)
        return run.fail(still, remaining.changes, observed.snapshot, rollback_on_failure)
    if run.applied:
        _log.info(ProgressEvent.CONVERGED, changed=len(run.applied))
    _converged(state, final.facts)
    verdict = _verdict(run, steps, final.snapshot, secrets)
    if isinstance(verdict, StopRequested):
        return run.result(verdict)
    if verdict is not None:
        return run.fail(verdict, (), observed.snapshot, rollback_on_failure)
    return run.result()


def _apply_step(
    run: _Run, definition: StepDefinition[Any], changes: tuple[Change, ...], facts: object
) -> tuple[Change, ...]:
    """A step's apply; when it stops part-way, what it made is kept in `run.incomplete` and its
    cause raised in its place, for the step's boundary to judge (an OSError, a bug)."""
    if definition.apply is None:  # a step without apply plans no change: its diff is wrong
        raise TypeError(f"step {definition.step} has no apply, yet planned {len(changes)} changes")
    try:
        return definition.apply(changes, run.state, facts, run.adapter)
    except StepIncomplete as partial:
        run.incomplete = partial
        partial.cause.__suppress_context__ = True  # its own story, not this handler's
        raise partial.cause  # noqa: B904 - the cause itself is the step's error


def _converged(state: State, facts: Mapping[Step, object]) -> None:
    """Tell each step with a `converged` hook its final facts (the services step records the
    containers' input digests), when it was observed."""
    for definition in registry.steps_for(state):
        if definition.converged is not None and definition.step in facts:
            definition.converged(state, facts[definition.step])


def _replan_after(
    step: Step, the_plan: Plan, run: _Run, steps: Collection[Step]
) -> tuple[Plan, Mapping[Step, object]]:
    """The plan for the steps after `step`, from a fresh observation: a `pull: always` pull may
    or may not have moved its tag, so whether its users are recreated is known only now."""
    order = registry.order()
    later = set(order[order.index(step) + 1 :])
    with _boundary("observe"), run.timed("observe"):
        again = _observe(run.state, run.adapter, steps)
        fresh = diff(run.state, again.facts, steps)
    _log.info("planned again after pull: always", steps=sorted(map(str, later & set(steps))))
    plan = Plan(
        tuple(c for c in the_plan.changes if c.step not in later)
        + tuple(c for c in fresh.changes if c.step in later),
        tuple(r for r in the_plan.ok if r.step not in later)
        + tuple(r for r in fresh.ok if r.step in later),
    )
    return plan, again.facts


def _unconverged(state: State, remaining: Plan) -> Plan:
    """What still differs after an apply: a `pull: always` pull is planned at every apply by
    design, so it is not drift."""
    return Plan(tuple(c for c in remaining.changes if not pulls_always(state, c)), remaining.ok)


def _verdict(
    run: _Run, steps: Collection[Step], snapshot: Snapshot, secrets: Secrets
) -> ReconcilerError | None:
    """Run each selected step's verify phase (the checks), then compare with the baseline:
    the error that fails the apply, if any."""
    sampler = ResourceSampler(run.adapter, snapshot.containers) if run.measure else None
    context = VerifyContext(
        apply_started=run.started_at,
        secrets=secrets,
        quiet=sampler.held_off if sampler is not None else contextlib.nullcontext,
    )
    with sampler or contextlib.nullcontext():
        for definition in registry.steps_for(run.state):
            if definition.verify is None or definition.step not in steps:
                continue
            name = str(definition.step)
            try:
                run.adapter.stop.check(name)
                with _boundary(name), run.timed(name):
                    facts = definition.observe(run.state, snapshot, run.adapter)
                    run.checks += definition.verify(run.state, facts, run.adapter, context)
            except ReconcilerError as error:
                return error
    if sampler is not None:
        try:
            with _boundary("measure"), run.timed("measure"):
                ready = ReadinessRecords(run.adapter.project_name).read()
                run.metrics = sampler.measure(snapshot.containers, ready)
        except ReconcilerError as error:
            return error
    failing = [result for result in run.checks if not result.passed]
    if failing:
        names = ", ".join(f"{r.name} ({r.detail})" for r in failing)
        return CheckFailedError(f"checks failed: {names}")
    comparison = run.compared()
    if comparison is not None and comparison.unmet:
        return CheckFailedError("baseline comparison: " + "; ".join(comparison.unmet))
    return None


def _check_saved(saved: SavedPlan | None, state: State, observed: Observation, fresh: Plan) -> None:
    """With a saved plan, refuse (`StalePlanError`) unless this observation and plan match it."""
    if saved is not None:
        saved.verify(state, observed.snapshot, observed.facts, fresh)


@contextmanager
def _boundary(where: str) -> Iterator[None]:
    """Turn whatever escapes `where` into a ReconcilerError: OSError as ApplyError, else a bug.

    Each boundary is a phase of the run (observe, a step, verify, checks): its start and its
    end are logged at debug (`step started`, `step finished`) for a live view.
    """
    started = time.monotonic()
    _log.debug(ProgressEvent.STEP_STARTED, step=where)
    with _faults(where):
        yield
    _log.debug(
        ProgressEvent.STEP_FINISHED, step=where, seconds=round(time.monotonic() - started, 3)
    )


@contextmanager
def _faults(where: str) -> Iterator[None]:
    """The mapping of `_boundary`, with no phase logged: for the whole of an apply or a down
    (the lock included), around the phases' own boundaries."""
    try:
        yield
    except ReconcilerError:
        raise
    except OSError as error:  # a full disk, a read-only file system: the file and its reason
        raise ApplyError(f"{where}: {os_error_text(error)}") from error
    except Exception as error:
        _log.error("internal error", where=where, error=repr(error))
        raise InternalError(error, traceback.format_exc()) from error


@contextmanager
def _project_lock(
    state: State, adapter: DockerAdapter, *, lock: bool, timeout: float
) -> Iterator[Callable[[], None]]:
    """Hold the project's lock for the block: on the engine for a remote one (ssh://, tcp://,
    or a context reaching one: `reconciler.locks.engine`), else the host-local lock file. Yields
    the check the run makes before each change (an engine lock can be lost with its
    connection)."""
    if not lock:
        yield _held
        return
    endpoint = adapter.engine_endpoint()
    if is_remote(endpoint):
        engine = str(adapter.engine or endpoint)
        engine = engine if engine == endpoint else f"{engine} ({endpoint})"
        # on the engine itself, the project alone names the lock
        with engine_lock(
            adapter, adapter.project_name, engine=engine, timeout=timeout, sleep=adapter.stop.sleep
        ) as guard:
            yield guard.check
        return
    with project_lock(lock_name(state), timeout=timeout, sleep=adapter.stop.sleep):
        yield _held


def _held() -> None:
    """The check of a lock that cannot be lost while this process lives (a lock file)."""


@dataclass
class _Run:
    """The mutable record of one apply, turned into a frozen `ApplyResult` at the end."""

    state: State
    adapter: DockerAdapter
    plan: Plan = field(default_factory=Plan)
    baseline: RunRecord | None = None
    applied: list[Change] = field(default_factory=list)
    checks: tuple[CheckResult, ...] = ()
    rolled_back: tuple[str, ...] = ()
    rollback_on_failure: bool = False
    # the step that stopped part-way: what it made, and what it was making (may have landed)
    incomplete: StepIncomplete | None = None
    final: Snapshot | None = None  # the last observation: sizes and images come from it
    held: Callable[[], None] = field(default=lambda: None)  # raises when the lock was lost
    timings: dict[str, float] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    measure: bool = False  # measure each service's runtime around the checks
    metrics: dict[str, ServiceMetrics] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """Add the time spent in the block to `timings[what]`."""
        started = time.monotonic()
        try:
            yield
        finally:
            spent = time.monotonic() - started
            self.timings[what] = round(self.timings.get(what, 0.0) + spent, 3)

    def result(
        self, error: ReconcilerError | None = None, failed: tuple[Change, ...] = ()
    ) -> ApplyResult:
        final = self.final
        config = final.config if final is not None else None
        images = final.images if final is not None else {}
        timings = {**self.timings, "total": round(time.monotonic() - self._started, 3)}
        result = ApplyResult(
            self.plan,
            tuple(self.applied),
            failed,
            error,
            self.checks,
            self.rolled_back,
            {reference: image.size for reference, image in images.items()},
            tuple(self.adapter.calls),
            image_ids={reference: image.id for reference, image in images.items()},
            services=({name: config.image_of(name) for name in config.services} if config else {}),
            timings=timings,
            started_at=self.started_at,
            rollback_on_failure=self.rollback_on_failure,
            metrics=dict(self.metrics),
        )
        if self.baseline is None:
            return result
        from reconciler.reconcile.baseline import compare  # noqa: PLC0415 - baseline runs only

        record = result.record(self.state.name)
        comparison = compare(self.baseline, record, self.state.compare, measured=self.measure)
        return dataclasses.replace(result, comparison=comparison)

    def compared(self) -> Comparison | None:
        """The comparison with the baseline as things stand (None without a baseline)."""
        return self.result().comparison

    def step_failed(
        self, changes: tuple[Change, ...], error: ReconcilerError
    ) -> tuple[Change, ...]:
        """A step's failed changes; the ones it made are added to `applied`: exactly those it
        said when it stopped part-way, else all but those the error is about."""
        if self.incomplete is not None:
            self.applied.extend(self.incomplete.done)
            return tuple(c for c in changes if c not in self.incomplete.done)
        failed = _failed_changes(changes, error)
        self.applied.extend(c for c in changes if c not in failed)
        return failed

    def fail(
        self,
        error: ReconcilerError,
        failed: tuple[Change, ...],
        before: Snapshot,
        rollback: bool,
    ) -> ApplyResult:
        """The failed result; with `rollback`, after undoing whatever this run wrote or did
        (its applied changes, and those a step was making when it stopped part-way)."""
        self.rollback_on_failure = rollback
        attempted = self.incomplete.attempted if self.incomplete is not None else ()
        made = [*self.applied, *attempted]
        # Neither after a stop request, nor without the lock (lost with its connection).
        if rollback and made and not isinstance(error, StopRequested | LockLostError):
            self.rolled_back = _roll_back(self.state, self.adapter, before, made, failed)
        return self.result(error, failed)


def _roll_back(
    state: State,
    adapter: DockerAdapter,
    before: Snapshot,
    made: list[Change],
    failed: tuple[Change, ...],
) -> tuple[str, ...]:
    """Undo what `made` did, as `before` found things: each file the compose-file step wrote
    back to its exact previous bytes (removed if it did not exist), each rebuilt tag back on
    its previous image, then, when the services step ran, the services re-converged.

    Each part is undone on its own: one that fails is said (`rollback incomplete: ...`) and
    the others are still undone."""
    done: list[str] = []
    definitions = {definition.step: definition for definition in registry.steps_for(state)}
    for definition in definitions.values():  # the compose-file step's `roll_back`: the files
        mine = tuple(change for change in made if change.step == definition.step)
        try:
            if definition.roll_back is not None and mine:
                facts = definition.observe(state, before, adapter)  # a projection: no I/O
                done += definition.roll_back(state, facts, mine)
        except Exception as error:  # the images and services are still put back
            done.append(f"rollback incomplete: {describe(error)}")
            _log.error("rollback failed", error=str(error))
    try:
        for change in made:
            old = before.images.get(change.key) if change.step is Step.IMAGES else None
            if old is not None and change.action in MAKES_IMAGE:
                adapter.tag(old.id, change.key)
                done.append(f"re-tagged {change.key} to its previous image {old.id[7:19]}")
        # Containers change only in the services step: if it never ran, none is to put back.
        if any(change.step is Step.SERVICES for change in [*made, *failed]):
            services = definitions[Step.SERVICES]  # the stack step in Swarm mode
            snapshot = observe(state, adapter, (Step.SERVICES,), {})
            facts_now = services.observe(state, snapshot, adapter)
            plan_back = services.diff(state, facts_now, Plan())
            if plan_back.changes and services.apply is not None:
                services.apply(plan_back.changes, state, facts_now, adapter)
                done += [f"{c.action} {c.target} as before" for c in plan_back.changes]
    except Exception as error:
        done.append(f"rollback incomplete: {describe(error)}")
        _log.error("rollback failed", error=str(error))
    for line in done:
        _log.warning("rolled back", what=line)
    return tuple(done)


def compare_observed(
    state: State, baseline: RunRecord, *, adapter: DockerAdapter | None = None
) -> Comparison:
    """The images as they are now (no change, no check) against a baseline: `plan --baseline`."""
    adapter = adapter or make_adapter(state)
    with _boundary("observe"):
        run = _Run(state, adapter, baseline=baseline)
        run.final = observe(state, adapter, (Step.IMAGES, Step.SERVICES), state.pins())
        comparison = run.compared()
    assert comparison is not None, "a run with a baseline is compared"
    return comparison


def down(
    state: State,
    *,
    volumes: bool = False,
    adapter: DockerAdapter | None = None,
    lock_timeout: float = 0.0,
    lock: bool = True,
    secrets: Secrets | None = None,
) -> None:
    """Stop and remove the project's containers (and named volumes when `volumes`).

    Takes the project's lock like `apply`; raises a `ReconcilerError` when it fails. Compose
    interpolates the file for `down` too: the state's secrets are read for it (and registered
    with `secrets`).
    """
    with _faults("down"):  # the lock inside it: a fault taking it is a clean failure too
        adapter = adapter or make_adapter(state, secrets=secrets)
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
    chosen = [definition for definition in registry.steps_for(state) if definition.step in steps]
    with ThreadPoolExecutor(max(len(chosen), 1), thread_name_prefix="observe-step") as pool:
        reads = [
            (definition.step, pool.submit(definition.observe, state, snapshot, adapter))
            for definition in chosen
        ]
        facts = {step: read.result() for step, read in reads}
    return Observation(snapshot, facts)


def diff(state: State, facts: Mapping[Step, object], steps: Collection[Step] | None = None) -> Plan:
    """Pure: the changes that take the observed `facts` (by step) to `state`, for `steps`.

    In apply order; each step's diff sees the plan of the steps before it (the services step
    recreates what the images step rebuilds).
    """
    result = Plan()
    for definition in registry.steps_for(state):
        if steps is None or definition.step in steps:
            result += definition.diff(state, facts[definition.step], result)
    return result
