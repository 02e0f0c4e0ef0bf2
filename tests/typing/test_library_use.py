"""The documented library use, type-checked (mypy --strict runs over tests/) and run.

`assert_type` fails mypy when a public signature drifts from what the README promises.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any, assert_type

import reconciler


def documented_use(state_file: Path) -> int:
    """The README's library example, with every public type it touches."""
    state = reconciler.load_state(state_file)
    assert_type(state, reconciler.State)
    assert_type(reconciler.validate(state_file), reconciler.ValidationResult)
    stop = reconciler.StopToken()
    adapter = reconciler.DockerAdapter(
        state.compose.file,
        state.compose.project,
        retry=reconciler.RetryPolicy(attempts=3),
        stop=stop,
    )
    plan = reconciler.plan(state, adapter=adapter)
    assert_type(plan, reconciler.Plan)
    for change in plan.changes:
        assert_type(change, reconciler.Change)
        assert_type(change.action, reconciler.Action)
    result = reconciler.apply(state, adapter=adapter, stop=stop, lock_timeout=5.0)
    assert_type(result, reconciler.ApplyResult)
    assert_type(result.error, reconciler.ReconcilerError | None)
    for check in result.checks:
        assert_type(check, reconciler.CheckResult)
    for call in result.calls:
        assert_type(call, reconciler.DockerCall)
    assert_type(result.to_dict(), dict[str, Any])
    baseline = reconciler.load_record(state_file.parent / "baseline.json")
    assert_type(baseline, reconciler.RunRecord)
    compared = reconciler.apply(state, baseline=baseline).comparison
    assert_type(compared, reconciler.Comparison | None)
    assert_type(reconciler.compare_observed(state, baseline), reconciler.Comparison)
    assert_type(result.record(state.name), reconciler.RunRecord)
    for check in result.checks:
        for case in check.cases:
            assert_type(case, reconciler.CaseResult)
    reconciler.down(state)
    return 0 if result.succeeded else result.error.exit_code if result.error else 1


def test_every_public_name_resolves() -> None:
    """Each name in reconciler.__all__ imports, and nothing private leaks into it."""
    for name in reconciler.__all__:
        assert getattr(reconciler, name) is not None
        assert not name.startswith("_")


def test_plan_stays_the_function_after_submodule_imports() -> None:
    """Importing any submodule never replaces reconciler.plan (the function) by a module."""
    for module in ("reconciler.plans", "reconciler.reconcile.loop", "reconciler.steps.checks"):
        importlib.import_module(module)
    assert callable(reconciler.plan)
    assert reconciler.plan is sys.modules["reconciler.reconcile.loop"].plan


def test_importing_the_package_is_light() -> None:
    """`import reconciler` alone loads no docker, pydantic or ruamel code (lazy names)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, reconciler; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'python_on_whales', 'pydantic', 'ruamel', 'docker'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
