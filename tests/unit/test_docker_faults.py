"""Fault handling through a fake docker CLI first on PATH: retry transient, fail permanent at once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.retry import RetryPolicy
from reconciler.errors import InputError, PermanentDockerError, TransientDockerError

FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.02, jitter=0.0)


def fake_docker(tmp_path: Path, *, failures: int, message: str, stdout: str = "") -> Path:
    """A `docker` that fails `failures` times with `message`, then prints `stdout`."""
    counter = tmp_path / "count"
    counter.write_text("0")
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{counter}"); n=$((n+1)); echo "$n" > "{counter}"\n'
        f'echo "$@" >> "{tmp_path}/argv"\n'
        f'if [ "$n" -le {failures} ]; then echo "{message}" >&2; exit 1; fi\n'
        f"printf '%s' '{stdout}'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return counter


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put tmp_path/bin first on PATH."""
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def adapter(tmp_path: Path) -> DockerAdapter:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services: {}\n")
    return DockerAdapter(compose, "p", retry=FAST)


def test_transient_fault_is_retried_until_it_passes(on_path: Path) -> None:
    """'Cannot connect to the Docker daemon' twice, then success: the call succeeds on attempt 3."""
    counter = fake_docker(
        on_path,
        failures=2,
        message="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
        stdout="api 1234",
    )
    docker = adapter(on_path)
    assert docker.config_hashes() == {"api": "1234"}
    assert counter.read_text().strip() == "3"
    assert len(docker.calls) == 3


def test_transient_fault_gives_up_after_the_policy(on_path: Path) -> None:
    """A fault that never clears is retried `attempts` times, then raised as transient."""
    counter = fake_docker(
        on_path, failures=99, message="read unix @->/run/docker.sock: i/o timeout"
    )
    with pytest.raises(TransientDockerError, match="i/o timeout"):
        adapter(on_path).config_hashes()
    assert counter.read_text().strip() == str(FAST.attempts)


def test_permanent_fault_is_attempted_once(on_path: Path) -> None:
    """A build failure is not retried: one attempt, and its message is kept."""
    counter = fake_docker(
        on_path,
        failures=99,
        message="ERROR: failed to solve: process did not complete successfully",
    )
    with pytest.raises(PermanentDockerError, match="failed to solve"):
        adapter(on_path).containers()
    assert counter.read_text().strip() == "1"


def test_rejected_compose_file_is_input_error(on_path: Path) -> None:
    """`docker compose config` rejecting the file becomes InputError (exit 3) naming the file."""
    fake_docker(
        on_path, failures=99, message="services.api Additional property imagez is not allowed"
    )
    with pytest.raises(InputError, match="imagez is not allowed") as caught:
        adapter(on_path).compose_config()
    assert str(caught.value).startswith(str(on_path / "docker-compose.yml"))
