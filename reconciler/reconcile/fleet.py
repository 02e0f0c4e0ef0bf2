"""Plan and apply a fleet: every target's state on its own engine, in waves.

`plan_fleet` plans every target (read only, all at once: plans do not depend on each other).
`apply_fleet` applies the waves one after the other, the targets of a wave in parallel, and
stops at the first wave with a failed target: later waves are not started and come back as
skipped. Without `waves:` each target is a wave of its own, in declared order.

Parallel targets run in threads of this process, not in child processes: the work of a target
is docker CLI children (the GIL is not held while they run), every target must see the one
`StopToken` that the CLI's signal handlers fill (a Ctrl-C reaches all of them at once, with no
signal forwarding), results come back as the library's own objects (errors with their causes),
and one `Secrets` masks what any target observed. Each target keeps the project lock of its
own (project, engine). Log lines of a target carry `fleet_target=NAME` (structlog's context
variables); the library never prints: `on_done` hands each finished target to the caller.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.errors import InputError, InternalError, ReconcilerError, StopRequested
from reconciler.logs import get_logger
from reconciler.plans import STEP_ORDER, Plan, Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.loop import ApplyResult
from reconciler.runtime.interrupt import StopToken
from reconciler.secrets.redact import Secrets
from reconciler.state.fleet import Fleet, Target

__all__ = ["FleetPlan", "FleetResult", "TargetPlan", "TargetResult", "apply_fleet", "plan_fleet"]

_log = get_logger(__name__)
_PLAN_WORKERS = 8  # plans at once: each runs a few docker CLI calls


@dataclass(frozen=True)
class TargetPlan:
    """One target's plan, or why it could not be made."""

    name: str
    engine: str
    plan: Plan
    error: ReconcilerError | None = None

    @property
    def status(self) -> str:
        """failed, changes or in-sync."""
        if self.error is not None:
            return "failed"
        return "changes" if self.plan.changes else "in-sync"

    def to_dict(self) -> dict[str, Any]:
        """The single-state plan JSON, plus the target's engine and status (and error)."""
        data: dict[str, Any] = {"engine": self.engine, "status": self.status, **self.plan.to_dict()}
        if self.error is not None:
            data["error"] = str(self.error)
            data["error_kind"] = type(self.error).__name__
        return data


@dataclass(frozen=True)
class FleetPlan:
    """The plans of a fleet's targets, in declared order."""

    fleet: str
    targets: tuple[TargetPlan, ...]

    @property
    def changes(self) -> int:
        """Changes pending over the whole fleet."""
        return sum(len(target.plan.changes) for target in self.targets)

    @property
    def exit_code(self) -> int:
        """The plan contract over the fleet: 3 bad input anywhere, 1 a failure, 2 changes
        somewhere, 0 nothing to do anywhere."""
        errors = [target.error for target in self.targets if target.error is not None]
        if errors:
            return _worst(errors, changed=False)
        return 2 if self.changes else 0

    def to_dict(self) -> dict[str, Any]:
        """`plan --json` of a fleet: `changes` over all targets (each naming its
        `fleet_target`), one entry per target under `targets`, and the totals."""
        return {
            "fleet": self.fleet,
            "changes": [
                {**change.to_dict(), "fleet_target": target.name}
                for target in self.targets
                for change in target.plan.changes
            ],
            "targets": {target.name: target.to_dict() for target in self.targets},
            "summary": {
                "targets": len(self.targets),
                "changes": self.changes,
                "ok": sum(len(target.plan.ok) for target in self.targets),
                "failed": sum(1 for target in self.targets if target.error is not None),
                "with_changes": sum(1 for target in self.targets if target.status == "changes"),
            },
        }


@dataclass(frozen=True)
class TargetResult:
    """One target's apply: its result, or why it was skipped (`result` is None then)."""

    name: str
    engine: str
    wave: int  # 1-based
    result: ApplyResult | None
    skipped: str = ""

    @property
    def status(self) -> str:
        """skipped, failed, changed or ok."""
        if self.result is None:
            return "skipped"
        if self.result.error is not None:
            return "failed"
        return "changed" if self.result.changed else "ok"

    def to_dict(self) -> dict[str, Any]:
        """The single-state apply JSON, plus engine, wave and status (a skipped target: why)."""
        head: dict[str, Any] = {"engine": self.engine, "wave": self.wave, "status": self.status}
        if self.result is None:
            return {**head, "skipped": self.skipped, "changes": []}
        return {**head, **self.result.to_dict()}


@dataclass(frozen=True)
class FleetResult:
    """What an apply of a fleet did, per target in declared order."""

    fleet: str
    targets: tuple[TargetResult, ...]
    stop_signal: int | None = None  # the signal that stopped the run, if one did

    @property
    def changed(self) -> bool:
        """True when some target changed something."""
        return any(t.result is not None and t.result.changed for t in self.targets)

    @property
    def succeeded(self) -> bool:
        """True when every target ran and converged (and its checks passed)."""
        return all(target.status in {"ok", "changed"} for target in self.targets)

    @property
    def counts(self) -> dict[str, int]:
        """The fleet's recap: the targets' ok/changed/failed summed, and targets skipped."""
        totals = {"ok": 0, "changed": 0, "failed": 0}
        for target in self.targets:
            if target.result is not None:
                for key, value in target.result.counts.items():
                    totals[key] += value
        totals["skipped"] = sum(1 for target in self.targets if target.result is None)
        return totals

    @property
    def exit_code(self) -> int:
        """The apply contract over the fleet: 0 all converged; a signal's code when stopped;
        3 when bad input stopped it before anything changed anywhere; else 1."""
        errors = [
            target.result.error
            for target in self.targets
            if target.result is not None and target.result.error is not None
        ]
        if self.stop_signal is not None:
            return 128 + self.stop_signal
        if errors:
            return _worst(errors, changed=self.changed)
        return 0 if self.succeeded else 1

    def to_dict(self) -> dict[str, Any]:
        """`apply --json` of a fleet: `changes` made over all targets, one entry per target
        under `targets` (the single-state shape), and the totals."""
        return {
            "fleet": self.fleet,
            "changes": [
                {**change.to_dict(), "fleet_target": target.name}
                for target in self.targets
                if target.result is not None
                for change in target.result.applied
            ],
            "targets": {target.name: target.to_dict() for target in self.targets},
            "summary": {"targets": len(self.targets), **self.counts},
        }


def _worst(errors: list[ReconcilerError], *, changed: bool) -> int:
    """One exit code for several targets' errors: a stop first, then 3 only when every error
    is bad input and nothing changed anywhere, else 1."""
    for error in errors:
        if isinstance(error, StopRequested):
            return error.exit_code
    if not changed and all(isinstance(error, InputError) for error in errors):
        return InputError.exit_code
    return 1


def plan_fleet(
    fleet: Fleet,
    *,
    steps: Collection[Step] = STEP_ORDER,
    stop: StopToken | None = None,
    secrets: Secrets | None = None,
) -> FleetPlan:
    """Plan every target (observe and diff, nothing changed, no lock), at once.

    A target whose plan fails (its engine unreachable, its compose file invalid) carries its
    error; the others are planned all the same. Never raises.
    """
    stop = stop or StopToken()
    secrets = secrets or Secrets()

    def one(target: Target) -> TargetPlan:
        with structlog.contextvars.bound_contextvars(fleet_target=target.name):
            try:
                adapter = reconcile.make_adapter(target.state, stop=stop, secrets=secrets)
                the_plan = reconcile.plan(
                    target.state, steps=steps, adapter=adapter, secrets=secrets
                )
            except ReconcilerError as error:
                _log.error("target plan failed", error=str(error))
                return TargetPlan(target.name, target.engine, Plan(), error)
            except Exception as error:  # a bug: reported for this target, not the fleet's end
                return TargetPlan(
                    target.name, target.engine, Plan(), InternalError(error, _traceback())
                )
        return TargetPlan(target.name, target.engine, the_plan)

    targets = list(fleet.targets.values())
    workers = max(1, min(len(targets), _PLAN_WORKERS))
    with ThreadPoolExecutor(workers, thread_name_prefix="fleet-plan") as pool:
        plans = list(pool.map(one, targets))
    return FleetPlan(fleet.name, tuple(plans))


def apply_fleet(
    fleet: Fleet,
    *,
    steps: Collection[Step] = STEP_ORDER,
    rollback_on_failure: bool = False,
    stop: StopToken | None = None,
    lock_timeout: float = 0.0,
    secrets: Secrets | None = None,
    on_done: Callable[[TargetResult], None] | None = None,
) -> FleetResult:
    """Apply the fleet's waves in order, the targets of a wave in parallel (threads).

    Each target is `reconciler.apply` of its state, under its own project lock. A wave with a
    failed target ends the run: the waves after it are skipped, as they are after a stop
    request (`stop.request()`; the CLI's signal handlers call it, and every running target
    stops at its next stop point). `on_done(target_result)` is called as each target ends
    (from the thread that ran it; skipped targets too). Never raises: bad input of one
    target (found while observing it) is that target's failure.
    """
    stop = stop or StopToken()
    secrets = secrets or Secrets()
    done: dict[str, TargetResult] = {}
    halted = ""

    def finish(outcome: TargetResult) -> TargetResult:
        if on_done is not None:
            on_done(outcome)
        return outcome

    def one(target: Target, wave: int) -> TargetResult:
        with structlog.contextvars.bound_contextvars(fleet_target=target.name):
            _log.info("target started", wave=wave, engine=target.engine)
            try:
                result = reconcile.apply(
                    target.state,
                    steps=steps,
                    rollback_on_failure=rollback_on_failure,
                    stop=stop,
                    lock_timeout=lock_timeout,
                    secrets=secrets,
                )
            except InputError as error:
                _log.error("target refused", error=str(error))
                result = ApplyResult(Plan(), error=error)
            except Exception as error:  # a bug: reported for this target, not the fleet's end
                result = ApplyResult(Plan(), error=InternalError(error, _traceback()))
            outcome = TargetResult(target.name, target.engine, wave, result)
            _log.info("target finished", wave=wave, status=outcome.status)
        return finish(outcome)

    for number, wave in enumerate(fleet.waves, start=1):
        if not halted and stop.requested:
            halted = "stop requested"
        if halted:
            for name in wave:
                target = fleet.targets[name]
                done[name] = finish(
                    TargetResult(name, target.engine, number, None, f"not started: {halted}")
                )
            continue
        targets = [fleet.targets[name] for name in wave]
        if len(targets) == 1:
            done[targets[0].name] = one(targets[0], number)
        else:
            with ThreadPoolExecutor(len(targets), thread_name_prefix="fleet-apply") as pool:
                running = [(t.name, pool.submit(one, t, number)) for t in targets]
                for name, future in running:
                    done[name] = future.result()
        failed = [name for name in wave if done[name].status == "failed"]
        if failed:
            halted = f"wave {number} failed ({', '.join(failed)})"
            _log.error("wave failed; later waves are skipped", wave=number, failed=failed)
    return FleetResult(fleet.name, tuple(done[name] for name in fleet.targets), stop.signum)


def _traceback() -> str:
    return traceback.format_exc()
