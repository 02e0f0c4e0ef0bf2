"""Logging cannot stop an apply, on a real engine: the reader of the apply's output goes away
during `compose up` (`apply 2>&1 | head`, a CI log collector that dies); the apply still waits
for health, writes its report and exits 0."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BUSYBOX, RECONCILER, STACK

pytestmark = pytest.mark.docker

SERVICE = """\
  web:
    build: .
    image: {image}
    environment:
      ROLE: web
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 250ms
      timeout: 2s
      retries: 120
"""


@pytest.fixture
def project(docker_engine: None, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A one-service busybox project named `lp-...`: its state file; torn down afterwards."""
    name = f"lp-{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "project"
    directory.mkdir()
    for file in ("Dockerfile", "serve.sh"):
        shutil.copy2(STACK / file, directory / file)
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "docker-compose.yml").write_text(
        "services:\n" + SERVICE.format(image=f"{name}-img:1")
    )
    state = directory / "state.yaml"
    state.write_text(
        f"name: {name}\ncompose:\n  file: docker-compose.yml\n  project: {name}\n"
        "services:\n  web:\n    health_timeout: 60\n"
    )
    yield state, name
    compose = directory / "docker-compose.yml"
    subprocess.run(
        ["docker", "compose", "-f", str(compose), "-p", name, "down", "-t", "0"],
        capture_output=True,
        check=False,
    )
    subprocess.run(
        ["docker", "image", "rm", "-f", f"{name}-img:1"], capture_output=True, check=False
    )


def test_output_reader_gone_during_compose_up(project: tuple[Path, str], tmp_path: Path) -> None:
    """`apply 2>&1 | head` with head gone at `compose up`: exit 0, report written, web healthy."""
    state, name = project
    report = tmp_path / "r.md"
    apply = subprocess.Popen(
        [*RECONCILER, "apply", str(state), "--log-format", "json", "--report", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert apply.stdout is not None
    events: list[str] = []
    for line in apply.stdout:
        event = json.loads(line).get("event", "") if line.startswith("{") else ""
        events.append(event)
        if event.startswith("compose up"):
            break
    apply.stdout.close()  # the reader goes away: every later write of the apply is EPIPE
    code = apply.wait(timeout=600)
    assert any(event.startswith("compose up") for event in events), events
    assert code == 0, report.read_text() if report.exists() else "no report"
    text = report.read_text()
    assert "apply PASSED" in text
    assert "- stderr could not be written from " in text
    assert "(broken pipe: its reader had gone)" in text
    health = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Health.Status}}", f"{name}-web-1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert health.stdout.strip() == "healthy", health.stderr
