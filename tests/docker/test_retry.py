"""Fault handling through a fake docker CLI first on PATH: retry transient, fail permanent at once."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.errors import command_name
from reconciler.docker.facts import BuildConfig, ComposeConfig
from reconciler.docker.retry import ReadAbandoned, RetryPolicy, retrying
from reconciler.errors import InputError, PermanentDockerError, StopRequested, TransientDockerError
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.processes import exit_text
from reconciler.state import State
from reconciler.steps import checks
from reconciler.steps.checks import ChecksFacts
from tests.conftest import Stack, run_cli
from tests.facts.fake_docker import first_on_path, path_env

FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.02, jitter=0.0)
MODEL = ComposeConfig(project="p", services={}, resolved="{}")


def fake_docker(
    tmp_path: Path, *, failures: int, message: str, stdout: str = "", sleep: float = 0
) -> Path:
    """A `docker` that fails `failures` times with `message`, else sleeps `sleep` s and prints `stdout`.

    Each run appends its pid to tmp_path/pids, so a test can tell whether it is still alive, and
    to tmp_path/finished once its sleep is over, so a test can tell it was cut before that.
    """
    counter = tmp_path / "count"
    counter.write_text("0")
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{counter}"); n=$((n+1)); echo "$n" > "{counter}"\n'
        f'echo "$@" >> "{tmp_path}/argv"\n'
        f'echo "$$" >> "{tmp_path}/pids"\n'
        f'if [ "$n" -le {failures} ]; then echo "{message}" >&2; exit 1; fi\n'
        f"sleep {sleep}\n"
        f'echo "$$" >> "{tmp_path}/finished"\n'
        f"printf '%s' '{stdout}'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return counter


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put tmp_path/bin first on PATH."""
    first_on_path(tmp_path / "bin", monkeypatch)
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
    assert docker.resolved_config_hashes(MODEL) == {"api": "1234"}
    assert counter.read_text().strip() == "3"
    assert len(docker.calls) == 3


def test_transient_fault_gives_up_after_the_policy(on_path: Path) -> None:
    """A fault that never clears is retried `attempts` times, then raised as transient."""
    counter = fake_docker(
        on_path, failures=99, message="read unix @->/run/docker.sock: i/o timeout"
    )
    with pytest.raises(TransientDockerError, match="i/o timeout"):
        adapter(on_path).resolved_config_hashes(MODEL)
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


UNREACHABLE = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pids(tmp_path: Path) -> list[int]:
    return [int(line) for line in (tmp_path / "pids").read_text().split()]


def test_mutation_with_an_ambiguous_fault_is_attempted_once(on_path: Path) -> None:
    """`compose up` failing with 'context deadline exceeded' may have run: not retried."""
    counter = fake_docker(
        on_path, failures=99, message="Error response from daemon: context deadline exceeded"
    )
    with pytest.raises(TransientDockerError, match="deadline exceeded"):
        adapter(on_path).up(["api"])
    assert counter.read_text().strip() == "1"


def test_mutation_is_retried_when_the_daemon_was_never_reached(on_path: Path) -> None:
    """'Cannot connect to the Docker daemon' proves nothing ran: `compose up` is retried."""
    counter = fake_docker(on_path, failures=2, message=UNREACHABLE)
    adapter(on_path).up(["api"])
    assert counter.read_text().strip() == "3"


def test_timed_out_migration_exec_is_started_once(on_path: Path) -> None:
    """A mutating exec that times out is not started again, and the error says why."""
    counter = fake_docker(on_path, failures=0, message="", sleep=5)
    docker = adapter(on_path)
    with pytest.raises(PermanentDockerError, match="not retried, as it may have run") as caught:
        docker.exec("backend", ["alembic", "upgrade", "head"], mutating=True, timeout=0.3)
    assert "still be running in the container" in str(caught.value)
    assert counter.read_text().strip() == "1"
    assert not alive(pids(on_path)[0]), "the timed-out docker CLI was terminated"


def test_timed_out_read_exec_is_retried(on_path: Path) -> None:
    """A read-only exec that times out is retried as a transient fault."""
    counter = fake_docker(on_path, failures=0, message="", sleep=5)
    with pytest.raises(TransientDockerError, match="i/o timeout"):
        adapter(on_path).exec("backend", ["alembic", "current"], mutating=False, timeout=0.2)
    assert counter.read_text().strip() == str(FAST.attempts)


def request_after(stop: StopToken, seconds: float, times: int = 1) -> None:
    def later() -> None:
        for _ in range(times):
            time.sleep(seconds)
            stop.request()

    threading.Thread(target=later, daemon=True).start()


def test_stop_cuts_a_running_build_at_once(on_path: Path) -> None:
    """A stop request terminates a 30 s build within a second, leaving no child behind."""
    fake_docker(on_path, failures=0, message="", sleep=30)
    docker = adapter(on_path)
    request_after(docker.stop, 0.3)
    build = BuildConfig(context=on_path, dockerfile=on_path / "Dockerfile")
    with pytest.raises(StopRequested, match="during"):
        docker.build("x:1", build, {})
    assert not alive(pids(on_path)[0])
    assert not (on_path / "finished").exists(), "the build ran to its end"


def test_first_stop_lets_compose_up_finish_and_a_second_cuts_it(on_path: Path) -> None:
    """compose up is not cut by one stop request (it finishes), but a second one cuts it."""
    fake_docker(on_path, failures=0, message="", sleep=1)
    docker = adapter(on_path)
    request_after(docker.stop, 0.2)
    docker.up(["api"])  # finishes despite the request
    assert docker.stop.requested
    assert not docker.stop.urgent

    assert (on_path / "finished").exists()
    (on_path / "finished").unlink()
    (on_path / "count").write_text("0")
    insisted = adapter(on_path)
    fake_sleep = on_path / "bin" / "docker"
    fake_sleep.write_text(fake_sleep.read_text().replace("sleep 1", "sleep 30"))
    request_after(insisted.stop, 0.3, times=2)
    with pytest.raises(StopRequested):
        insisted.up(["api"])
    assert not any(alive(pid) for pid in pids(on_path))
    assert not (on_path / "finished").exists(), "compose up ran to its end"


def test_exec_check_attempt_is_bounded_by_the_time_left(on_path: Path) -> None:
    """An exec check against a command that hangs makes one attempt, cut at the deadline."""
    counter = fake_docker(on_path, failures=0, message="", sleep=30)
    compose = on_path / "docker-compose.yml"
    compose.write_text("services:\n  api:\n    image: a:1\n")
    check = {"name": "hangs", "deadline": 1, "exec": {"service": "api", "command": ["x"]}}
    state = State.model_validate(
        {"name": "s", "compose": {"file": str(compose)}, "checks": [check]}
    )
    docker = DockerAdapter(compose, "p", retry=FAST)
    (result,) = checks.run(state, docker, ChecksFacts())
    assert not result.passed
    assert "no answer within" in result.detail
    assert counter.read_text().strip() == "1", "no retry and no attempt after the deadline"
    assert not alive(pids(on_path)[0])


# --- a docker CLI killed by a signal says so ---------------------------------------------------


def killing_docker(tmp_path: Path, signal_name: str, *, before: str = "") -> None:
    """A `docker` that prints `before` on stderr, then is killed by `signal_name` (itself)."""
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/argv"\n'
        f"printf '%s' '{before}' >&2\n"
        f"kill -{signal_name} $$\n"
        "sleep 5\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_compose_up_killed_by_sigkill_says_so_and_is_not_retried(on_path: Path) -> None:
    """An OOM-killed `compose up`: `docker compose up was killed by signal 9 (SIGKILL)`, once."""
    killing_docker(on_path, "KILL", before=" Container p-api-1  Recreate\n")
    docker = adapter(on_path)
    with pytest.raises(PermanentDockerError) as caught:
        docker.up(["api"])
    assert caught.value.message == "docker compose up was killed by signal 9 (SIGKILL)"
    assert "Container p-api-1" in caught.value.output, "what it printed is kept, not shown"
    assert len((on_path / "argv").read_text().splitlines()) == 1


def test_compose_up_killed_by_sigterm_is_not_reported_as_canceled(on_path: Path) -> None:
    """compose's own `canceled` on its way out is not the reason: the signal is."""
    killing_docker(on_path, "TERM", before="canceled\n")
    docker = adapter(on_path)
    with pytest.raises(PermanentDockerError) as caught:
        docker.up(["api"])
    assert caught.value.message == "docker compose up was killed by signal 15 (SIGTERM)"


def test_a_killed_read_names_its_command_and_signal(on_path: Path) -> None:
    """A read killed by a signal (not a transient fault) fails at once, naming the signal."""
    killing_docker(on_path, "KILL")
    docker = adapter(on_path)
    with pytest.raises(PermanentDockerError, match=r"^docker container ls was killed by signal 9"):
        docker.containers()
    assert len((on_path / "argv").read_text().splitlines()) == 1


def test_exit_text_and_command_name() -> None:
    """`exit N` or `killed by signal N (NAME)`; a command named without its options' values."""
    assert exit_text(3) == "exit 3"
    assert exit_text(-9) == "killed by signal 9 (SIGKILL)"
    assert exit_text(-15) == "killed by signal 15 (SIGTERM)"
    assert exit_text(-200) == "killed by signal 200"
    argv = ["/usr/bin/docker", "--host", "ssh://u@h", "compose", "--file", "f.yml", "-p", "x"]
    assert command_name([*argv, "up", "--detach", "api"]) == "docker compose up"
    assert command_name(["/opt/docker-compose", "--project-name", "x", "up"]) == (
        "docker-compose up"
    )
    assert command_name(["docker"]) == "docker"


def test_a_child_killed_by_a_signal_ends_in_words() -> None:
    """processes.run of a child that a signal ends: `Finished.ended` names the signal."""
    done = processes.run(
        ["sh", "-c", "kill -KILL $$"], stop=StopToken(), on_stop=processes.OnStop.CUT
    )
    assert done.returncode == -9
    assert done.ended == "killed by signal 9 (SIGKILL)"


# Fault injection: a docker wrapper first on PATH fails a share of calls with transient texts.
#
# Transient faults are retried (and logged) until apply converges; permanent faults are attempted
# once and fail with their own message.


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


@pytest.mark.docker
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


@pytest.mark.docker
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


@pytest.mark.docker
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


# A read's retries end once its caller abandons it (reconciler/docker/retry.py), so that bad
# input found by a concurrent engine-free read is reported at once, not after the backoff.


def test_abandoned_read_stops_at_its_next_backoff() -> None:
    """A transient fault retried while abandoned ends after one attempt with ReadAbandoned."""
    attempts: list[int] = []
    abandoned = threading.Event()

    def attempt() -> str:
        attempts.append(1)
        abandoned.set()  # the caller gives up while this attempt runs
        raise TransientDockerError("Cannot connect to the Docker daemon")

    policy = RetryPolicy(attempts=6, initial_delay=30.0, max_delay=60.0, give_up_after=600.0)
    with pytest.raises(ReadAbandoned):
        retrying(policy, attempt, what="docker container ls", abandoned=abandoned)
    assert len(attempts) == 1


def test_a_read_not_abandoned_is_retried_as_before() -> None:
    """Without the event set, a transient fault is retried until it succeeds."""
    attempts: list[int] = []

    def attempt() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise TransientDockerError("i/o timeout")
        return "ok"

    policy = RetryPolicy(attempts=5, initial_delay=0.001, max_delay=0.002, give_up_after=10.0)
    assert retrying(policy, attempt, what="docker ps", abandoned=threading.Event()) == "ok"
    assert len(attempts) == 3
