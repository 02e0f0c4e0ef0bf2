"""A state's `engine:` (or `--engine`): parsed, and put on every docker argv the adapter builds."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.cli.main import _with_engine
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.errors import classify, redact_keys
from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    PublishedPort,
    RegistryLogin,
    ServiceConfig,
)
from reconciler.errors import InputError, TransientDockerError
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.loop import make_adapter
from reconciler.runtime import processes
from reconciler.state import load_state
from reconciler.state.engine import Engine, parse_engine
from reconciler.state.model import CommandSpec, HttpRequestSpec, PollSpec
from reconciler.steps import checks
from reconciler.steps.probes import command as host_command
from tests.conftest import Stack, all_target, make_stack, remove_stack, run_cli
from tests.facts.fake_docker import compose_plugin

URL = "ssh://root@127.0.0.1:18522"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "host", "context", "engine_host"),
    [
        ("ssh://deploy@core.example", "ssh://deploy@core.example", None, "core.example"),
        (URL, URL, None, "127.0.0.1"),
        ("ssh://core.example:2222", "ssh://core.example:2222", None, "core.example"),
        ("tcp://10.0.0.5:2376", "tcp://10.0.0.5:2376", None, "10.0.0.5"),
        ("unix:///var/run/other.sock", "unix:///var/run/other.sock", None, "127.0.0.1"),
        ("workers-b", None, "workers-b", "127.0.0.1"),
        ("default", None, "default", "127.0.0.1"),
    ],
)
def test_parse_engine(text: str, host: str | None, context: str | None, engine_host: str) -> None:
    """Each accepted `engine:` text parses to its host, context and engine host."""
    engine = parse_engine(text)
    assert (engine.host, engine.context, engine.engine_host) == (host, context, engine_host)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("http://core.example", "unknown engine URL scheme 'http'"),
        ("npipe:////./pipe/docker_engine", "unknown engine URL scheme 'npipe'"),
        ("ssh://", "no host name"),
        ("ssh://deploy@core.example:99999", "the port is not a number"),
        ("ssh://core.example/path", "expected ssh://host[:port] only"),
        ("tcp://user@core.example:2376", "a tcp URL carries no user"),
        ("unix://relative.sock", "unix:///absolute/socket/path"),
        ("-H", "neither a docker context name"),
        ("a b", "neither a docker context name"),
        ("x://y://z", "unknown engine URL scheme 'x'"),
    ],
)
def test_bad_engines_are_refused(text: str, fragment: str) -> None:
    """An engine text of an unknown scheme or shape is refused with a message naming the fault."""
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_engine(text)


def test_a_password_in_the_url_is_never_repeated() -> None:
    """An engine URL carrying a password is refused without the password in the message."""
    with pytest.raises(ValueError, match="carries a password") as raised:
        parse_engine("ssh://deploy:s3cr3t-pw@core.example")
    assert "s3cr3t-pw" not in str(raised.value)


# ---- every docker call of the adapter carries the engine ---------------------------------


class Recorder:
    """Stands in for `processes.run` (and `processes.start`): records argv and answers like
    docker would."""

    def __init__(self) -> None:
        self.argvs: list[tuple[str, ...]] = []

    def __call__(self, argv: Any, **_: Any) -> processes.Finished:
        argv = tuple(argv)
        self.argvs.append(argv)
        return processes.Finished(argv, 0, _answer(argv), "", 0.01)

    def start(self, argv: Any, **_: Any) -> Any:
        self.argvs.append(tuple(argv))
        return _Running()


class _Running:
    """A `processes.Background` whose container printed its id and hangs on release."""

    alive = True
    returncode = None

    def first_line(self, **_: Any) -> str:
        return "c0ffee"

    def close(self, timeout: float) -> bool:
        return False

    def terminate(self) -> None:
        pass


_ANSWERS: tuple[tuple[Callable[[tuple[str, ...]], bool], str], ...] = (
    (
        lambda argv: "config" in argv and "json" in argv,
        json.dumps({"name": "p", "services": {"web": {"image": "web:1"}}}),
    ),
    (lambda argv: "--hash" in argv, "web abc\n"),
    (lambda argv: argv[-1] == "label=com.docker.compose.project=p", "c1\n"),
    (
        lambda argv: "container" in argv and "inspect" in argv,
        json.dumps([{"Id": "c1", "Name": "/p-web-1", "Config": {"Labels": {}}}]),
    ),
    (lambda argv: "image" in argv and "inspect" in argv, "[]"),
    (lambda argv: "service" in argv and "ls" in argv, "s1\n"),
    (
        lambda argv: "service" in argv and "inspect" in argv,
        json.dumps([{"ID": "s1", "Spec": {"Name": "p_web"}}]),
    ),
    (lambda argv: "service" in argv and "ps" in argv, "t1\n"),
    (
        lambda argv: "task" in argv and "inspect" in argv,
        json.dumps([{"ID": "t1", "ServiceID": "s1", "DesiredState": "running"}]),
    ),
    (lambda argv: "status=running" in argv, "c1\n"),
    (lambda argv: "context" in argv and "inspect" in argv, '"ssh://deploy@core.example"\n'),
    (
        lambda argv: "imagetools" in argv,
        json.dumps({"mediaType": "x", "digest": DIGEST, "size": 1}),
    ),
)


def _answer(argv: tuple[str, ...]) -> str:
    return next((text for matches, text in _ANSWERS if matches(argv)), "")


Call = Callable[[DockerAdapter], object]
BUILD = BuildConfig(context=Path("/tmp/ctx"), dockerfile=Path("/tmp/ctx/Dockerfile"))
# One of each kind of call the adapter makes (a new public method must be added here).
CALLS: dict[str, Call] = {
    "compose_config": lambda a: a.compose_config(),
    "service_profiles": lambda a: a.service_profiles(),
    "resolved_config_hashes": lambda a: a.resolved_config_hashes(
        ComposeConfig(project="p", services={}, resolved="{}")
    ),
    "containers": lambda a: a.containers(),
    "images": lambda a: a.images(["web:1"]),
    "remote_digest": lambda a: a.remote_digest("127.0.0.1:18401/web:1"),
    "container_logs": lambda a: a.container_logs("c1"),
    "logs_since": lambda a: a.logs_since("c1", "2026-01-01T00:00:00Z"),
    "container_stats": lambda a: a.container_stats(["c1"]),
    "exec": lambda a: a.exec("web", ["true"], mutating=False),
    "import_rootfs": lambda a: a.import_rootfs(Path("/tmp/rootfs.tar"), "base:1", {"k": "v"}),
    "build": lambda a: a.build("web:1", BUILD, {"k": "v"}),
    "remove_containers": lambda a: a.remove_containers(["c1"]),
    "tag": lambda a: a.tag("sha256:1", "web:1"),
    "pull": lambda a: a.pull("127.0.0.1:18401/web:1"),
    "login": lambda a: a.login("127.0.0.1:18401"),
    "up": lambda a: a.up(["web"]),
    "down": lambda a: a.down(volumes=False),
    "stack_config": lambda a: a.stack_config("{}\n"),
    "stack_services": lambda a: a.stack_services(),
    "stack_tasks": lambda a: a.stack_tasks(["s1"]),
    "stack_deploy": lambda a: a.stack_deploy("{}\n", prune=True, with_registry_auth=False),
    "service_rollback": lambda a: a.service_rollback("web"),
    "stack_remove": lambda a: a.stack_remove(),
    "running_task_container": lambda a: a.running_task_container("web"),
    "engine_endpoint": lambda a: a.engine_endpoint(),
    "lock_start": lambda a: a.lock_start("reconciler-lock-p", "lock:1", {"k": "v"}, ["true"]),
    "lock_inspect": lambda a: a.lock_inspect("reconciler-lock-p"),
    "lock_remove": lambda a: a.lock_remove("c0ffee"),
    "lock_release": lambda a: a.lock_release(
        a.lock_start("reconciler-lock-p", "lock:1", {}, ["true"])
    ),
}
# An engine given by URL is its own endpoint: asking for it makes no call.
NO_CALL_WITH_A_HOST = {"engine_endpoint"}


def test_every_public_call_is_listed() -> None:
    """A new docker-calling method of the adapter must be added to CALLS (and so be tested)."""
    public = {
        name
        for name, member in vars(DockerAdapter).items()
        if callable(member) and not name.startswith("_")
    }
    # no docker call; transfer: test_pipe.py (it reads the local engine and loads on the target)
    no_call = {"secret_values", "resolved_hashes_key", "abandon_reads", "resume_reads"}
    assert public - set(CALLS) <= {*no_call, "transfer"}


def _adapter(tmp_path: Path, engine: Engine | None) -> DockerAdapter:
    compose = tmp_path / "compose.yml"
    compose.write_text("services: {web: {image: web:1}}\n")
    return DockerAdapter(
        compose,
        "p",
        engine=engine,
        secrets=lambda: {"REG_PW": "pw"},
        registries={"127.0.0.1:18401": RegistryLogin("u", "REG_PW")},
    )


# `compose config` never talks to the engine: it runs the compose plugin by itself when one is
# found (no docker CLI start), else `docker compose` with the engine's flag like every call.
ENGINE_FREE = {"compose_config", "service_profiles", "resolved_config_hashes"}


@pytest.mark.parametrize("plugin_found", [True, False], ids=["plugin", "no-plugin"])
@pytest.mark.parametrize(
    "target",
    [
        (parse_engine(URL), ("--host", URL)),
        (parse_engine("workers-b"), ("--context", "workers-b")),
    ],
    ids=["host", "context"],
)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_call_targets_the_engine(
    name: str,
    target: tuple[Engine, tuple[str, str]],
    plugin_found: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every docker and compose argv the adapter builds carries the engine's host or context."""
    engine, flag = target
    plugin = compose_plugin(tmp_path, monkeypatch, present=plugin_found)
    recorder = Recorder()
    monkeypatch.setattr(processes, "run", recorder)
    monkeypatch.setattr(processes, "start", recorder.start)
    CALLS[name](_adapter(tmp_path, engine))
    assert recorder.argvs or (name in NO_CALL_WITH_A_HOST and engine.host), name
    for argv in recorder.argvs:
        if name in ENGINE_FREE and plugin_found:
            assert argv[0] == str(plugin), argv
            assert "--host" not in argv, argv
            assert "--context" not in argv, argv
            continue
        assert Path(argv[0]).name == "docker", argv
        assert argv[1:3] == flag, argv
        assert argv.count(flag[0]) == 1, argv


def test_compose_via_docker_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RECONCILER_COMPOSE_VIA_DOCKER=1: `config` goes through docker too (a wrapper sees it)."""
    compose_plugin(tmp_path, monkeypatch)
    monkeypatch.setenv("RECONCILER_COMPOSE_VIA_DOCKER", "1")
    recorder = Recorder()
    monkeypatch.setattr(processes, "run", recorder)
    _adapter(tmp_path, parse_engine(URL)).compose_config()
    argv = recorder.argvs[0]
    assert Path(argv[0]).name == "docker", argv
    assert list(argv[1:4]) == ["--host", URL, "compose"], argv


def test_without_an_engine_docker_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No engine: no --host/--context, so DOCKER_HOST / DOCKER_CONTEXT apply as for docker."""
    recorder = Recorder()
    monkeypatch.setattr(processes, "run", recorder)
    monkeypatch.setattr(processes, "start", recorder.start)
    adapter = _adapter(tmp_path, None)
    for call in CALLS.values():
        call(adapter)
    assert all("--host" not in argv and "--context" not in argv for argv in recorder.argvs)
    assert adapter.engine_host == "127.0.0.1"


# ---- from the state file and the CLI -------------------------------------------------------


def _state(tmp_path: Path, engine: str | None) -> Path:
    (tmp_path / "compose.yml").write_text("services: {web: {image: web:1}}\n")
    line = f"engine: {engine!r}\n" if engine else ""
    path = tmp_path / "state.yaml"
    path.write_text(f"name: x\n{line}compose:\n  file: compose.yml\n")
    return path


def test_state_engine_reaches_the_adapter(tmp_path: Path) -> None:
    """The state's `engine:` becomes the adapter's engine, engine host and `--host` flag."""
    adapter = reconcile.make_adapter(load_state(_state(tmp_path, "ssh://deploy@core.example")))
    assert adapter.engine == Engine(host="ssh://deploy@core.example")
    assert adapter.engine_host == "core.example"
    assert adapter._docker_cmd()[1:3] == ["--host", "ssh://deploy@core.example"]


def test_cli_engine_overrides_the_state(tmp_path: Path) -> None:
    """`--engine` replaces the state's engine and keeps its source; None keeps the state."""
    state = load_state(_state(tmp_path, "ssh://deploy@core.example"))
    overridden = _with_engine(state, "workers-b")
    assert reconcile.make_adapter(overridden).engine == Engine(context="workers-b")
    assert overridden.source == state.source  # still the same state file
    assert _with_engine(state, None) is state


def test_cli_engine_is_validated(tmp_path: Path) -> None:
    """A bad `--engine` is an input error naming the option and the unknown scheme."""
    state = load_state(_state(tmp_path, None))
    with pytest.raises(InputError, match=r"--engine: unknown engine URL scheme 'https'"):
        _with_engine(state, "https://core.example")


# ---- {engine_host} in check URLs -----------------------------------------------------------


def test_engine_host_in_check_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """`{engine_host}` in an HTTP check's request and poll URLs becomes the engine's host name."""
    asked: list[str] = []

    def request(method: str, url: str, body: Mapping[str, object] | None, left: float) -> Any:
        asked.append(url)
        return 200, {"id": 7, "status": "done"}

    monkeypatch.setattr(checks, "_request", request)
    spec = HttpRequestSpec.model_validate(
        {"url": "http://{engine_host}:18000/jobs", "capture": {"job": "id"}}
    )
    poll = PollSpec.model_validate(
        {"url": "http://{engine_host}:18000/jobs/{job}", "until": {"status": "done"}}
    )
    clock = iter(range(1000)).__next__
    checks._http(spec, poll, 100.0, lambda: float(clock()), lambda _: None, engine_host="core")
    assert asked == ["http://core:18000/jobs", "http://core:18000/jobs/7"]


# ---- ssh faults, as recorded (tests/facts/record_ssh_faults.sh) ----------------------------

SSH_FACTS = Path(__file__).parent.parent / "facts" / "ssh_errors"
SSH_ARGV = ["docker", "--host", URL, "info"]


@pytest.mark.parametrize(
    ("case", "transient", "says"),
    [
        ("host-key-unknown", False, "Host key verification failed"),
        ("host-key-changed", False, "the engine host's key changed"),
        ("publickey-refused", False, "Permission denied (publickey)"),
        ("connection-refused", True, "Connection refused"),
        ("connection-closed", True, "Connection closed by"),
        ("compose-connection-closed", True, "Connection closed by"),
    ],
)
def test_ssh_faults_are_classified(case: str, transient: bool, says: str) -> None:
    """Each recorded ssh failure is classified transient or permanent with ssh's own reason."""
    stderr = (SSH_FACTS / f"ssh-{case}.stderr").read_text(encoding="utf-8")
    error = classify(SSH_ARGV, stderr)
    assert isinstance(error, TransientDockerError) is transient
    assert error.message.startswith("ssh to the engine at root@127.0.0.1:1852")
    assert says in error.message
    assert "Docker 18.09" not in error.message  # the CLI's wrapper, not ssh's reason


def test_ssh_faults_never_show_key_material() -> None:
    """A changed host key's fingerprint and key material never reach the error shown."""
    stderr = (SSH_FACTS / "ssh-host-key-changed.stderr").read_text(encoding="utf-8")
    assert "SHA256:" in stderr  # ssh printed the offending key's fingerprint
    error = classify(SSH_ARGV, stderr)
    shown = f"{error.message}\n{error.output}\n{error}"
    assert "SHA256:" not in shown
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB" + "x" * 40
    block = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    assert redact_keys(f"offending {key}\n{block}\n") == "offending [key elided]\n[key elided]\n"


def test_command_checks_get_urls_on_the_engine_host() -> None:
    """RECONCILER_URL_<SERVICE>: the engine's host for a port bound to all addresses, else the
    address it is bound to."""
    config = ComposeConfig(
        project="p",
        services={
            "api": ServiceConfig(name="api", image="api:1", ports=(PublishedPort(8080, 18000),)),
            "db": ServiceConfig(
                name="db", image="db:1", ports=(PublishedPort(5432, 15432, "127.0.0.1"),)
            ),
        },
        resolved="{}",
    )
    spec = CommandSpec.model_validate({"argv": ["true"]})
    env = host_command.environment(spec, config, Path("state.yaml"), "core.example")
    assert env["RECONCILER_URL_API"] == "http://core.example:18000"
    assert env["RECONCILER_URL_DB"] == "http://127.0.0.1:15432"
    local = host_command.environment(spec, config, Path("state.yaml"))
    assert local["RECONCILER_URL_API"] == "http://127.0.0.1:18000"


# End to end against a second engine reached over SSH (deploy/engine/ensure-remote-engine.sh).
#
# The e2e stack's state gets `engine: ssh://root@127.0.0.1:PORT`: images are built ON that engine
# (the docker CLI sends the build context over ssh; the images are FROM scratch, so no base image
# is needed there), its containers run there and never show in the local engine, and the
# idempotence sequence holds as it does locally. A check reaches the api through
# `{engine_host}`. The same stack applied to the local engine gives the plan time and the docker
# calls per plan of both, printed for the report.


CHECK = """checks:
  - name: api answers on the engine's host
    deadline: 30
    http: {{url: "http://{{engine_host}}:{port}/health", expect_json: {{role: api}}}}
"""


def _port(offset: int) -> int:
    return int(os.environ.get("RTEST_API_PORT", "18080")) + offset


def on_engine(url: str | None, *args: str) -> str:
    """`docker [-H url] ARGS`: its stdout (the engine the test asks, not the adapter's)."""
    argv = ["docker", *(["-H", url] if url else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def container_ids(url: str | None, project: str) -> dict[str, str]:
    """service -> container id of `project` on the engine at `url` (None: the local one)."""
    label = f"label=com.docker.compose.project={project}"
    ids = on_engine(url, "container", "ls", "-aq", "--no-trunc", "--filter", label).split()
    if not ids:
        return {}
    fmt = '{{index .Config.Labels "com.docker.compose.service"}} {{.Id}}'
    out = on_engine(url, "container", "inspect", "--format", fmt, *ids)
    return dict(line.split() for line in out.splitlines())


def images(url: str | None, project: str) -> list[str]:
    out = on_engine(url, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    return sorted(ref for ref in out.split() if ref.startswith(f"{project}-"))


def plan_json(state_file: Path) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("plan", state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def plan_cost(state_file: Path, runs: int = 3) -> tuple[float, int]:
    """Median seconds of a library plan, and its docker calls (the same each run)."""
    times, calls = [], 0
    for _ in range(runs):
        state = reconciler.load_state(state_file)
        adapter = make_adapter(state)
        started = time.monotonic()
        the_plan = reconciler.plan(state, adapter=adapter)
        times.append(time.monotonic() - started)
        assert not the_plan.changes
        calls = len(adapter.calls)
    return statistics.median(times), calls


@pytest.fixture
def remote_stack(remote_engine: str, tmp_path: Path) -> Any:
    created = make_stack(tmp_path / "remote", port=_port(0), engine=remote_engine)
    text = created.state_file.read_text()
    created.state_file.write_text(text + CHECK.format(port=created.port))
    try:
        yield created
    finally:
        # The engine's whole state goes with `--stop`; the stack is removed first all the same.
        remove_stack(created, remote_engine)


@pytest.mark.docker
def test_idempotence_on_a_remote_engine(
    remote_engine: str, remote_stack: Stack, tmp_path: Path
) -> None:
    """plan -> apply -> plan (empty) -> apply (no mutating call) -> retag -> only that service."""
    stack, url = remote_stack, remote_engine
    local_info = json.loads(on_engine(None, "info", "--format", "{{json .}}"))
    remote_info = json.loads(on_engine(url, "info", "--format", "{{json .}}"))
    assert remote_info["ID"] != local_info["ID"]
    assert remote_info["DockerRootDir"] != local_info["DockerRootDir"]

    # 1. plan: builds and creates pending.
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert {(c["step"], c["action"]) for c in changes} == {
        ("images", "build"),
        ("services", "create"),
    }

    # 2. apply converges on the remote engine only: images built there, containers there.
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert "api answers on the engine's host" in done.stdout
    remote = container_ids(url, stack.project)
    assert sorted(remote) == ["api", "db", "worker"]
    assert images(url, stack.project) == sorted(stack.image(n) for n in ("api", "db", "worker"))
    assert container_ids(None, stack.project) == {}
    assert images(None, stack.project) == []

    # 3. plan: in sync.
    assert plan_json(stack.state_file) == (0, [])

    # 4. apply again: not one mutating docker call, and every call went to the remote engine.
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.calls
    assert adapter.mutating_calls == []
    assert all_target(adapter.calls, url)
    assert container_ids(url, stack.project) == remote

    # 5. one tag change: exactly that service recreated, on the remote engine.
    text = stack.state_file.read_text()
    stack.state_file.write_text(text.replace(stack.image("api"), stack.image("api", "2")))
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", "docker-compose.yml:services.api.image", "edit"),
        ("images", stack.image("api", "2"), "build"),
        ("services", "api", "recreate"),
    ]
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    after = container_ids(url, stack.project)
    assert after["db"] == remote["db"]
    assert after["worker"] == remote["worker"]
    assert after["api"] != remote["api"]
    assert plan_json(stack.state_file) == (0, [])

    # 6. the cost of a plan, remote vs local (the same stack converged on the local engine).
    remote_seconds, remote_calls = plan_cost(stack.state_file)
    local = make_stack(tmp_path / "local", port=_port(1))
    try:
        done = run_cli("apply", local.state_file)
        assert done.returncode == 0, done.stderr
        local_seconds, local_calls = plan_cost(local.state_file)
    finally:
        remove_stack(local)
    print(
        f"\nplan, converged stack: remote (ssh) {remote_seconds:.2f} s, {remote_calls} docker "
        f"calls; local {local_seconds:.2f} s, {local_calls} docker calls"
    )
    assert remote_calls == local_calls
