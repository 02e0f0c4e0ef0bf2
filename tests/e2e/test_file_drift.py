"""End to end on the real engine: a service with an `env_file` converges (compose 2.26 leaves the
env file out of `config --hash`), and a changed bind-mounted file or env file makes that service
alone drift, and apply recreates it alone.

The stack: two busybox services built offline FROM scratch (context `image/`, so that the edited
files are no build input) sharing one image; `app` has an env file and a read-only bind-mounted
config file, `other` has neither.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX, run_cli

pytestmark = pytest.mark.docker

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""

COMPOSE = """\
services:
  app:
    build: image
    image: {project}-app:1
    env_file: app.env
    volumes:
      - ./app.conf:/etc/app.conf:ro
  other:
    build: image
    image: {project}-app:1
"""

STATE = """\
name: {project}
compose:
  file: docker-compose.yml
  project: {project}
services:
  app:
    health_timeout: 60
  other:
    health_timeout: 60
"""


@pytest.fixture
def stack(docker_engine: None, tmp_path: Path) -> Iterator[Path]:
    """The stack's directory (state.yaml, docker-compose.yml, app.env, app.conf); torn down."""
    project = f"rtdrift{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "stack"
    (directory / "image").mkdir(parents=True)
    shutil.copy2(BUSYBOX, directory / "image" / "busybox")
    (directory / "image" / "Dockerfile").write_text(DOCKERFILE)
    (directory / "docker-compose.yml").write_text(COMPOSE.format(project=project))
    (directory / "state.yaml").write_text(STATE.format(project=project))
    (directory / "app.env").write_text("GREETING=hello\n")
    (directory / "app.conf").write_text("level = 1\n")
    try:
        yield directory
    finally:
        compose = ["docker", "compose", "-f", str(directory / "docker-compose.yml"), "-p", project]
        subprocess.run([*compose, "down", "--timeout", "1"], capture_output=True, check=False)
        subprocess.run(
            ["docker", "image", "rm", "-f", f"{project}-app:1"], capture_output=True, check=False
        )


def _plan(stack: Path) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("plan", stack / "state.yaml", "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def _apply(stack: Path) -> None:
    done = run_cli("apply", stack / "state.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def _project(stack: Path) -> str:
    return (stack / "state.yaml").read_text().split("project: ")[1].split()[0]


def _ids(stack: Path) -> dict[str, str]:
    """service -> container id."""
    project = _project(stack)
    out = subprocess.run(
        [
            "docker",
            "container",
            "ls",
            "--all",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            '{{.ID}} {{.Label "com.docker.compose.service"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {service: cid for cid, service in (line.split() for line in out.splitlines())}


def _env(container: str) -> str:
    return subprocess.run(
        ["docker", "exec", container, "env"], capture_output=True, text=True, check=True
    ).stdout


def test_env_file_converges_and_changed_files_recreate_only_their_service(stack: Path) -> None:
    """apply -> plan empty (env_file converges) -> edit the bind-mounted file: only app drifts,
    apply recreates only app -> edit the env file: likewise, with the new value -> plan empty."""
    _apply(stack)
    code, changes = _plan(stack)
    assert (code, changes) == (0, []), "a service with an env_file must converge"
    project = _project(stack)
    records = Path(os.environ["RECONCILER_STATE_DIR"]) / f"inputs-{project}.json"
    assert "app.env" in records.read_text()
    first = _ids(stack)
    assert set(first) == {"app", "other"}

    (stack / "app.conf").write_text("level = 2\n")
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("services", "app", "recreate")
    ]
    assert "changed: app.conf" in changes[0]["reason"]
    _apply(stack)
    second = _ids(stack)
    assert second["app"] != first["app"]
    assert second["other"] == first["other"]
    assert _plan(stack) == (0, [])

    (stack / "app.env").write_text("GREETING=bonjour\n")
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("services", "app", "recreate")
    ]
    assert "changed: app.env" in changes[0]["reason"]
    _apply(stack)
    third = _ids(stack)
    assert third["app"] != second["app"]
    assert third["other"] == first["other"]
    assert "GREETING=bonjour" in _env(third["app"])

    assert _plan(stack) == (0, [])


def test_a_files_edit_of_a_mounted_config_recreates_its_reader(stack: Path) -> None:
    """The state's `files:` rewrites the bind-mounted config (atomically: a new inode, which a
    running container would never see): the plan recreates the service that mounts it, apply
    does so alone, the container reads the new content, the next plan is empty."""
    _apply(stack)
    first = _ids(stack)
    state = stack / "state.yaml"
    state.write_text(state.read_text() + 'files:\n  app.conf: {content: "level = 3\\n"}\n')
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", "app.conf", "edit"),
        ("services", "app", "recreate"),
    ]
    assert "the compose-file step edits app.conf" in changes[1]["reason"]
    _apply(stack)
    second = _ids(stack)
    assert second["app"] != first["app"]
    assert second["other"] == first["other"]
    assert (stack / "app.conf").read_text() == "level = 3\n"
    seen = subprocess.run(
        ["docker", "exec", second["app"], "cat", "/etc/app.conf"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert seen == "level = 3\n"
    assert _plan(stack) == (0, [])
    done = run_cli("apply", state)
    assert done.returncode == 0, done.stderr
    assert "No changes" in done.stdout + done.stderr
