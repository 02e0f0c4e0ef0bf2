"""A daemon stopped in the middle of an apply: exit 1 with a clear message, nothing lost; after
the daemon is back, the next apply converges. (Named to run after the other e2e tests.)"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import REPO, Stack, run_cli, start_apply_until

pytestmark = pytest.mark.docker


def engine_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def test_daemon_stopped_mid_apply_then_restarted(stack: Stack) -> None:
    """Stopping dockerd during a build fails apply with exit 1; restarting it lets apply converge."""
    before = stack.compose_file.read_bytes()
    apply = start_apply_until(stack.state_file, "building image")
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    try:
        deadline = time.monotonic() + 60
        while engine_up() and time.monotonic() < deadline:
            time.sleep(0.5)
        out, err = apply.communicate(timeout=300)
        assert apply.returncode == 1, out + err[-3000:]
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert errors
        assert "Cannot connect to the Docker daemon" in errors[0] or "daemon" in errors[0].lower()
        assert "Traceback" not in err
        assert stack.compose_file.read_bytes() == before
        retries = [
            json.loads(line)
            for line in err.splitlines()
            if line.startswith("{")
            and json.loads(line).get("event") == "docker call failed transiently; retrying"
        ]
        assert retries, "the outage must have been retried before giving up"
    finally:
        restart = subprocess.run(
            ["bash", str(REPO / "deploy" / "engine" / "ensure-docker.sh")],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    assert restart.returncode == 0, restart.stderr
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr[-3000:]
