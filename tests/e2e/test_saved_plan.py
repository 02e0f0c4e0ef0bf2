"""Saved plans on the real engine: `plan --out PLANFILE`, then `apply PLANFILE` or its refusal.

The e2e stack (tests/e2e/stack): a plan file is refused (exit 1) once the state moved, applied
when nothing did, refused again once it has been applied, and refused when a container was
changed behind its back, naming the services step and the service.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Stack, run_cli

pytestmark = pytest.mark.docker


def plan_out(stack: Stack, out: Path) -> int:
    """`plan STATE --out OUT`: its exit code; the file must exist and say where it went."""
    done = run_cli("plan", stack.state_file, "--out", out)
    assert done.returncode in {0, 2}, done.stderr
    assert f"Saved the plan to {out}" in done.stdout
    assert json.loads(out.read_text())["format"] == "reconciler-plan"
    return done.returncode


def test_plan_file_is_refused_when_stale_and_applied_when_fresh(
    stack: Stack, tmp_path: Path
) -> None:
    """Pinned elsewhere since: refused naming the state file; fresh: converges; then no-op."""
    first = tmp_path / "first.plan"
    assert plan_out(stack, first) == 2
    original = stack.state_file.read_text()
    stack.state_file.write_text(original.replace(stack.image("api"), stack.image("api", "2")))
    compose_before = stack.compose_file.read_bytes()

    refused = run_cli("apply", first)
    assert refused.returncode == 1, refused.stderr
    assert f"state file {stack.state_file} changed since the plan was made" in refused.stderr
    assert stack.compose_file.read_bytes() == compose_before, "a refused plan changes nothing"
    listed = subprocess.run(
        stack.compose_argv("ps", "-aq"), capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == [], "a refused plan starts nothing"

    stack.state_file.write_text(original)
    second = tmp_path / "second.plan"
    assert plan_out(stack, second) == 2
    done = run_cli("apply", second, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    saved = json.loads(second.read_text())["plan"]["changes"]
    assert [(c["step"], c["target"], c["action"]) for c in result["changes"]] == [
        (c["step"], c["target"], c["action"]) for c in saved
    ]
    assert result["summary"]["failed"] == 0

    again = run_cli("apply", stack.state_file)
    assert again.returncode == 0, again.stderr
    assert "No changes" in again.stdout
    assert "changed=0 failed=0" in again.stdout

    reused = run_cli("apply", second)
    assert reused.returncode == 1, "an applied plan is stale: what it was made from moved"
    assert "observed facts of step images changed since the plan was made" in reused.stderr


def test_plan_file_is_refused_when_a_container_changed_behind_its_back(
    stack: Stack, tmp_path: Path
) -> None:
    """Converged, planned, then `docker stop` of api: refused, naming services and api."""
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    planned = tmp_path / "converged.plan"
    assert plan_out(stack, planned) == 0

    subprocess.run(stack.compose_argv("stop", "api"), capture_output=True, check=True)
    refused = run_cli("apply", planned)
    assert refused.returncode == 1, refused.stderr
    assert "observed facts of step services changed since the plan was made: api" in (
        refused.stderr
    )
    assert "state file" not in refused.stderr
    status = subprocess.run(
        stack.compose_argv("ps", "-a", "--format", "{{.Service}} {{.State}}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "api exited" in status, "a refused plan starts nothing"
