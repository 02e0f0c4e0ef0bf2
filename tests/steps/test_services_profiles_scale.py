"""End to end on the real engine: compose profiles and scale.

A small stack of busybox services built offline FROM scratch (the e2e stack's Dockerfile and
serve.sh), nothing published: `api` (healthcheck), `worker` with `deploy.replicas: 2`
(healthcheck), `batch` with `deploy.replicas: 0`, `cron` with `scale: 0`, `debugger` in
profile `debug` (healthy only 2 s after it starts) and `worker-extra` in profile `scale-2`.
The project is `rtest-ps<random>`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig, ContainerFacts, ServiceConfig
from reconciler.docker.parse import compose_config as _parse_compose_config
from reconciler.errors import HealthTimeoutError, InputError
from reconciler.observe.snapshot import check_active_services
from reconciler.reconcile.loop import make_adapter
from reconciler.runtime import processes
from reconciler.runtime.processes import Finished
from reconciler.state import State, load_state
from reconciler.steps.services import ReadinessWatch, wait_until_ready
from tests.conftest import BUSYBOX, STACK, Stack, compose_down, remove_stack, run_cli
from tests.facts.clock import FakeClock

COMPOSE = """\
x-health: &health
  interval: 250ms
  timeout: 2s
  retries: 120

services:
  api:
    build: .
    image: {project}-app:1
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
  worker:
    image: {project}-app:1
    deploy:
      replicas: 2
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
  batch:
    image: {project}-app:1
    deploy:
      replicas: 0
  cron:
    image: {project}-app:1
    scale: 0
  debugger:
    image: {project}-app:1
    profiles: [debug]
    # Healthy 2 s after it starts: an apply that returns with it healthy has waited for it.
    command: ["/bin/sh", "-c", "(sleep 2; touch /ready) & exec /bin/sh /serve.sh"]
    healthcheck:
      <<: *health
      test: ["CMD", "test", "-f", "/ready"]
  worker-extra:
    image: {project}-app:1
    profiles: [scale-2]
"""

# batch and cron have a short health_timeout: were they waited for, apply would fail after it.
STATE = """\
name: {project}
compose:
  file: docker-compose.yml
  project: {project}
  profiles: {profiles}
services:
  api:
    image: {project}-app:1
  batch:
    health_timeout: {timeout}
  cron:
    health_timeout: {timeout}
"""
ZERO_TIMEOUT = 20


@pytest.fixture
def profiled(docker_engine: None, tmp_path: Path) -> Iterator[Stack]:
    """The profiles stack in `tmp_path`, torn down (every profile's containers, network, image)."""
    project = f"rtest-ps{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "stack"
    directory.mkdir()
    shutil.copy2(STACK / "Dockerfile", directory / "Dockerfile")
    shutil.copy2(STACK / "serve.sh", directory / "serve.sh")
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "docker-compose.yml").write_text(COMPOSE.format(project=project))
    # The state file changes between applies and is no input of the image.
    (directory / ".dockerignore").write_text("*.yaml\n*.yml\n")
    stack = Stack(directory, project, 0)
    write_state(stack, [])
    try:
        yield stack
    finally:
        compose_down(stack.compose_argv("--profile", "*"), "--timeout", "1")
        remove_stack(stack)


def write_state(stack: Stack, profiles: list[str]) -> None:
    text = STATE.format(project=stack.project, profiles=json.dumps(profiles), timeout=ZERO_TIMEOUT)
    stack.state_file.write_text(text)


def plan_json(stack: Stack) -> tuple[int, dict[str, Any]]:
    """Exit code and the JSON of `plan --json`."""
    done = run_cli("plan", stack.state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    plan: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, plan


def service_rows(rows: list[dict[str, Any]]) -> dict[str, str]:
    """service -> action (changes) or reason (in sync) of the plan's services rows."""
    return {
        row["target"]: row.get("action", row["reason"]) for row in rows if row["step"] == "services"
    }


def containers(stack: Stack) -> dict[str, list[str]]:
    """service -> `state/health` of each of its containers (the engine's own view), all of them."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "--all",
            "--quiet",
            "--filter",
            f"label=com.docker.compose.project={stack.project}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not out:
        return {}
    lines = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}}'
            "{{if .State.Health}}/{{.State.Health.Status}}{{end}}",
            *out,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    found: dict[str, list[str]] = {}
    for line in lines:
        service, status = line.split()
        found.setdefault(service, []).append(status)
    return {service: sorted(states) for service, states in sorted(found.items())}


def apply_cli(
    stack: Stack, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """`apply --verbose` through the CLI: its result and its JSON log events (the waits'
    samples among them)."""
    done = run_cli("apply", stack.state_file, "--verbose", *args)
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return done, events


def health_of(events: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    """The wait's `service health` events of `service`: each state it was seen in, in order."""
    return [e for e in events if e["event"] == "service health" and e["service"] == service]


def waited_for(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """service -> its state at each sample after which the wait slept because it was not ready."""
    found: dict[str, list[str]] = {}
    for event in events:
        if event["event"] == "waiting for services":
            for service, state in event["pending"].items():
                found.setdefault(service, []).append(state)
    return found


def assert_no_mutating_call(stack: Stack) -> None:
    """An apply of a converged stack runs not one mutating docker command; the CLI agrees."""
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.mutating_calls == []
    done, _ = apply_cli(stack)
    assert done.returncode == 0, done.stderr
    assert "No changes" in done.stdout


HEALTHY = "running/healthy"


@pytest.mark.docker
def test_profiled_service_is_left_out_until_its_profile_is_on(profiled: Stack) -> None:
    """Without `debug` the debugger is listed as not active and never started, and the stack
    converges; with `compose.profiles: [debug]` it is started and waited for (healthy when apply
    returns); a second apply changes nothing; `down` with the profile off removes it too."""
    stack = profiled

    # 1. no profile: plan lists both profiled services in sync, with the profile that would
    #    activate each; apply converges without them.
    code, plan = plan_json(stack)
    assert code == 2
    assert service_rows(plan["changes"]) == {"api": "create", "worker": "create"}
    ok = service_rows(plan["ok"])
    assert ok["debugger"] == "not in the active profiles (none); profile debug activates it"
    assert ok["worker-extra"] == "not in the active profiles (none); profile scale-2 activates it"
    done, _ = apply_cli(stack)
    assert done.returncode == 0, done.stderr
    assert containers(stack) == {"api": [HEALTHY], "worker": [HEALTHY, HEALTHY]}
    code, plan = plan_json(stack)
    assert (code, plan["changes"]) == (0, [])
    assert "debugger" in service_rows(plan["ok"])
    assert_no_mutating_call(stack)
    assert "debugger" not in containers(stack), "never started"

    # 2. profile debug on: only the debugger is planned, started and waited for.
    write_state(stack, ["debug"])
    code, plan = plan_json(stack)
    assert code == 2
    assert service_rows(plan["changes"]) == {"debugger": "create"}
    assert "profile scale-2 activates it" in service_rows(plan["ok"])["worker-extra"]
    done, events = apply_cli(stack)
    assert done.returncode == 0, done.stderr
    assert containers(stack)["debugger"] == [HEALTHY], "apply returned before it was ready"
    debugger = health_of(events, "debugger")
    assert debugger[0]["ready"] is False, debugger  # waited while it was starting
    assert debugger[-1]["ready"] is True, debugger
    # The wait slept for it while its health was starting, and ended only once it was ready.
    assert "health: starting" in waited_for(events)["debugger"], waited_for(events)
    ready = [e["event"] for e in events if e["event"] in {"service health", "all services ready"}]
    assert ready[-1] == "all services ready", ready

    # 3. in sync, and a second apply says so.
    code, plan = plan_json(stack)
    assert (code, plan["changes"]) == (0, [])
    assert service_rows(plan["ok"])["debugger"] == "running, healthy"
    assert_no_mutating_call(stack)

    # 4. the profile off again: the debugger is left as it is, and said to be; `down` still
    #    removes it with the rest of the project.
    write_state(stack, [])
    code, plan = plan_json(stack)
    assert (code, plan["changes"]) == (0, [])
    assert service_rows(plan["ok"])["debugger"].endswith(
        "; 1 container still running (compose leaves it as is)"
    )
    done = run_cli("down", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert containers(stack) == {}


@pytest.mark.docker
def test_scale_zero_is_not_waited_for_and_scale_two_runs_two_ready(profiled: Stack) -> None:
    """`deploy.replicas: 0` and `scale: 0` are neither started nor waited for (the health wait
    finds them ready at its first sample), `deploy.replicas: 2` runs two ready replicas; the
    next plan is empty. A replica removed by hand, and a scaled-to-0 container started by hand,
    are each planned and put right."""
    stack = profiled

    # 1. plan: the scaled-to-0 services are in sync, with why.
    code, plan = plan_json(stack)
    assert code == 2
    assert service_rows(plan["changes"]) == {"api": "create", "worker": "create"}
    ok = service_rows(plan["ok"])
    assert ok["batch"] == "scaled to 0: not started"
    assert ok["cron"] == "scaled to 0: not started"

    # 2. apply: exit 0, the scaled-to-0 services never waited for; two ready workers.
    done, events = apply_cli(stack)
    assert done.returncode == 0, done.stderr
    assert containers(stack) == {"api": [HEALTHY], "worker": [HEALTHY, HEALTHY]}
    # Each wait sample found them ready as they are: the wait never slept for them.
    for service in ("batch", "cron"):
        assert [(e["state"], e["ready"]) for e in health_of(events, service)] == [
            ("scaled to 0", True)
        ]
    assert {"batch", "cron"}.isdisjoint(waited_for(events)), waited_for(events)

    # 3. plan is empty and says why; a second apply changes nothing.
    code, plan = plan_json(stack)
    assert (code, plan["changes"]) == (0, [])
    ok = service_rows(plan["ok"])
    assert ok["worker"] == "scale 2: running, healthy"
    assert ok["batch"] == ok["cron"] == "scaled to 0: not started"
    assert_no_mutating_call(stack)

    # 4. a replica removed by hand: `scale 2: 1 running`, and apply brings it back, ready.
    subprocess.run(
        ["docker", "rm", "--force", f"{stack.project}-worker-2"], capture_output=True, check=True
    )
    code, plan = plan_json(stack)
    assert code == 2
    assert [(c["target"], c["action"], c["reason"]) for c in plan["changes"]] == [
        ("worker", "scale", "scale 2: 1 running")
    ]
    done, _ = apply_cli(stack)
    assert done.returncode == 0, done.stderr
    assert containers(stack)["worker"] == [HEALTHY, HEALTHY]
    assert plan_json(stack)[0] == 0

    # 5. batch started by hand although scaled to 0: apply stops and removes it, then in sync.
    subprocess.run(
        stack.compose_argv("up", "--detach", "--no-build", "--scale", "batch=1", "batch"),
        capture_output=True,
        check=True,
    )
    assert containers(stack)["batch"] == ["running"]
    code, plan = plan_json(stack)
    assert code == 2
    assert [(c["target"], c["action"], c["reason"]) for c in plan["changes"]] == [
        ("batch", "scale", "scaled to 0: 1 running container will be stopped and removed")
    ]
    done, events = apply_cli(stack)
    assert done.returncode == 0, done.stderr
    assert "batch" not in containers(stack)
    # compose up stopped and removed it; the wait then found it ready as it is, never waited.
    assert [(e["state"], e["ready"]) for e in health_of(events, "batch")] == [("scaled to 0", True)]
    assert "batch" not in waited_for(events), waited_for(events)
    code, plan = plan_json(stack)
    assert (code, plan["changes"]) == (0, [])


# compose.profiles and scale, with no engine: the state key, the `--profile` on every compose
# call, compose's model of recorded profiles and replicas (tests/facts/profiles/), and readiness
# of services scaled to 0 or to N.


PROFILES = Path(__file__).resolve().parents[1] / "facts" / "profiles"


def recorded(name: str, profiles: Sequence[str] = ()) -> ComposeConfig:
    return _parse_compose_config(json.loads((PROFILES / name).read_text()), profiles=profiles)


def test_compose_model_gives_each_service_its_scale_and_leaves_out_inactive_ones() -> None:
    """`deploy.replicas` and `scale` (0 or N) become the scale; no key means 1; the services of
    profiles not passed are absent, those passed carry their profiles."""
    plain = recorded("compose-config.json")
    scales = {name: spec.scale for name, spec in plain.services.items()}
    assert scales == {"api": 1, "batch": 0, "oneoff": 0, "worker": 2}
    with_profile = recorded("compose-config-scale-2.json", ["scale-2"])
    assert with_profile.profiles == ("scale-2",)
    assert with_profile.services["worker-extra"].profiles == ("scale-2",)
    assert with_profile.services["debugger"].profiles == ("debug", "scale-2")
    assert with_profile.services["api"].profiles == ()


class Recorder:
    """Stands in for `processes.run`: records each argv, answers with recorded compose output."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def __call__(self, argv: Sequence[str], **_: Any) -> Finished:
        self.argvs.append(list(argv))
        out = ""
        if "config" in argv and "json" in argv:
            out = (PROFILES / "compose-config-all-profiles.json").read_text()
        return Finished(tuple(argv), 0, out, "", 0.0)


def test_every_compose_call_carries_the_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config, up, down and exec all run with `--profile NAME` for each profile."""
    recorder = Recorder()
    monkeypatch.setattr(processes, "run", recorder)
    compose = tmp_path / "docker-compose.yml"
    compose.write_text((PROFILES / "docker-compose.yml").read_text())
    adapter = DockerAdapter(compose, "rtprofrec", profiles=("scale-2", "debug"))
    adapter.compose_config()
    adapter.up(["worker"])
    adapter.down(volumes=False)
    adapter.exec("api", ["true"], mutating=False)
    profiles = adapter.service_profiles()
    assert len(recorder.argvs) == 5
    for argv in recorder.argvs:
        via_docker = argv[:2] == ["docker", "compose"] or argv[1:3] == ["compose", "--file"]
        assert via_docker or Path(argv[0]).name == "docker-compose", argv  # config: the plugin
        pairs = [argv[i + 1] for i, part in enumerate(argv) if part == "--profile"]
        assert pairs[:2] == ["scale-2", "debug"], argv
    assert recorder.argvs[-1][-5:] == ["--profile", "*", "config", "--format", "json"]
    assert recorder.argvs[2][-3:] == ["--profile", "*", "down"]  # down: every profile
    assert profiles["debugger"] == ("debug", "scale-2")
    assert profiles["api"] == ()


def test_state_profiles_reach_the_adapter(tmp_path: Path) -> None:
    """`compose.profiles` in a state file is validated and given to the adapter in order."""
    (tmp_path / "docker-compose.yml").write_text("services:\n  api:\n    image: a:1\n")
    state_file = tmp_path / "state.yaml"
    state_file.write_text(
        "name: s\ncompose:\n  file: docker-compose.yml\n  profiles: [scale-2, debug]\n"
    )
    state = load_state(state_file)
    assert state.compose.profiles == ["scale-2", "debug"]
    assert make_adapter(state).profiles == ("scale-2", "debug")


def test_pinning_an_inactive_service_is_an_input_error_at_its_key(tmp_path: Path) -> None:
    """The error names the state key's line and the profiles that would activate the service."""
    (tmp_path / "docker-compose.yml").write_text((PROFILES / "docker-compose.yml").read_text())
    state_file = tmp_path / "state.yaml"
    state_file.write_text(
        "name: s\ncompose:\n  file: docker-compose.yml\n"
        "services:\n  api: {}\n  debugger:\n    image: rtprofrec-app:2\n"
    )
    state = load_state(state_file)
    config = recorded("compose-config.json")
    config = ComposeConfig(
        config.project,
        config.services,
        inactive={"worker-extra": ("scale-2",), "debugger": ("debug", "scale-2")},
    )
    with pytest.raises(InputError) as raised:
        check_active_services(state, config)
    error = raised.value
    assert error.location is not None
    assert (error.location.line, error.location.key) == (7, "services.debugger.image")
    assert "profiles debug or scale-2 activates it" in error.message
    active = state.model_copy(update={"services": {"api": state.services["api"]}})
    check_active_services(active, config)  # api is active: no error


def container(service: str, number: int, status: str = "running") -> ContainerFacts:
    return ContainerFacts(
        id=f"{service}-{number}",
        name=f"p-{service}-{number}",
        service=service,
        status=status,
        health="healthy" if status == "running" else None,
        exit_code=0,
        config_hash="h",
        image_id="sha",
    )


SCALED = ComposeConfig(
    "p",
    {
        "worker": ServiceConfig("worker", "w:1", has_healthcheck=True, scale=2),
        "batch": ServiceConfig("batch", "w:1", has_healthcheck=True, scale=0),
    },
)


def test_scale_two_is_ready_only_with_both_replicas() -> None:
    """One healthy replica of two is not ready (nor failed); two are."""
    watch = ReadinessWatch()
    one = watch.assess("worker", [container("worker", 1)], SCALED, 0.0)
    assert (one.ready, one.failed, one.summary) == (False, False, "scale 2: 1 container, 1 running")
    two = watch.assess("worker", [container("worker", 1), container("worker", 2)], SCALED, 0.0)
    assert (two.ready, two.summary) == (True, "scale 2: running, healthy")


def test_scale_zero_is_ready_with_no_container_and_waits_for_a_running_one_to_go() -> None:
    """Scaled to 0: nothing to wait for; a container still up is waited for, not a failure."""
    watch = ReadinessWatch()
    assert watch.assess("batch", [], SCALED, 0.0).ready
    assert watch.assess("batch", [container("batch", 1, "exited")], SCALED, 0.0).ready
    up = watch.assess("batch", [container("batch", 1)], SCALED, 0.0)
    assert (up.ready, up.failed, up.summary) == (False, False, "scaled to 0: 1 still up")


class Listing(DockerAdapter):
    """An adapter whose container listings are given samples, in turn (the last repeats)."""

    def __init__(self, compose: Path, samples: list[list[ContainerFacts]]) -> None:
        super().__init__(compose, "p")
        self.samples = samples

    def containers(self) -> list[ContainerFacts]:
        return self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]

    def container_logs(self, container_id: str, lines: int = 30) -> str:
        return ""


def waiting(tmp_path: Path) -> State:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services: {worker: {image: 'w:1'}, batch: {image: 'w:1'}}\n")
    return State.model_validate(
        {"name": "s", "compose": {"file": str(compose)}, "services": {"worker": {}}}
    )


def test_wait_does_not_wait_for_a_service_scaled_to_zero(tmp_path: Path) -> None:
    """Both replicas healthy and the 0-scaled service absent: the wait ends on the first sample."""
    state = waiting(tmp_path)
    adapter = Listing(state.compose.file, [[container("worker", 1), container("worker", 2)]])
    clock = FakeClock(1000.0)
    wait_until_ready(state, adapter, SCALED, clock=clock, sleep=clock.sleep)
    assert clock.slept == []


def test_wait_waits_for_the_second_replica(tmp_path: Path) -> None:
    """One replica, then two: the wait sleeps once and returns."""
    state = waiting(tmp_path)
    first, second = container("worker", 1), container("worker", 2)
    adapter = Listing(state.compose.file, [[first], [first, second]])
    clock = FakeClock(1000.0)
    wait_until_ready(state, adapter, SCALED, clock=clock, sleep=clock.sleep)
    assert clock.slept == pytest.approx([0.2])


def test_wait_times_out_when_a_replica_never_comes(tmp_path: Path) -> None:
    """Stuck at one replica of two: the deadline fails the wait, saying how many run."""
    state = waiting(tmp_path)
    adapter = Listing(state.compose.file, [[container("worker", 1)]])
    clock = FakeClock(1000.0)
    with pytest.raises(HealthTimeoutError, match=r"worker \(scale 2: 1 container, 1 running\)"):
        wait_until_ready(state, adapter, SCALED, clock=clock, sleep=clock.sleep)
