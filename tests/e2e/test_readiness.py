"""Readiness on a real engine: a crash loop is never ready; a completed one-shot stays done."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import reconciler
from reconciler.reconcile.loop import make_adapter
from tests.conftest import BUSYBOX, STACK

pytestmark = pytest.mark.docker

TRIES = 3


def write_project(directory: Path, project: str, services: str) -> Path:
    """A compose project of busybox services (one image, built once); returns its state file."""
    directory.mkdir(parents=True)
    for name in ("Dockerfile", "serve.sh"):
        shutil.copy2(STACK / name, directory / name)
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "docker-compose.yml").write_text("services:\n" + services)
    state = directory / "state.yaml"
    state.write_text(
        f"name: {project}\ncompose:\n  file: docker-compose.yml\n  project: {project}\n"
    )
    return state


@pytest.fixture
def project(docker_engine: None, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A unique project name and directory, torn down afterwards (containers and image)."""
    name = f"rr{uuid.uuid4().hex[:8]}"
    yield tmp_path / "project", name
    compose = tmp_path / "project" / "docker-compose.yml"
    subprocess.run(
        ["docker", "compose", "-f", str(compose), "-p", name, "down", "-t", "0"],
        capture_output=True,
        check=False,
    )
    subprocess.run(
        ["docker", "image", "rm", "-f", f"{name}-img:1"], capture_output=True, check=False
    )


def test_crash_looping_service_is_never_accepted(project: tuple[Path, str]) -> None:
    """restart: on-failure and an exit after 0.1 s: every apply fails, naming the crash loop."""
    directory, name = project
    state_file = write_project(
        directory,
        name,
        f"  flaky:\n    build: .\n    image: {name}-img:1\n    restart: on-failure\n"
        '    command: ["sh", "-c", "sleep 0.1; exit 1"]\n',
    )
    state = reconciler.load_state(state_file)
    for attempt in range(TRIES):
        result = reconciler.apply(state)
        assert not result.succeeded, f"attempt {attempt}: a crash loop was accepted"
        assert result.error is not None
        text = str(result.error)
        assert "flaky" in text
        assert any(word in text for word in ("crash-looping", "restarting", "exited")), text


def test_completed_one_shot_is_in_sync_and_not_started_again(project: tuple[Path, str]) -> None:
    """A one-shot that exited 0 (no restart policy) converges; plan is then empty; apply no-op."""
    directory, name = project
    state_file = write_project(
        directory,
        name,
        f'  setup:\n    build: .\n    image: {name}-img:1\n    command: ["true"]\n'
        f"  app:\n    image: {name}-img:1\n    stop_grace_period: 1s\n"
        "    depends_on:\n      setup:\n        condition: service_completed_successfully\n",
    )
    state = reconciler.load_state(state_file)
    first = reconciler.apply(state)
    assert first.succeeded, first.error
    plan = reconciler.plan(state)
    assert plan.empty, plan.changes
    assert any(row.target == "setup" and "exited" in row.reason for row in plan.ok), plan.ok
    adapter = make_adapter(state)
    again = reconciler.apply(state, adapter=adapter)
    assert again.succeeded, again.error
    assert not again.changed
    assert adapter.mutating_calls == []
