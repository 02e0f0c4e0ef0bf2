"""Shared fixtures: a real Docker engine (fail, never skip, under CI=true) and e2e stacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from reconciler.docker.adapter import DockerCall

REPO = Path(__file__).resolve().parent.parent
STACK = Path(__file__).resolve().parent / "fixtures" / "stack"
BUSYBOX = Path("/bin/busybox")


RECONCILER = (sys.executable, "-m", "reconciler")


def run_cli(
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """`python -m reconciler ARGS` in a subprocess, both streams captured (JSON logs by default)."""
    argv = [*RECONCILER, *map(str, args)]
    if "--log-format" not in argv:
        argv += ["--log-format", "json"]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def start_apply_until(state_file: Path, event: str) -> subprocess.Popen[str]:
    """Start `python -m reconciler apply` and return once it logs `event` (JSON logs)."""
    apply = subprocess.Popen(
        [*RECONCILER, "apply", str(state_file), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert apply.stderr is not None
    for line in apply.stderr:
        if json.loads(line).get("event") == event:
            return apply
    raise AssertionError(f"apply ended without logging {event!r} (exit {apply.wait()})")


def _engine_problem() -> str | None:
    """None when `docker info` answers and compose is v2, else what is wrong."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return f"docker info failed: {info.stderr.strip()[:300]}"
    compose = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, check=False
    )
    if compose.returncode != 0 or not compose.stdout.strip().lstrip("v").startswith("2."):
        return f"docker compose v2 missing: {compose.stdout.strip()} {compose.stderr.strip()}"
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} missing (Debian busybox-static)"
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order and marks that do not depend on where a test file lies or what it is called.

    - Tests marked `stops_engine` run after all others (a stable sort, after every other
      plugin's reordering): the engine they stop and restart is the one every other test
      marked `docker` uses. tests/reconcile/test_loop_daemon_stop.py is one.
    - A test that needs the engine (the `docker_engine` fixture, directly or through `stack`,
      `remote_engine`, ...) must be marked `docker` itself (module-level `pytestmark` or a
      per-test mark): that marker alone is what `make test-fast` (`-m "not docker"`) leaves out.
    """
    unmarked = [
        item.nodeid
        for item in items
        if "docker_engine" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("docker") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"tests using the Docker engine without the docker mark: {unmarked}"
        )
    items.sort(key=lambda item: item.get_closest_marker("stops_engine") is not None)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults (the CLI configures it globally)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _private_state_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Input-digest records (`reconciler.observe.inputs`) go to a per-test directory, not ~/.local/state;
    so do project locks: two test runs side by side (a CI clone and a working tree) used the
    same machine-wide lock directory, and one run's bad-input cases (all of project `case`)
    found the other's locks held and exited 1 instead of 3."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path_factory.mktemp("records")))
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A reachable engine; under CI=true its absence fails the test instead of skipping it."""
    problem = _engine_problem()
    if problem is None:
        return
    message = f"Docker engine needed: {problem}. Run deploy/engine/ensure-docker.sh (as root)."
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless Chromium's path (deploy/engine/ensure-chromium.sh installs Debian's as root);
    under CI=true its absence fails the test instead of skipping it."""
    ensure = REPO / "deploy" / "engine" / "ensure-chromium.sh"
    done = subprocess.run(["bash", str(ensure)], capture_output=True, text=True, check=False)
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip().splitlines()[-1]
    message = f"Chromium needed: {done.stderr.strip()[-500:]}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Stack:
    """A private copy of the e2e stack with its own project name and images."""

    directory: Path
    project: str
    port: int = 18080

    @property
    def state_file(self) -> Path:
        return self.directory / "state.yaml"

    @property
    def compose_file(self) -> Path:
        return self.directory / "docker-compose.yml"

    def compose_argv(self, *args: str) -> list[str]:
        """`docker compose` for this stack's file and project, followed by `args`."""
        return ["docker", "compose", "-f", str(self.compose_file), "-p", self.project, *args]

    def image(self, name: str, tag: str = "1") -> str:
        return f"{self.project}-{name}:{tag}"


def make_stack(tmp_path: Path, *, port: int, engine: str | None = None) -> Stack:
    """Copy the e2e stack into `tmp_path` under a unique project and image names; with
    `engine`, its state targets the engine at that URL (`engine:`)."""
    project = f"rt{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    shutil.copy2(BUSYBOX, directory / "busybox")
    for name in ("docker-compose.yml", "state.yaml"):
        path = directory / name
        text = path.read_text().replace("rtest-", f"{project}-").replace("rtest", project)
        if engine is not None and name == "state.yaml":
            text = text.replace("compose:\n", f"engine: {engine}\ncompose:\n", 1)
        path.write_text(text.replace("${RTEST_API_PORT:-18080}", str(port)))
    return Stack(directory, project, port)


def all_target(calls: Iterable[DockerCall], url: str) -> bool:
    """Every docker call went to the engine at `url` (`docker --host URL ...`); compose's
    `config` runs the compose plugin by itself, which never talks to an engine."""
    return all(
        Path(call.argv[0]).name == "docker-compose" or call.argv[1:3] == ("--host", url)
        for call in calls
    )


# Debian's dockerd 20.10.24 can deadlock when containers of one network stop at the same time:
# a container's network leave holds the network's lock and waits for the controller's, while
# the watch loop, processing another container's endpoint delete, holds the controller's and
# waits for the network's (moby/moby#42545, fixed in libnetwork after 20.10.24). Seen here:
# every docker call on the engine hung after `compose down -t 0` of a 40-service test project,
# and the CI run with it. compose stops a project's containers all at once (its `--parallel 1`
# does not change that for `down`), and so does one `docker stop` of several. A test's teardown
# therefore stops the containers itself, one `docker stop` each, before `compose down`: the race
# is then between one container's delete and the next stop's leave, a docker CLI start apart,
# not between 40 leaves. Each call gives up after TEARDOWN_TIMEOUT seconds, failing the test,
# rather than hang the suite.
TEARDOWN_TIMEOUT = 300


def compose_down(compose: Sequence[str], *args: str, env: Mapping[str, str] | None = None) -> None:
    """`compose` (a `docker [...] compose [...]` argv) `down ARGS` as a test's teardown: its
    running containers stopped one at a time first; each call bounded by TEARDOWN_TIMEOUT, none
    checked; `env` for a compose file that needs variables to load."""
    docker = list(compose[: list(compose).index("compose")])
    running = subprocess.run(
        [*compose, "ps", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=TEARDOWN_TIMEOUT,
        env=env,
    ).stdout.split()
    for container in running:
        subprocess.run(
            [*docker, "stop", "-t", "0", container],
            capture_output=True,
            check=False,
            timeout=TEARDOWN_TIMEOUT,
        )
    subprocess.run(
        [*compose, "down", *args],
        capture_output=True,
        check=False,
        timeout=TEARDOWN_TIMEOUT,
        env=env,
    )


def remove_stack(stack: Stack, engine: str | None = None) -> None:
    """Remove the stack's containers, volumes, network and images, on the engine at URL
    `engine` (None: the local one)."""
    docker = ["docker", *(["-H", engine] if engine else [])]
    compose_down([*docker, *stack.compose_argv()[1:]], "--volumes", "--remove-orphans", "-t", "1")
    # By tag, never by ID: another stack built from the same context has the same image IDs,
    # and removing an ID would take that stack's tags with it.
    mine = f"reference={stack.project}-*"
    images = subprocess.run(
        [*docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", mine],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if images:
        subprocess.run([*docker, "image", "rm", "-f", *images], capture_output=True, check=False)


@pytest.fixture
def stack(docker_engine: None, tmp_path: Path) -> Iterator[Stack]:
    """A fresh e2e stack, torn down (containers, volumes, images) afterwards."""
    # RTEST_API_PORT moves the api's published port, to run e2e tests beside another run.
    created = make_stack(tmp_path, port=int(os.environ.get("RTEST_API_PORT", "18080")))
    try:
        yield created
    finally:
        remove_stack(created)


REMOTE_ENGINE_SCRIPT = REPO / "deploy" / "engine" / "ensure-remote-engine.sh"


def _extra_engine(script: Path, scheme: str, keep: str) -> Iterator[str]:
    """Start a further engine with `script`, yield the URL it prints last (`scheme`...), and
    stop it (its state removed) afterwards unless the variable `keep` is 1 (for test runs side
    by side). Under CI=true a failure to start it fails the test instead of skipping it."""
    started = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith(scheme):
        message = (
            f"{script.name} did not start its engine (exit {started.returncode}): "
            f"{started.stderr.strip()[-1500:]}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if os.environ.get(keep) == "1":
        yield lines[-1]
        return
    try:
        yield lines[-1]
    finally:
        stopped = subprocess.run(
            ["bash", str(script), "--stop"], capture_output=True, text=True, check=False
        )
        assert stopped.returncode == 0, f"{script.name} --stop failed: {stopped.stderr[-1500:]}"


@pytest.fixture(scope="module")
def remote_engine(docker_engine: None) -> Iterator[str]:
    """The ssh:// URL of a second engine on this machine (deploy/engine/ensure-remote-engine.sh).

    Started for the test module that asks for it and stopped when that module is done, so it
    never runs beside other modules' tests (the daemon-stop test among them), unless
    RTEST_KEEP_REMOTE_ENGINE=1.
    """
    yield from _extra_engine(REMOTE_ENGINE_SCRIPT, "ssh://", "RTEST_KEEP_REMOTE_ENGINE")


SWARM_ENGINE_SCRIPT = REPO / "deploy" / "engine" / "ensure-swarm-engine.sh"


@pytest.fixture(scope="module")
def swarm_engine(docker_engine: None) -> Iterator[str]:
    """The unix:// URL of a third engine on this machine, a single-node Swarm manager
    (deploy/engine/ensure-swarm-engine.sh): neither the main engine nor the ssh one is made a
    Swarm. Started for the module that asks for it and stopped after it, unless
    RTEST_KEEP_SWARM_ENGINE=1."""
    yield from _extra_engine(SWARM_ENGINE_SCRIPT, "unix://", "RTEST_KEEP_SWARM_ENGINE")
