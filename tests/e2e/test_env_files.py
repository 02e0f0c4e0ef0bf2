"""End to end on the real engine: an interpolated image pinned through its env file, a dotenv
key kept by `files:`, and a failed apply rolling the env file back, in the shape of the
reference platform's homelab (`image: …:${IMAGE_TAG:-latest}` with `IMAGE_TAG` in `.env.core`).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

import reconciler
from reconciler.reconcile.loop import make_adapter
from tests.conftest import Stack, run_cli
from tests.e2e.test_idempotence import container_ids

pytestmark = pytest.mark.docker

ENV_CORE = "# homelab core\nIMAGE_TAG=1\nLOG_LEVEL=info\n"


def _homelab(stack: Stack) -> None:
    """The api's image tag and two environment entries come from `.env.core` (--env-file)."""
    compose = stack.compose_file.read_text()
    pinned = f'    image: "{stack.project}-api:1"   # pinned by the state\n'
    assert pinned in compose
    compose = compose.replace(
        pinned,
        f'    image: "{stack.project}-api:${{IMAGE_TAG:-latest}}"\n'
        '    environment:\n      PORT: "${API_PORT:-8080}"\n      LOG_LEVEL: ${LOG_LEVEL}\n',
    )
    stack.compose_file.write_text(compose)
    (stack.directory / ".env.core").write_text(ENV_CORE)


def _state(stack: Stack, tag: str, files: dict[str, str], *, health_timeout: int = 60) -> None:
    sets = ", ".join(f"{key}: {json.dumps(value)}" for key, value in files.items())
    stack.state_file.write_text(
        f"name: {stack.project}\n"
        "compose:\n"
        "  file: docker-compose.yml\n"
        f"  project: {stack.project}\n"
        "  env_files: [.env.core]\n"
        "services:\n"
        f"  db: {{image: {stack.image('db')}}}\n"
        f"  api: {{image: {stack.image('api', tag)}, health_timeout: {health_timeout}}}\n"
        f"  worker: {{image: {stack.image('worker')}}}\n"
        + (f"files:\n  .env.core: {{set: {{{sets}}}}}\n" if files else "")
    )


def _plan(stack: Stack) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("plan", stack.state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    return done.returncode, json.loads(done.stdout)["changes"]


def _container_env(stack: Stack, container: str) -> dict[str, str]:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{json .Config.Env}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(item.split("=", 1) for item in json.loads(out))


def _container_image(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_interpolated_pin_goes_through_the_env_file(stack: Stack) -> None:
    _homelab(stack)
    compose_bytes = stack.compose_file.read_bytes()
    env_file = stack.directory / ".env.core"

    # 1. Converge on tag 1; the next plan is empty.
    _state(stack, "1", {})
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert _plan(stack) == (0, [])
    before = container_ids(stack)

    # 2. Tag 2 and a debug log level: only the env file is edited, only the api is recreated.
    _state(stack, "2", {"LOG_LEVEL": "debug"})
    code, changes = _plan(stack)
    assert code == 2
    targets = {(c["step"], c["target"]) for c in changes}
    assert ("compose-file", ".env.core:IMAGE_TAG") in targets
    assert ("compose-file", ".env.core:LOG_LEVEL") in targets
    assert not any(t.startswith("docker-compose.yml") for _, t in targets), targets
    assert ("images", stack.image("api", "2")) in targets
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert stack.compose_file.read_bytes() == compose_bytes  # not a byte of it
    assert env_file.read_text() == "# homelab core\nIMAGE_TAG=2\nLOG_LEVEL=debug\n"
    after = container_ids(stack)
    assert after["api"] != before["api"]
    assert after["db"] == before["db"]
    assert after["worker"] == before["worker"]
    assert _container_image(after["api"]) == stack.image("api", "2")
    assert _container_env(stack, after["api"])["LOG_LEVEL"] == "debug"
    assert _plan(stack) == (0, [])  # compose's config hash, with --env-file, matches
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert "No changes" in done.stdout + done.stderr
    # the same second apply through the library: not one mutating docker call
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.mutating_calls == [], adapter.mutating_calls
    assert container_ids(stack) == after

    # 3. A key that breaks the api (it listens elsewhere, its healthcheck fails): the failed
    # apply puts the env file back byte for byte, and the api back as it was.
    converged = env_file.read_bytes()
    _state(stack, "2", {"LOG_LEVEL": "debug", "API_PORT": "9999"}, health_timeout=4)
    done = run_cli("apply", stack.state_file, "--rollback-on-failure")
    assert done.returncode == 1, done.stderr
    assert "restored .env.core to its previous bytes" in done.stdout + done.stderr
    assert env_file.read_bytes() == converged
    _state(stack, "2", {"LOG_LEVEL": "debug"})
    assert _plan(stack) == (0, [])


def test_a_variable_the_file_requires_is_bad_input(stack: Stack) -> None:
    """A missing variable the file requires is compose's error, reported as bad input."""
    _homelab(stack)
    (stack.directory / ".env.core").write_text("IMAGE_TAG=1\n")  # LOG_LEVEL undefined: empty
    compose = stack.compose_file.read_text().replace("${LOG_LEVEL}", "${LOG_LEVEL:?set LOG_LEVEL}")
    stack.compose_file.write_text(compose)
    _state(stack, "1", {})
    done = run_cli("plan", stack.state_file)
    assert done.returncode == 3, done.stderr
    assert "set LOG_LEVEL" in done.stderr
