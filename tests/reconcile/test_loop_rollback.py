"""`reconciler.apply` end to end with no engine: a fake docker CLI replays a recorded stack.

tests/facts/scenarios/rollback/ holds every docker call of a real
`apply --rollback-on-failure state-pin-api-2.yaml` on the mutfx stack (tests/facts/mutfx_stack/):
the pin moves api to mutfxrb-api:2, whose build fails (its base image was gone: buildkit's real
error). scenarios/converged/ holds a real apply of state.yaml on the same, converged stack.
"""

from __future__ import annotations

import fnmatch
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reconciler.cli.report import junit_xml
from reconciler.errors import PermanentDockerError
from reconciler.plans import Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.loop import ApplyResult
from reconciler.state import load_state
from tests.facts import fake_docker

STACK = Path(fake_docker.__file__).parent / "mutfx_stack"
PINNED = (STACK / "docker-compose.yml").read_bytes().replace(b"mutfxrb-api:1", b"mutfxrb-api:2")
BUILD_API_2 = "buildx build --load --tag mutfxrb-api:2 *"


def stack(tmp_path: Path) -> Path:
    """A private copy of the mutfx stack (the recorded outputs name it @@DIR@@)."""
    copy = tmp_path / "stack"
    shutil.copytree(STACK, copy)
    return copy


def apply_failing_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, rollback: bool
) -> tuple[ApplyResult, Path, list[str]]:
    directory = stack(tmp_path)
    log = fake_docker.on_path("rollback", tmp_path, monkeypatch, root=directory)
    state = load_state(directory / "state-pin-api-2.yaml")
    result = reconcile.apply(state, rollback_on_failure=rollback, lock=False)
    return result, directory / "docker-compose.yml", fake_docker.calls(log)


def test_failed_build_is_rolled_back_to_the_previous_compose_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With rollback on, the build failure restores the compose file byte for byte and says so."""
    result, compose, calls = apply_failing_pin(tmp_path, monkeypatch, rollback=True)
    assert isinstance(result.error, PermanentDockerError)
    assert "failed to solve" in str(result.error)
    assert compose.read_bytes() == (STACK / "docker-compose.yml").read_bytes()
    assert result.rolled_back == ("restored docker-compose.yml to its previous bytes",)
    assert sum(fnmatch.fnmatchcase(c, BUILD_API_2) for c in calls) == 1
    assert not any(c.startswith("compose up") for c in calls), "services were still in sync"


def test_without_rollback_the_failed_pin_stays_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With rollback off, the same failure leaves the edited pin in place and rolls nothing back."""
    result, compose, _ = apply_failing_pin(tmp_path, monkeypatch, rollback=False)
    assert isinstance(result.error, PermanentDockerError)
    assert compose.read_bytes() == PINNED
    assert result.rolled_back == ()


def test_failed_apply_plans_and_reports_what_it_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-pin plans edit, build and recreate; the edit is applied, the build failed (JUnit too)."""
    result, _, _ = apply_failing_pin(tmp_path, monkeypatch, rollback=True)
    planned = [(c.step, c.action, c.target) for c in result.plan.changes]
    assert planned == [
        (Step.COMPOSE_FILE, "edit", "docker-compose.yml:services.api.image"),
        (Step.IMAGES, "build", "mutfxrb-api:2"),
        (Step.SERVICES, "recreate", "api"),
    ]
    assert [c.action for c in result.applied] == ["edit"]
    assert [(c.action, c.target) for c in result.failed] == [("build", "mutfxrb-api:2")]
    assert not result.succeeded
    assert result.counts == {"ok": len(result.plan.ok), "changed": 1, "failed": 1}
    root = ET.fromstring(junit_xml("mutfxrb", result))
    assert (root.get("tests"), root.get("failures")) == ("2", "1"), (
        "the edit passed, the build failed"
    )


def test_converged_stack_applies_nothing_and_passes_its_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applying the declared state to the converged stack changes nothing and runs its checks."""
    directory = stack(tmp_path)
    log = fake_docker.on_path("converged", tmp_path, monkeypatch, root=directory)
    state = load_state(directory / "state.yaml")
    result = reconcile.apply(state, rollback_on_failure=True, lock=False)
    assert result.error is None, result.error
    assert result.applied == ()
    assert [(c.name, c.passed) for c in result.checks] == [
        ("api answers healthy", True),
        ("image size mutfxrb-db:1", True),
    ]
    assert [call for call in result.calls if call.mutating] == []
    assert (directory / "docker-compose.yml").read_bytes() == (
        STACK / "docker-compose.yml"
    ).read_bytes()
    assert "compose exec -T api wget -q -O - http://127.0.0.1:8080/health" in fake_docker.calls(log)


def test_plan_of_the_converged_stack_lists_its_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan` on the converged stack is empty, costs 5 docker reads, and lists its rows as ok."""
    directory = stack(tmp_path)
    log = fake_docker.on_path("converged", tmp_path, monkeypatch, root=directory)
    state = load_state(directory / "state.yaml")
    adapter = reconcile.make_adapter(state)
    plan = reconcile.plan(state, adapter=adapter)
    assert plan.empty
    # One batched snapshot serves every step: the 5 reads, and no step reads docker on its own.
    assert len(adapter.calls) == len(fake_docker.calls(log)) == 5
    assert adapter.mutating_calls == []
    rows = {(str(row.step), row.target) for row in plan.ok}
    assert {
        ("services", "db"),
        ("services", "api"),
        ("images", "mutfxrb-db:1"),
        ("checks", "api answers healthy"),
        ("checks", "image size mutfxrb-db:1"),
    } <= rows


def test_fake_docker_refuses_a_call_it_has_no_recording_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A docker call missing from the scenario fails loudly instead of answering a guess."""
    directory = stack(tmp_path)
    fake_docker.on_path("converged", tmp_path, monkeypatch, root=directory)
    adapter = reconcile.make_adapter(load_state(directory / "state.yaml"))
    with pytest.raises(PermanentDockerError, match="nothing recorded in converged for: compose up"):
        adapter.up(["api"])
