"""End to end on the real engine: an interpolated image pinned through its env file, a dotenv
key kept by `files:`, and a failed apply rolling the env file back, in the shape of the
reference platform's homelab (`image: …:${IMAGE_TAG:-latest}` with `IMAGE_TAG` in `.env.core`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.compose.dotenv import parse_dotenv
from reconciler.observe.env_files import env_file_values
from reconciler.plans import Step
from reconciler.reconcile.loop import make_adapter
from tests.conftest import Stack, run_cli
from tests.reconcile.test_loop import container_ids

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


@pytest.mark.docker
def test_interpolated_pin_goes_through_the_env_file(stack: Stack) -> None:
    """An interpolated image is pinned through its env file and the service is recreated on it."""
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


@pytest.mark.docker
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


# The compose-file step on env files, through the library, with no docker: plan shows each
# dotenv key's diff, apply writes only those bytes, a second plan is empty, secrets never show.


COMPOSE = "services:\n  backend:\n    image: ghcr.io/kpiteira/ktrdr-backend:${IMAGE_TAG:-latest}\n"


ONLY_FILES = (Step.COMPOSE_FILE,)


def _layout(tmp_path: Path, state: str, files: dict[str, str]) -> Path:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode("utf-8"))
    (tmp_path / "state.yaml").write_text(state)
    return tmp_path / "state.yaml"


def test_interpolated_pin_edits_the_env_file_and_not_the_compose_file(tmp_path: Path) -> None:
    """A pin of `…:${IMAGE_TAG:-latest}` edits IMAGE_TAG in .env.core only; apply converges."""
    env_core = "# homelab core\r\nIMAGE_TAG=latest  # CI bumps this\r\nPOSTGRES_DB=ktrdr\r\n"
    path = _layout(
        tmp_path,
        "name: homelab\ncompose:\n  file: compose.yml\n  env_files: [.env.core]\n"
        "services:\n  backend: {image: 'ghcr.io/kpiteira/ktrdr-backend:abc123'}\n",
        {".env.core": env_core},
    )
    state = reconciler.load_state(path)
    plan = reconciler.plan(state, steps=ONLY_FILES)
    [change] = plan.changes
    assert (change.target, str(change.action)) == (".env.core:IMAGE_TAG", "edit")
    assert change.diff is not None
    assert "-IMAGE_TAG=latest  # CI bumps this\r\n+IMAGE_TAG=abc123  # CI bumps this\r\n" in (
        change.diff
    )
    result = reconciler.apply(state, steps=ONLY_FILES)
    assert result.succeeded, result.error
    assert (tmp_path / "compose.yml").read_text() == COMPOSE
    assert (tmp_path / ".env.core").read_bytes() == env_core.replace("latest", "abc123").encode()
    assert reconciler.plan(state, steps=ONLY_FILES).empty


def test_files_set_and_absent_apply_byte_minimal_and_then_in_sync(tmp_path: Path) -> None:
    """`files:` set/absent on a BOM, no-final-newline file: only those lines change."""
    path = _layout(
        tmp_path,
        "name: homelab\ncompose:\n  file: compose.yml\nfiles:\n"
        "  app.env: {set: {WORKERS: '8', REGION: eu-west-1}, absent: [LEGACY_MODE]}\n",
        {"app.env": "\ufeffexport WORKERS=4\nexport LEGACY_MODE=on\nexport LOG_LEVEL=info"},
    )
    state = reconciler.load_state(path)
    plan = reconciler.plan(state, steps=ONLY_FILES)
    assert [(c.target, str(c.action)) for c in plan.changes] == [
        ("app.env:WORKERS", "edit"),
        ("app.env:REGION", "insert"),
        ("app.env:LEGACY_MODE", "remove"),
    ]
    assert reconciler.apply(state, steps=ONLY_FILES).succeeded
    assert (tmp_path / "app.env").read_bytes() == (
        "\ufeffexport WORKERS=8\nexport LOG_LEVEL=info\nexport REGION=eu-west-1".encode()
    )
    again = reconciler.plan(state, steps=ONLY_FILES)
    assert again.empty
    assert [row.reason for row in again.ok] == [
        "already WORKERS=8",
        "already REGION=eu-west-1",
        "already absent",
    ]


def test_secret_values_never_appear_in_the_plan(tmp_path: Path) -> None:
    """Old and new values of a secret-looking key are masked in reason, before, after and diff."""
    path = _layout(
        tmp_path,
        "name: homelab\ncompose:\n  file: compose.yml\nfiles:\n"
        "  .env.secrets: {set: {API_TOKEN: n3w-t0ken-value}}\n",
        {".env.secrets": "export API_TOKEN='0ld-t0ken-value'\n"},
    )
    plan = reconciler.plan(reconciler.load_state(path), steps=ONLY_FILES)
    shown = json.dumps(plan.to_dict())
    assert "API_TOKEN" in shown
    assert "t0ken-value" not in shown
    assert "***" in shown


def test_env_file_values_chain_the_files_in_order(tmp_path: Path) -> None:
    """One rule for the interpolation env files (pins and env_file paths share it): each file
    resolves with the ones before it (a later one overrides), missing ones define nothing."""
    texts = {".env.a": "A=one\nC=from-a\n", ".env.b": "B=${A}-two\nC=from-b\n"}
    path = _layout(
        tmp_path,
        "name: chain\ncompose:\n  file: compose.yml\n  env_files: [.env.a, .env.b]\n",
        texts,
    )
    state = reconciler.load_state(path)
    parsed = {
        tmp_path / name: parse_dotenv(text, source=tmp_path / name) for name, text in texts.items()
    }
    assert env_file_values(state, parsed, {}) == {"A": "one", "B": "one-two", "C": "from-b"}
    assert env_file_values(state, parsed, {"D": "env"}) == {
        "A": "one",
        "B": "one-two",
        "C": "from-b",
    }
    missing = {tmp_path / ".env.b": parsed[tmp_path / ".env.b"]}  # .env.a defines nothing
    assert env_file_values(state, missing, {})["B"] == "-two"
