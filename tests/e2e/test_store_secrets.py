"""Secrets from a store, end to end on the real engine: a `command:` source (a stand-in for
`op read`) feeds `${API_TOKEN:?...}` and a compose secret fed from the environment; the value
reaches the containers and nothing else, and a changed secret recreates exactly its users."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX, REPO, run_cli

pytestmark = pytest.mark.docker

COMPOSE = """\
x-box: &box
  build: ./image
  image: {project}-box:1
  stop_signal: SIGKILL
services:
  app:
    <<: *box
    environment:
      API_TOKEN: ${{API_TOKEN:?API_TOKEN is required}}
  reader:
    <<: *box
    secrets: [token]
  other:
    <<: *box
secrets:
  token:
    environment: API_TOKEN
"""

STATE = """\
name: {project}
compose:
  file: docker-compose.yml
  project: {project}
secrets:
  API_TOKEN: {{command: [{vault}, read, api-token], timeout: 20}}
"""

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sleep", "3600"]
"""


@dataclass
class Project:
    directory: Path  # the compose project: state, compose file, build context
    vault: Path  # the secret store's files, outside the project
    project: str
    env: dict[str, str]

    @property
    def state_file(self) -> Path:
        return self.directory / "state.yaml"

    def set_token(self, value: str) -> None:
        (self.vault / "api-token").write_text(value + "\n")

    def cli(self, *args: str, outputs: list[str]) -> tuple[int, str]:
        """Run the CLI on the state; keep both streams in `outputs`; return exit code, stdout."""
        done = run_cli(args[0], self.state_file, *args[1:], env=self.env, cwd=self.directory)
        outputs += [done.stdout, done.stderr]
        return done.returncode, done.stdout

    def container_ids(self) -> dict[str, str]:
        label = f"label=com.docker.compose.project={self.project}"
        rows = subprocess.run(
            ["docker", "ps", "-a", "--filter", label, "--format", "{{.ID}} {{.Names}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        ids = {}
        for row in filter(None, rows):
            cid, name = row.split()
            ids[name.removeprefix(f"{self.project}-").removesuffix("-1")] = cid
        return ids

    def in_container(self, service: str, *argv: str) -> str:
        return subprocess.run(
            ["docker", "exec", f"{self.project}-{service}-1", *argv],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()


@pytest.fixture
def project(docker_engine: None, tmp_path: Path) -> Iterator[Project]:
    name = f"rtsec{uuid.uuid4().hex[:8]}"
    directory, vault = tmp_path / "project", tmp_path / "vault"
    (directory / "image").mkdir(parents=True)
    vault.mkdir()
    shutil.copy2(BUSYBOX, directory / "image" / "busybox")
    (directory / "image" / "Dockerfile").write_text(DOCKERFILE)
    op = vault / "op"  # `op read NAME`: prints the stored value, as 1Password's CLI would
    op.write_text('#!/bin/sh\n[ "$1" = read ] || exit 2\ncat "$(dirname "$0")/$2"\n')
    op.chmod(0o755)
    (directory / "docker-compose.yml").write_text(COMPOSE.format(project=name))
    (directory / "state.yaml").write_text(STATE.format(project=name, vault=op))
    env = {
        **os.environ,
        "RECONCILER_STATE_DIR": str(tmp_path / "reconciler-state"),
        "PYTHONPATH": str(REPO),  # this checkout's reconciler, whatever the cwd
    }
    env.pop("API_TOKEN", None)
    created = Project(directory, vault, name, env)
    try:
        yield created
    finally:
        compose = ["docker", "compose", "-f", str(directory / "docker-compose.yml"), "-p", name]
        subprocess.run(
            [*compose, "down", "--volumes", "--timeout", "1"],
            capture_output=True,
            check=False,
            env={**os.environ, "API_TOKEN": "cleanup"},
        )
        subprocess.run(
            ["docker", "image", "rm", "-f", f"{name}-box:1"], capture_output=True, check=False
        )


def changes(stdout: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(stdout)["changes"]
    return result


def test_secret_from_a_command_converges_drifts_by_keyed_hash_and_is_never_written(
    project: Project,
) -> None:
    first, second = (f"tok-{kind}-{uuid.uuid4().hex[:16]}" for kind in ("first", "second"))
    project.set_token(first)
    outputs: list[str] = []

    code, out = project.cli("plan", "--json", outputs=outputs)
    assert code == 2, outputs[-1][-2000:]
    planned = {(c["step"], c["target"], c["action"]) for c in changes(out)}
    assert {("services", s, "create") for s in ("app", "reader", "other")} <= planned
    code, _ = project.cli("apply", "-v", "--report", "report.md", outputs=outputs)
    assert code == 0, outputs[-1][-3000:]
    code, out = project.cli("plan", "--json", outputs=outputs)
    assert (code, changes(out)) == (0, []), "a second plan is empty"
    assert f"API_TOKEN={first}" in project.in_container("app", "env").splitlines()
    assert project.in_container("reader", "cat", "/run/secrets/token") == first
    before = project.container_ids()

    project.set_token(second)
    code, out = project.cli("plan", "--json", "-v", outputs=outputs)
    assert code == 2, outputs[-1][-2000:]
    drift = {c["target"]: c for c in changes(out)}
    assert set(drift) == {"app", "reader"}, "exactly the services that use the secret"
    assert drift["app"]["reason"] == "secret API_TOKEN changed (config hash differs)"
    assert drift["reader"]["reason"].startswith("secret API_TOKEN changed (not covered")
    code, _ = project.cli("plan", "--log-format", "console", outputs=outputs)
    assert code == 2
    code, out = project.cli("apply", "--json", "-v", "--report", "report2.md", outputs=outputs)
    assert code == 0, outputs[-1][-3000:]
    assert {c["target"] for c in changes(out)} == {"app", "reader"}
    after = project.container_ids()
    assert after["other"] == before["other"], "the service without the secret is left alone"
    assert after["app"] != before["app"]
    assert after["reader"] != before["reader"]
    assert f"API_TOKEN={second}" in project.in_container("app", "env").splitlines()
    assert project.in_container("reader", "cat", "/run/secrets/token") == second
    code, out = project.cli("plan", "--json", outputs=outputs)
    assert (code, changes(out)) == (0, [])

    code, _ = project.cli("down", outputs=outputs)  # compose interpolates for down too
    assert code == 0, outputs[-1][-2000:]
    assert project.container_ids() == {}

    everything = "\n".join(outputs)
    assert "docker call" in everything, "debug logs were searched too"
    written = [project.directory, project.directory.parent / "reconciler-state"]
    files = [path for top in written for path in top.rglob("*") if path.is_file()]
    assert any(path.name == "report2.md" for path in files)
    assert any(path.name == "secrets.json" for path in files), "the keyed-hash records"
    for token in (first, second):
        assert token not in everything, "a secret value was printed"
        for path in files:
            assert token.encode() not in path.read_bytes(), f"{token} written to {path}"
