"""End to end on the real engine: one apply converges when the state changes a variable compose
interpolates through an env file, in a service's environment (the implicit `.env`) or in an
image two services share (`.env.core`, the homelab's `${IMAGE_TAG:-latest}`); the next plan is
empty and the next apply makes no mutating docker call. Project names start with `cv-`.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.reconcile.loop import make_adapter
from tests.conftest import BUSYBOX, STACK, Stack, remove_stack, run_cli
from tests.e2e.test_idempotence import container_ids

pytestmark = pytest.mark.docker


def _free_port() -> int:
    """A loopback port nothing listens on now (the api publishes it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def cv_stack(docker_engine: None, tmp_path: Path) -> Iterator[Stack]:
    """A private copy of the e2e stack under a `cv-` project, torn down afterwards."""
    project = f"cv-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    shutil.copy2(BUSYBOX, directory / "busybox")
    for name in ("docker-compose.yml", "state.yaml"):
        path = directory / name
        text = path.read_text().replace("rtest-", f"{project}-").replace("rtest", project)
        path.write_text(text.replace("${RTEST_API_PORT:-18080}", str(port)))
    created = Stack(directory, project, port)
    try:
        yield created
    finally:
        remove_stack(created)


def _plan(stack: Stack) -> tuple[int, list[dict[str, Any]]]:
    """Exit code and changes of `plan --json`."""
    done = run_cli("plan", stack.state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def _inspect(container: str, template: str) -> str:
    """One `docker inspect --format` value of a container."""
    return subprocess.run(
        ["docker", "inspect", "--format", template, container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _env_of(container: str) -> dict[str, str]:
    """A container's environment."""
    items: list[str] = json.loads(_inspect(container, "{{json .Config.Env}}"))
    return dict(item.split("=", 1) for item in items)


def _second_apply_changes_nothing(stack: Stack) -> None:
    """The idempotence tail: the plan is empty (exit 0), and an apply through the library
    changes nothing, with not one mutating docker call (counted)."""
    assert _plan(stack) == (0, [])
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.mutating_calls == [], adapter.mutating_calls


def _state(stack: Stack, extra: str) -> None:
    """The stack's own state file, with `extra` appended (a `files:` section)."""
    state = (STACK / "state.yaml").read_text().replace("rtest", stack.project)
    stack.state_file.write_text(state + extra)


def test_one_apply_converges_a_dotenv_variable_in_an_environment(cv_stack: Stack) -> None:
    """`files:` changes APP_MODE in .env, which the worker reads as `MODE: ${APP_MODE}`: one apply
    recreates the worker (and only it), the next plan is empty, the next apply changes nothing."""
    stack = cv_stack
    compose = stack.compose_file.read_text()
    anchor = f"    image: {stack.project}-worker:1\n"
    assert anchor in compose
    stack.compose_file.write_text(
        compose.replace(anchor, anchor + '    environment:\n      MODE: "${APP_MODE}"\n')
    )
    (stack.directory / ".env").write_text("APP_MODE=a\n")

    # 1. Converge with APP_MODE=a: plan (changes) -> apply -> plan (empty) -> apply (no call).
    _state(stack, "files:\n  .env: {set: {APP_MODE: a}}\n")
    assert _plan(stack)[0] == 2
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    _second_apply_changes_nothing(stack)
    before = container_ids(stack)
    assert _env_of(before["worker"])["MODE"] == "a"

    # 2. APP_MODE=b: the plan edits .env and recreates the worker, naming the variable.
    _state(stack, "files:\n  .env: {set: {APP_MODE: b}}\n")
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", ".env:APP_MODE", "edit"),
        ("services", "worker", "recreate"),
    ]
    assert "APP_MODE" in changes[1]["reason"]
    assert "environment.MODE" in changes[1]["reason"]

    # 3. ONE apply converges (exit 0), recreating the worker alone.
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stdout + done.stderr
    after = container_ids(stack)
    assert after["worker"] != before["worker"]
    assert (after["db"], after["api"]) == (before["db"], before["api"])
    assert _env_of(after["worker"])["MODE"] == "b"
    assert (stack.directory / ".env").read_text() == "APP_MODE=b\n"
    _second_apply_changes_nothing(stack)
    assert container_ids(stack) == after


def test_one_apply_converges_an_image_tag_two_services_share(cv_stack: Stack) -> None:
    """The homelab shape: api builds `…-api:${IMAGE_TAG:-1}` and mcp runs the same image, the
    tag in .env.core. Pinning api to tag 2 edits .env.core once, builds tag 2 (never tag 1
    again), recreates both in one apply; then the plan is empty and an apply changes nothing."""
    stack = cv_stack
    compose = stack.compose_file.read_text()
    pinned = f'    image: "{stack.project}-api:1"   # pinned by the state\n'
    assert pinned in compose
    shared = f'    image: "{stack.project}-api:${{IMAGE_TAG:-latest}}"\n'
    mcp = (
        "  mcp:\n"
        + shared
        + "    environment: {PORT: '8081'}\n"
        + "    depends_on: {api: {condition: service_healthy}}\n"
    )
    stack.compose_file.write_text(compose.replace(pinned, shared) + "\n" + mcp)
    (stack.directory / ".env.core").write_text("# homelab core\nIMAGE_TAG=1\n")

    def state(tag: str) -> None:
        stack.state_file.write_text(
            f"name: {stack.project}\ncompose:\n  file: docker-compose.yml\n"
            f"  project: {stack.project}\n  env_files: [.env.core]\n"
            f"services:\n  db: {{image: {stack.image('db')}}}\n"
            f"  api: {{image: {stack.image('api', tag)}, health_timeout: 60}}\n"
            f"  worker: {{image: {stack.image('worker')}}}\n"
        )

    state("1")
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    _second_apply_changes_nothing(stack)
    before = container_ids(stack)

    state("2")
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", ".env.core:IMAGE_TAG", "edit"),
        ("images", stack.image("api", "2"), "build"),
        ("services", "api", "recreate"),
        ("services", "mcp", "recreate"),
    ]
    assert "also changes the image of mcp" in changes[0]["reason"]
    assert "IMAGE_TAG" in changes[3]["reason"]

    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stdout + done.stderr
    after = container_ids(stack)
    assert after["mcp"] != before["mcp"]
    assert after["api"] != before["api"]
    assert (after["db"], after["worker"]) == (before["db"], before["worker"])
    for service in ("api", "mcp"):
        assert _inspect(after[service], "{{.Config.Image}}") == stack.image("api", "2")
    _second_apply_changes_nothing(stack)
    assert container_ids(stack) == after
