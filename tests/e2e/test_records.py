"""Records are evidence, never authority, end to end on the real engine: every record rewritten
between applies (`null`, `[]`, garbage, a directory) is a warning naming it, and the next apply
converges; a config-hash cache of wrong values recreates nothing and fails nothing.

The stack: two busybox services built offline FROM scratch sharing one image; `app` reads an env
file (an input digest record) and a compose secret fed from the environment (a secret record and
the project's key), so each record kind is written by the first apply.
"""

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

from tests.conftest import BUSYBOX, run_cli

pytestmark = pytest.mark.docker

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""

COMPOSE = """\
x-box: &box
  build: image
  image: {project}-box:1
  stop_grace_period: 1s
services:
  app:
    <<: *box
    env_file: app.env
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
  API_TOKEN: {{env: RC_RECORDS_TOKEN}}
services:
  app:
    health_timeout: 60
  other:
    health_timeout: 60
"""

DAMAGE: dict[str, bytes | None] = {
    "null": b"null",
    "[]": b"[]",
    "garbage": b"\xff\x00{not json",
    "directory": None,
}


@dataclass
class Stack:
    """The stack's directory and project, and where its records are."""

    directory: Path
    project: str

    @property
    def state_file(self) -> Path:
        return self.directory / "state.yaml"

    def records(self) -> list[Path]:
        """Every record the first apply writes: input digests, config hashes, secrets, key."""
        state = Path(os.environ["RECONCILER_STATE_DIR"])
        return [
            state / f"inputs-{self.project}.json",
            state / f"config-hashes-{self.project}.json",
            state / self.project / "secrets.json",
            state / self.project / "secrets.key",
        ]

    def apply(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`apply --json`, which must exit 0: the changes it applied, and its warnings."""
        done = run_cli("apply", self.state_file, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        applied: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
        return applied, warnings(done.stderr)

    def plan(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`plan --json`: its changes, and its warnings."""
        done = run_cli("plan", self.state_file, "--json")
        assert done.returncode in {0, 2}, done.stderr
        changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
        return changes, warnings(done.stderr)


def warnings(stderr: str) -> list[dict[str, Any]]:
    """The warning events of a JSON log."""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [event for event in events if event.get("level") == "warning"]


@pytest.fixture
def stack(docker_engine: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack, converged by a first apply; torn down (containers, image) afterwards."""
    project = f"rc-rec{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "stack"
    (directory / "image").mkdir(parents=True)
    shutil.copy2(BUSYBOX, directory / "image" / "busybox")
    (directory / "image" / "Dockerfile").write_text(DOCKERFILE)
    (directory / "docker-compose.yml").write_text(COMPOSE.format(project=project))
    (directory / "state.yaml").write_text(STATE.format(project=project))
    (directory / "app.env").write_text("GREETING=hello\n")
    monkeypatch.setenv("RC_RECORDS_TOKEN", "rc-records-e2e-token")
    made = Stack(directory, project)
    try:
        made.apply()
        assert all(path.is_file() for path in made.records()), made.records()
        yield made
    finally:
        compose = ["docker", "compose", "-f", str(directory / "docker-compose.yml"), "-p", project]
        subprocess.run([*compose, "down", "--timeout", "1"], capture_output=True, check=False)
        subprocess.run(
            ["docker", "image", "rm", "-f", f"{project}-box:1"], capture_output=True, check=False
        )


def damage(path: Path, data: bytes | None) -> None:
    """Put `data` in the record's place, or a directory when None."""
    path.unlink()
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)


def test_records_rewritten_between_applies_warn_and_the_next_apply_converges(
    stack: Stack,
) -> None:
    """null, [], garbage, a directory in every record's place: each apply warns naming them all and converges."""
    for name, data in DAMAGE.items():
        for path in stack.records():
            damage(path, data)
        applied, warned = stack.apply()
        named = {w.get("path") for w in warned}
        assert named >= {str(path) for path in stack.records()}, (name, warned)
        # No secret record (or no key) says which token app got: it is recreated, nothing else.
        assert [(c["target"], c["action"]) for c in applied] == [("app", "recreate")], name
        if data is None:
            for path in stack.records():
                assert path.is_dir(), "a directory is never written over"
                path.rmdir()
            stack.apply()
        changes, warned = stack.plan()
        assert (name, changes, warned) == (name, [], [])
        assert all(path.is_file() for path in stack.records()), name


def test_a_config_hash_cache_of_wrong_values_recreates_nothing_and_fails_nothing(
    stack: Stack,
) -> None:
    """Remembered hashes that contradict compose's labels: compose is asked again, the apply changes nothing and passes."""
    path = stack.records()[1]
    data = json.loads(path.read_text())
    data["models"] = {
        key: dict.fromkeys(hashes, "0" * 64) for key, hashes in data["models"].items()
    }
    path.write_text(json.dumps(data))
    applied, warned = stack.apply()
    assert applied == []
    assert [w["event"] for w in warned] == [
        "remembered config hashes differ from compose's; replaced"
    ]
    assert "0" * 64 not in path.read_text()
    assert stack.plan() == ([], [])
