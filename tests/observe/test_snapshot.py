"""The snapshot of what is there (`reconciler.observe.snapshot`): the pure helpers it reads the
model with, and, on the real engine, that observation is batched (a plan costs the same number
of docker CLI calls for 3 or 40 services)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import reconciler
from reconciler.docker.facts import BuildConfig
from reconciler.observe.snapshot import activating, base_images
from reconciler.reconcile.loop import make_adapter
from tests.conftest import BUSYBOX, STACK, compose_down


def test_activating_names_the_profiles_a_service_needs() -> None:
    """Messages name no profile, one profile, or the profiles joined by 'or'."""
    assert activating([]) == "no profile (compose's model leaves it out)"
    assert activating(["debug"]) == "profile debug"
    assert activating(["debug", "tools"]) == "profiles debug or tools"


def test_base_images_are_read_from_every_from_line(tmp_path: Path) -> None:
    """Every FROM of the Dockerfile counts, options and stage names aside; none without a file."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "# syntax=docker/dockerfile:1\n"
        "FROM --platform=linux/amd64 python:3.12-slim AS build\n"
        "RUN echo FROM nothing\n"
        "from build\n"
        "  FROM scratch\n"
    )
    build = BuildConfig(tmp_path, dockerfile)
    assert base_images(build) == ["python:3.12-slim", "build", "scratch"]
    assert base_images(BuildConfig(tmp_path, tmp_path / "missing.Dockerfile")) == []


def write_fleet(directory: Path, project: str, count: int) -> Path:
    """A compose project of `count` services sharing one built busybox image; returns its state."""
    directory.mkdir(parents=True)
    shutil.copy2(STACK / "Dockerfile", directory / "Dockerfile")
    shutil.copy2(STACK / "serve.sh", directory / "serve.sh")
    shutil.copy2(BUSYBOX, directory / "busybox")
    lines = ["services:"]
    for index in range(count):
        lines += [
            f"  s{index:02d}:",
            "    build: .",
            f"    image: {project}-fleet:1",
            '    command: ["sleep", "100000"]',
            "    stop_grace_period: 1s",
        ]
    (directory / "docker-compose.yml").write_text("\n".join(lines) + "\n")
    state = directory / "state.yaml"
    state.write_text(
        f"name: {project}\ncompose:\n  file: docker-compose.yml\n  project: {project}\n"
    )
    return state


def down(state_file: Path, project: str) -> None:
    """Remove the fleet's containers and image."""
    compose = state_file.parent / "docker-compose.yml"
    compose_down(["docker", "compose", "-f", str(compose), "-p", project], "-t", "0")
    subprocess.run(
        ["docker", "image", "rm", "-f", f"{project}-fleet:1"], capture_output=True, check=False
    )


@pytest.fixture
def fleets(docker_engine: None, tmp_path: Path) -> Iterator[dict[int, Path]]:
    """Two converged projects, of 3 and of 40 services."""
    made: dict[int, tuple[Path, str]] = {}
    try:
        for count in (3, 40):
            project = f"rc{uuid.uuid4().hex[:8]}"
            state_file = write_fleet(tmp_path / f"fleet{count}", project, count)
            made[count] = (state_file, project)
            result = reconciler.apply(reconciler.load_state(state_file))
            assert result.succeeded, result.error
        yield {count: state_file for count, (state_file, _) in made.items()}
    finally:
        for state_file, project in made.values():
            down(state_file, project)


@pytest.mark.docker
def test_plan_call_count_does_not_grow_with_services(fleets: dict[int, Path]) -> None:
    """A converged plan asks docker the same fixed number of times for 3 and for 40 services."""
    counts = {}
    for count, state_file in fleets.items():
        state = reconciler.load_state(state_file)
        adapter = make_adapter(state)
        plan = reconciler.plan(state, adapter=adapter)
        assert plan.empty, plan.changes
        assert len([row for row in plan.ok if row.step == "services"]) == count
        counts[count] = len(adapter.calls)
        assert adapter.mutating_calls == []
    # the compose model, the containers (list, inspect) and the images: compose's hash of the
    # model was remembered by the apply that made the stack
    assert counts[3] == counts[40] == 4
