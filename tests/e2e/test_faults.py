"""Fault injection: a docker wrapper first on PATH fails a share of calls with transient texts.

Transient faults are retried (and logged) until apply converges; permanent faults are attempted
once and fail with their own message.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, run_cli
from tests.facts.fake_docker import path_env

pytestmark = pytest.mark.docker

WRAPPER = Path(__file__).resolve().parent.parent / "faults" / "docker_wrapper.py"


def faulty_env(tmp_path: Path, rate: float, seed: str) -> dict[str, str]:
    """Environment putting the wrapper first on PATH as `docker`, failing `rate` of calls."""
    real = shutil.which("docker")
    assert real is not None
    bin_dir = tmp_path / "fault-bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n" + WRAPPER.read_text())
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    faults = tmp_path / "faults"
    faults.mkdir(exist_ok=True)
    return {
        **os.environ,
        **path_env(bin_dir),
        "FAULT_REAL_DOCKER": real,
        "FAULT_RATE": str(rate),
        "FAULT_SEED": seed,
        "FAULT_DIR": str(faults),
    }


def calls(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["FAULT_DIR"]) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


def test_apply_converges_with_30_percent_of_docker_calls_failing(
    stack: Stack, tmp_path: Path
) -> None:
    """With 30% of docker calls failing transiently, apply converges; each retry is logged."""
    env = faulty_env(tmp_path, 0.3, "converge")
    done = run(env, "apply", str(stack.state_file))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    made = calls(env)
    injected = [call for call in made if call["fault"]]
    assert len(injected) >= 3, "the harness must really have failed calls"
    retries = [
        event
        for event in map(json.loads, done.stderr.splitlines())
        if event.get("event") == "docker call failed transiently; retrying"
    ]
    assert len(retries) == len(injected)
    for event in retries:
        assert event["attempt"] >= 1
        assert event["delay"] >= 0
        assert any(
            text in event["cause"]
            for text in ("Cannot connect", "i/o timeout", "deadline exceeded")
        )
    print(f"\n{len(made)} docker calls, {len(injected)} failed transiently, {len(retries)} retries")
    clean = faulty_env(tmp_path, 0.0, "verify")
    assert run(clean, "plan", str(stack.state_file)).returncode == 0


def test_build_failure_is_attempted_once(stack: Stack, tmp_path: Path) -> None:
    """A Dockerfile that cannot build fails apply at once with the build's message, no retry."""
    dockerfile = stack.directory / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'RUN ["/bin/false"]\n')
    env = faulty_env(tmp_path, 0.0, "build")
    done = run(env, "apply", str(stack.state_file))
    assert done.returncode == 1
    assert "did not complete successfully" in done.stderr or "failed to solve" in done.stderr
    builds = [call for call in calls(env) if call["argv"][:2] == ["buildx", "build"]]
    assert len(builds) == 1


def test_missing_image_without_build_is_attempted_once(stack: Stack, tmp_path: Path) -> None:
    """An image that no build makes and no registry has: one pull attempt, exit 1, its message."""
    text = stack.compose_file.read_text()
    stack.compose_file.write_text(
        text.replace(
            "  db:\n    build:\n      context: .\n      args:\n        ROLE: db\n", "  db:\n"
        )
    )
    state = stack.state_file.read_text().replace(
        f"image: {stack.image('db')}", "image: nosuch/registry-image:1"
    )
    stack.state_file.write_text(state)
    env = faulty_env(tmp_path, 0.0, "pull")
    done = run(env, "apply", str(stack.state_file))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "nosuch/registry-image" in done.stderr
    pulls = [call for call in calls(env) if call["argv"][:2] == ["image", "pull"]]
    assert len(pulls) == 1
