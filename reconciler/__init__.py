"""reconciler: keep a Docker Compose environment in its declared state, idempotently.

Library use::

    import reconciler
    state = reconciler.load_state("states/canary.yaml")
    plan = reconciler.plan(state)          # observe + diff, changes nothing
    result = reconciler.apply(state)       # lock, apply, verify, check; never raises but InputError
    fleet = reconciler.load_fleet("states/fleet.yaml")  # targets: a state and an engine each
    reconciler.plan_fleet(fleet)           # one plan per target; .exit_code over the fleet
    reconciler.apply_fleet(fleet.select(["core"]))  # in waves; stops at the first failed one
    reconciler.validate("states/fleet.yaml")  # inputs checked with no engine; InputError if bad
    reconciler.save_plan(state, "x.plan")  # a plan file, with fingerprints of what it saw
    result = reconciler.apply_plan("x.plan")  # exactly that plan, or StalePlanError in .error
    base = reconciler.load_record("baseline.json")  # a result saved with --save-result
    result = reconciler.apply(state, baseline=base)  # result.comparison; compare: can fail it

The library never prints and never configures logging; configure structlog in your program.
Names are imported on first use (PEP 562), so `python -m reconciler` starts fast and can take
over SIGINT/SIGTERM before the heavy imports. No submodule shares a name with a function here
(the plan's data types live in `reconciler.plans`), so `reconciler.plan` is always the function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.docker.adapter import DockerAdapter, DockerCall, ExecResult
    from reconciler.docker.retry import RetryPolicy
    from reconciler.errors import (
        ApplyError,
        CheckFailedError,
        ConvergenceError,
        DockerError,
        HealthTimeoutError,
        InputError,
        InternalError,
        Location,
        LockError,
        LockHeldError,
        LockLostError,
        PermanentDockerError,
        PlanFileError,
        ReconcilerError,
        StalePlanError,
        StopRequested,
        TransientDockerError,
    )
    from reconciler.plans import STEP_ORDER, Action, Change, InSync, Plan, Step
    from reconciler.reconcile.baseline import Comparison, RunRecord, load_record
    from reconciler.reconcile.fleet import FleetPlan, FleetResult, apply_fleet, plan_fleet
    from reconciler.reconcile.loop import (
        ApplyResult,
        apply,
        apply_plan,
        compare_observed,
        down,
        plan,
        save_plan,
        select_steps,
    )
    from reconciler.reconcile.saved_plan import SavedPlan, is_plan_file, load_plan
    from reconciler.reconcile.validate import ValidationResult, validate
    from reconciler.runtime.interrupt import StopToken
    from reconciler.state import State, load_state
    from reconciler.state.fleet import Fleet, is_fleet_file, load_fleet
    from reconciler.steps.registry import CaseResult, CheckResult

_WHERE = {
    "Comparison": "reconciler.reconcile.baseline",
    "RunRecord": "reconciler.reconcile.baseline",
    "load_record": "reconciler.reconcile.baseline",
    "compare_observed": "reconciler.reconcile.loop",
    "CaseResult": "reconciler.steps.registry",
    "DockerAdapter": "reconciler.docker.adapter",
    "DockerCall": "reconciler.docker.adapter",
    "ExecResult": "reconciler.docker.adapter",
    "RetryPolicy": "reconciler.docker.retry",
    "ApplyError": "reconciler.errors",
    "ConvergenceError": "reconciler.errors",
    "DockerError": "reconciler.errors",
    "HealthTimeoutError": "reconciler.errors",
    "InputError": "reconciler.errors",
    "InternalError": "reconciler.errors",
    "Location": "reconciler.errors",
    "LockError": "reconciler.errors",
    "LockHeldError": "reconciler.errors",
    "LockLostError": "reconciler.errors",
    "PermanentDockerError": "reconciler.errors",
    "ReconcilerError": "reconciler.errors",
    "TransientDockerError": "reconciler.errors",
    "PlanFileError": "reconciler.errors",
    "StalePlanError": "reconciler.errors",
    "StopRequested": "reconciler.errors",
    "StopToken": "reconciler.runtime.interrupt",
    "Fleet": "reconciler.state.fleet",
    "is_fleet_file": "reconciler.state.fleet",
    "load_fleet": "reconciler.state.fleet",
    "FleetPlan": "reconciler.reconcile.fleet",
    "FleetResult": "reconciler.reconcile.fleet",
    "apply_fleet": "reconciler.reconcile.fleet",
    "plan_fleet": "reconciler.reconcile.fleet",
    "STEP_ORDER": "reconciler.plans",
    "Change": "reconciler.plans",
    "InSync": "reconciler.plans",
    "Plan": "reconciler.plans",
    "Step": "reconciler.plans",
    "Action": "reconciler.plans",
    "ApplyResult": "reconciler.reconcile.loop",
    "CheckFailedError": "reconciler.errors",
    "apply": "reconciler.reconcile.loop",
    "down": "reconciler.reconcile.loop",
    "plan": "reconciler.reconcile.loop",
    "select_steps": "reconciler.reconcile.loop",
    "save_plan": "reconciler.reconcile.loop",
    "apply_plan": "reconciler.reconcile.loop",
    "SavedPlan": "reconciler.reconcile.saved_plan",
    "is_plan_file": "reconciler.reconcile.saved_plan",
    "load_plan": "reconciler.reconcile.saved_plan",
    "State": "reconciler.state",
    "load_state": "reconciler.state",
    "CheckResult": "reconciler.steps.registry",
    "ValidationResult": "reconciler.reconcile.validate",
    "validate": "reconciler.reconcile.validate",
}

__all__ = [
    "STEP_ORDER",
    "Action",
    "ApplyError",
    "ApplyResult",
    "CaseResult",
    "Change",
    "CheckFailedError",
    "CheckResult",
    "Comparison",
    "ConvergenceError",
    "DockerAdapter",
    "DockerCall",
    "DockerError",
    "ExecResult",
    "Fleet",
    "FleetPlan",
    "FleetResult",
    "HealthTimeoutError",
    "InSync",
    "InputError",
    "InternalError",
    "Location",
    "LockError",
    "LockHeldError",
    "LockLostError",
    "PermanentDockerError",
    "Plan",
    "PlanFileError",
    "ReconcilerError",
    "RetryPolicy",
    "RunRecord",
    "SavedPlan",
    "StalePlanError",
    "State",
    "Step",
    "StopRequested",
    "StopToken",
    "TransientDockerError",
    "ValidationResult",
    "apply",
    "apply_fleet",
    "apply_plan",
    "compare_observed",
    "down",
    "is_fleet_file",
    "is_plan_file",
    "load_fleet",
    "load_plan",
    "load_record",
    "load_state",
    "plan",
    "plan_fleet",
    "save_plan",
    "select_steps",
    "validate",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'reconciler' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
