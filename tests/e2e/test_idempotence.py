"""End to end on the real engine: the idempotence sequence and a service that never gets healthy.

The e2e stack (tests/e2e/stack) is three busybox services built offline FROM scratch, with
healthchecks, depends_on: service_healthy and a published port.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.reconcile.loop import make_adapter
from tests.conftest import Stack, run_cli

pytestmark = pytest.mark.docker


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m reconciler` with JSON logs, capturing both streams."""
    return run_cli(*args)


def plan_json(stack: Stack) -> tuple[int, list[dict[str, Any]]]:
    """Exit code and changes of `plan --json`."""
    done = cli("plan", stack.state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def container_ids(stack: Stack) -> dict[str, str]:
    """service -> container id of the stack's project."""
    ids = subprocess.run(
        stack.compose_argv("ps", "-aq"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            '{{index .Config.Labels "com.docker.compose.service"}} {{.Id}}',
            *ids,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def test_idempotence_sequence(stack: Stack) -> None:
    """plan -> apply -> plan (empty) -> apply (no mutating call) -> retag -> plan -> apply (only that service)."""
    # 1. plan: changes pending, exit 2; nothing built or started yet.
    code, changes = plan_json(stack)
    assert code == 2
    assert {(c["step"], c["action"]) for c in changes} == {
        ("images", "build"),
        ("services", "create"),
    }
    assert sorted(c["target"] for c in changes if c["step"] == "services") == [
        "api",
        "db",
        "worker",
    ]

    # 2. apply converges, and the published port answers.
    done = cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert "ok=3 changed=6 failed=0" in done.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/health", timeout=5) as response:
        assert json.load(response) == {"role": "api", "status": "healthy"}

    # 3. plan: in sync, exit 0.
    code, changes = plan_json(stack)
    assert (code, changes) == (0, [])

    # 4. apply again: nothing changed, and not one mutating docker command, counted by the adapter.
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded
    assert not result.changed
    assert adapter.calls, "observation must have asked docker"
    assert adapter.mutating_calls == []
    done = cli("apply", stack.state_file)
    assert done.returncode == 0
    assert "No changes" in done.stdout
    assert "ok=9 changed=0 failed=0" in done.stdout

    before_ids = container_ids(stack)
    before_bytes = stack.compose_file.read_bytes()

    # 5. change one service's tag in the state.
    state_text = stack.state_file.read_text()
    stack.state_file.write_text(state_text.replace(stack.image("api"), stack.image("api", "2")))

    # 6. plan shows exactly that edit and that one service.
    code, changes = plan_json(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", "docker-compose.yml:services.api.image", "edit"),
        ("images", stack.image("api", "2"), "build"),
        ("services", "api", "recreate"),
    ]
    assert changes[0]["before"] == stack.image("api")
    assert changes[0]["after"] == stack.image("api", "2")
    assert f'-    image: "{stack.image("api")}"' in changes[0]["diff"]
    assert f'+    image: "{stack.image("api", "2")}"' in changes[0]["diff"]
    assert stack.compose_file.read_bytes() == before_bytes, "plan must not touch the file"

    # 7. apply: only api is recreated; the others keep their container IDs.
    done = cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    after_ids = container_ids(stack)
    assert after_ids["db"] == before_ids["db"]
    assert after_ids["worker"] == before_ids["worker"]
    assert after_ids["api"] != before_ids["api"]
    expected = before_bytes.replace(
        f'image: "{stack.image("api")}"'.encode(), f'image: "{stack.image("api", "2")}"'.encode()
    )
    assert stack.compose_file.read_bytes() == expected
    assert plan_json(stack) == (0, [])


def test_never_healthy_service_fails_within_deadline(stack: Stack) -> None:
    """A healthcheck that never passes fails apply (exit 1) in time and prints the health output:
    the wait ends on the failed check, before its deadline by reconciler's own account."""
    text = stack.compose_file.read_text()
    worker_check = (
        '      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]\n'
    )
    head, _, tail = text.rpartition(worker_check)
    sick = '      test: ["CMD", "sh", "-c", "echo worker cannot reach the queue; exit 1"]\n      retries: 2\n'
    stack.compose_file.write_text(head + sick + tail)
    state_text = stack.state_file.read_text()
    stack.state_file.write_text(state_text + "    health_timeout: 40\n")

    done = cli("apply", stack.state_file, "--verbose")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "worker (unhealthy)" in done.stderr
    assert "last health check output: worker cannot reach the queue" in done.stderr
    assert "log tail of" in done.stderr
    assert "failed=1" in done.stdout
    # The wait ended at the sample that saw the check fail, not by waiting out the deadline.
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    worker = [e for e in events if e["event"] == "service health" and e["service"] == "worker"]
    assert worker[-1]["failed"] is True, worker
    assert worker[-1]["state"] == "unhealthy", worker
    assert not [e for e in events if e["event"] == "all services ready"]
    # How long the wait took, as the error reports it (its own clock: no build or start time).
    waited = re.search(r"not ready after ([0-9.]+) s: worker \(unhealthy\)", done.stderr)
    assert waited is not None, done.stderr
    assert float(waited[1]) < 40, f"the wait ran past the 40 s deadline: {waited[0]}"
