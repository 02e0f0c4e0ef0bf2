"""The public names users' scripts depend on, pinned: moving modules must never change them.

`reconciler.__all__`, what each name is, the parameters of every public function, and the
names of `reconciler.plans` are written out here by hand; a change to any of them is a
deliberate edit of this file, never a side effect of a refactoring.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import reconciler

CLASSES = [
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
]

FUNCTIONS: dict[str, tuple[str, ...]] = {
    "apply": (
        "state",
        "steps",
        "adapter",
        "rollback_on_failure",
        "stop",
        "lock_timeout",
        "lock",
        "secrets",
        "baseline",
        "saved",
        "measure",  # added by issue 21 (keyword-only, after every earlier one)
    ),
    "apply_fleet": (
        "fleet",
        "steps",
        "rollback_on_failure",
        "stop",
        "lock_timeout",
        "secrets",
        "on_done",
    ),
    "apply_plan": (
        "saved",
        "adapter",
        "rollback_on_failure",
        "stop",
        "lock_timeout",
        "lock",
        "secrets",
        "baseline",
        "measure",  # added by issue 21
    ),
    "compare_observed": ("state", "baseline", "adapter"),
    "down": ("state", "volumes", "adapter", "lock_timeout", "lock", "secrets"),
    "is_fleet_file": ("path",),
    "is_plan_file": ("path",),
    "load_fleet": ("path",),
    "load_plan": ("path",),
    "load_record": ("path",),
    "load_state": ("path",),
    "plan": ("state", "steps", "adapter", "secrets"),
    "plan_fleet": ("fleet", "steps", "stop", "secrets"),
    "save_plan": ("state", "out", "only", "skip", "adapter", "secrets", "given"),
    "select_steps": ("only", "skip"),
    "validate": ("path", "secrets", "stop"),
}

ERRORS = [
    "ApplyError",
    "CheckFailedError",
    "ConvergenceError",
    "DockerError",
    "HealthTimeoutError",
    "InputError",
    "InternalError",
    "LockError",
    "LockHeldError",
    "LockLostError",
    "PermanentDockerError",
    "PlanFileError",
    "StalePlanError",
    "StopRequested",
    "TransientDockerError",
]


def test_all_is_exactly_the_pinned_names() -> None:
    """`reconciler.__all__` holds the pinned classes, functions and STEP_ORDER, nothing else."""
    assert sorted(reconciler.__all__) == sorted([*CLASSES, *FUNCTIONS, "STEP_ORDER"])


@pytest.mark.parametrize("name", CLASSES)
def test_each_public_class_imports_and_is_a_class(name: str) -> None:
    """Every public class is reachable as `reconciler.NAME` and `from reconciler import NAME`."""
    value = getattr(reconciler, name)
    assert inspect.isclass(value)
    assert importlib.import_module("reconciler").__dict__[name] is value


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_public_function_keeps_its_parameters(name: str) -> None:
    """Every public function keeps its parameter names, in order."""
    value = getattr(reconciler, name)
    assert inspect.isfunction(value)
    assert tuple(inspect.signature(value).parameters) == FUNCTIONS[name]


@pytest.mark.parametrize("name", ERRORS)
def test_every_public_error_is_a_reconciler_error(name: str) -> None:
    """Every public error class derives from `ReconcilerError`, so one except clause takes all."""
    assert issubclass(getattr(reconciler, name), reconciler.ReconcilerError)


def test_step_order_names_the_five_steps() -> None:
    """STEP_ORDER is the five step names of the plan JSON, in apply order."""
    assert reconciler.STEP_ORDER == ("compose-file", "images", "services", "migrations", "checks")


def test_plans_module_keeps_its_data_types() -> None:
    """`reconciler.plans` keeps the plan's data types and `selected` under their names."""
    plans = importlib.import_module("reconciler.plans")
    for name in ("Action", "Change", "InSync", "Plan", "Step", "selected"):
        assert hasattr(plans, name), name


def test_no_submodule_shadows_a_public_function() -> None:
    """`reconciler.plan`/`apply`/`validate` stay the functions after every submodule is imported."""
    code = (
        "import pkgutil, importlib, reconciler\n"
        "for m in pkgutil.walk_packages(reconciler.__path__, 'reconciler.'):\n"
        "    if m.name != 'reconciler.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "import inspect\n"
        "for n in reconciler.__all__:\n"
        "    v = getattr(reconciler, n)\n"
        "    assert not inspect.ismodule(v), n\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
