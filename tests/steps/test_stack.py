"""Swarm mode without docker: recorded `service inspect` / task answers (tests/facts/swarm), a
scripted fake adapter for the wait (a fake clock), the overlay stack deploy is given, and the
argv of the adapter's stack calls."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest

import reconciler
from reconciler.docker.adapter import DockerAdapter, _swarm_service, _swarm_task
from reconciler.docker.facts import (
    ComposeConfig,
    ImageFacts,
    ServiceConfig,
    SwarmService,
    SwarmTask,
)
from reconciler.errors import HealthTimeoutError
from reconciler.plans import Action, Change, Step
from reconciler.reconcile.loop import make_adapter
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from reconciler.state import State
from reconciler.state.model import ComposeSpec, RegistrySpec, SecretSpec
from reconciler.steps import stack
from reconciler.steps.stack import (
    CONFIG_HASH_LABEL,
    IMAGE_ID_LABEL,
    StackFacts,
    SwarmRollbackError,
    service_readiness,
    wait_for_stack,
)
from tests.conftest import Stack, make_stack, run_cli
from tests.facts.clock import FakeClock

RECORDED = Path(__file__).parent.parent / "facts" / "swarm"


def recorded(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((RECORDED / f"{name}.json").read_text())
    return data


def test_recorded_services_parse() -> None:
    """Recorded `docker service inspect` answers parse to the services they show."""
    running = _swarm_service(recorded("service-running")[0], "swx")
    assert (running.name, running.image, running.replicas, running.update_state) == (
        "api",
        "swx-api:1",
        1,
        None,
    )
    updating = _swarm_service(recorded("service-updating")[0], "swx")
    assert (updating.image, updating.update_state, updating.previous_image) == (
        "swx-api:bad",
        "updating",
        "swx-api:1",
    )
    back = _swarm_service(recorded("service-rollback_completed")[0], "swx")
    assert (back.image, back.update_state) == ("swx-api:1", "rollback_completed")
    assert "rollback" in back.update_message


def test_recorded_tasks_parse() -> None:
    """Recorded swarm task answers parse to their states, images, exit codes and errors."""
    tasks = [_swarm_task(item) for item in recorded("tasks-rolled-back")]
    seen = sorted((t.state, t.desired_state, t.image, t.exit_code, t.error) for t in tasks)
    assert ("failed", "shutdown", "swx-api:bad", 1, "task: non-zero exit (1)") in seen
    assert ("ready", "ready", "swx-api:1", None, "") in [(*s[:4], s[4]) for s in seen]
    running = [_swarm_task(item) for item in recorded("tasks-running")]
    assert [t.state for t in running if t.desired_state == "running"] == ["running"]
    assert all(t.container_id for t in running)


CONFIG = ComposeConfig(
    project="p",
    services={
        "api": ServiceConfig("api", image="api:1", has_healthcheck=True),
        "db": ServiceConfig("db", image="db:1", failure_action="pause"),
    },
)


def service(name: str, **changes: Any) -> SwarmService:
    base = SwarmService(
        id=f"svc-{name}",
        name=name,
        image=f"{name}:1",
        replicas=1,
        labels={CONFIG_HASH_LABEL: f"h-{name}"},
        container_labels={IMAGE_ID_LABEL: f"sha-{name}"},
    )
    return replace(base, **changes)


def task(name: str, state: str = "running", **changes: Any) -> SwarmTask:
    base = SwarmTask(
        id=f"t-{name}-{state}",
        service_id=f"svc-{name}",
        slot=1,
        desired_state="running" if state not in {"failed", "shutdown"} else "shutdown",
        state=state,
        labels={IMAGE_ID_LABEL: f"sha-{name}"},
        container_id=f"c-{name}",
        timestamp="2026-01-01T00:00:00Z",
    )
    return replace(base, **changes)


def facts(services: list[SwarmService], tasks: list[SwarmTask]) -> StackFacts:
    return StackFacts(
        config=CONFIG,
        config_hashes={"api": "h-api", "db": "h-db"},
        services={s.name: s for s in services},
        tasks=tuple(tasks),
        images={
            "api:1": ImageFacts("api:1", "sha-api"),
            "db:1": ImageFacts("db:1", "sha-db"),
        },
    )


def test_readiness_counts_tasks_of_the_current_spec_only() -> None:
    """A swarm service is ready only with running tasks of its current spec."""
    old = task("api", labels={IMAGE_ID_LABEL: "sha-old"})
    assert not service_readiness("api", facts([service("api")], [old])).ready
    assert service_readiness("api", facts([service("api")], [task("api")])).ready
    updating = service("api", update_state="updating")
    assert service_readiness("api", facts([updating], [task("api")])).summary == "update updating"
    rejected = task("api", "rejected", error="No such image: api:1")
    verdict = service_readiness("api", facts([service("api")], [rejected]))
    assert verdict.failed
    assert "No such image" in verdict.summary


@dataclass
class FakeSwarm:
    """A scripted swarm: each poll returns the next sample (the last one repeats)."""

    samples: list[tuple[list[SwarmService], list[SwarmTask]]]
    rollbacks: list[str] = field(default_factory=list)
    deploys: list[tuple[str, bool, bool]] = field(default_factory=list)
    stop: StopToken = field(default_factory=StopToken)
    project_name: str = "p"
    _polls: Iterator[int] = field(default_factory=lambda: iter(range(10**6)))

    def _sample(self) -> tuple[list[SwarmService], list[SwarmTask]]:
        index = next(self._polls)
        return self.samples[min(index, len(self.samples) - 1)]

    def stack_services(self) -> list[SwarmService]:
        self._current = self._sample()
        return self._current[0]

    def stack_tasks(self, ids: list[str]) -> list[SwarmTask]:
        return self._current[1]

    def service_rollback(self, name: str) -> None:
        self.rollbacks.append(name)

    def container_logs(self, container_id: str) -> str:
        return f"log of {container_id}"

    def images(self, references: object) -> dict[str, ImageFacts]:
        return {"api:1": ImageFacts("api:1", "sha-api2"), "db:1": ImageFacts("db:1", "sha-db")}

    def compose_config(self) -> ComposeConfig:
        return replace(CONFIG, resolved='{"services": "edited"}')

    def resolved_hashes_key(self, config: ComposeConfig) -> str | None:
        return None  # nothing remembered

    def resolved_config_hashes(self, config: ComposeConfig) -> dict[str, str]:
        assert config.resolved == '{"services": "edited"}'
        return {"api": "h-api-new", "db": "h-db"}

    def stack_deploy(self, overlay: str, *, prune: bool, with_registry_auth: bool) -> None:
        self.deploys.append((overlay, prune, with_registry_auth))


def state(**compose: Any) -> State:
    return State(name="s", compose=ComposeSpec(file=Path("c.yml"), mode="swarm", **compose))


def wait(fake: FakeSwarm, clock: FakeClock, updated: set[str]) -> StackFacts:
    adapter = cast(DockerAdapter, fake)
    before = facts([], [])
    return wait_for_stack(state(), adapter, before, updated=updated, clock=clock, sleep=clock.sleep)


def test_a_converged_stack_ends_the_wait() -> None:
    """A stack whose services are all ready ends the wait without sleeping."""
    clock = FakeClock()
    fake = FakeSwarm([([service("api"), service("db")], [task("api"), task("db")])])
    done = wait(fake, clock, {"api"})
    assert set(done.services) == {"api", "db"}
    assert clock.slept == []


def test_swarm_rollback_is_waited_for_timed_and_reported() -> None:
    """A rollback Swarm started itself is waited for, timed, and reported as a failure."""
    clock = FakeClock()
    db = service("db")
    new = task("api", "starting", labels={IMAGE_ID_LABEL: "sha-new"})
    fake = FakeSwarm(
        [
            ([service("api", update_state="updating"), db], [new, task("db")]),
            (
                [
                    service(
                        "api",
                        update_state="rollback_started",
                        update_message="update paused due to failure or early termination of task x",
                    ),
                    db,
                ],
                [task("db")],
            ),
            ([service("api", update_state="rollback_started"), db], [task("db")]),
            (
                [
                    service(
                        "api",
                        update_state="rollback_completed",
                        update_message="rollback completed",
                    ),
                    db,
                ],
                [task("api"), task("db")],
            ),
        ]
    )
    with pytest.raises(SwarmRollbackError, match="update of api failed") as raised:
        wait(fake, clock, {"api"})
    assert "rolled back by Swarm to api:1" in str(raised.value)
    assert set(raised.value.rolled_back) == {"api"}
    assert raised.value.rolled_back["api"] == pytest.approx(sum(clock.slept[1:]))
    assert fake.rollbacks == []  # Swarm did it


def test_a_paused_update_is_rolled_back_by_the_tool_once() -> None:
    """An update Swarm paused is rolled back by reconciler exactly once, then fails the wait."""
    clock = FakeClock()
    api = service("api")
    paused = service("db", update_state="paused", update_message="update paused due to failure")
    fake = FakeSwarm(
        [
            ([api, paused], [task("api"), task("db", "failed", exit_code=1)]),
            ([api, service("db", update_state="rollback_started")], [task("api")]),
            ([api, service("db", update_state="rollback_completed")], [task("api"), task("db")]),
        ]
    )
    with pytest.raises(SwarmRollbackError, match="update of db failed \\(update paused"):
        wait(fake, clock, {"db"})
    assert fake.rollbacks == ["db"]


def test_a_new_service_whose_task_is_rejected_fails_at_once() -> None:
    """A new service whose task is rejected fails at once with the task's error and log."""
    clock = FakeClock()
    rejected = task("api", "rejected", error="No such image: api:1")
    fake = FakeSwarm([([service("api"), service("db")], [rejected, task("db")])])
    with pytest.raises(HealthTimeoutError, match="task rejected: No such image") as raised:
        wait(fake, clock, set())
    assert "log of c-api" in raised.value.diagnostics["api"]


def test_a_service_never_ready_fails_at_its_deadline() -> None:
    """A swarm service never ready fails at its health deadline."""
    clock = FakeClock()
    starting = task("api", "starting")
    fake = FakeSwarm([([service("api"), service("db")], [starting, task("db")])])
    with pytest.raises(HealthTimeoutError, match="not ready after 12"):
        wait(fake, clock, {"api"})
    assert 120 <= sum(clock.slept) < 122


def test_apply_stamps_labels_and_keeps_a_declared_failure_action() -> None:
    """The stack step's apply stamps image labels and keeps a declared update failure action."""
    fake = FakeSwarm(
        [
            (
                [service("api", container_labels={IMAGE_ID_LABEL: "sha-api2"}), service("db")],
                [task("api", labels={IMAGE_ID_LABEL: "sha-api2"}), task("db")],
            )
        ]
    )
    change = Change(Step.SERVICES, "api", Action.UPDATE, "api:1 now points to another image")
    declared = state(prune=True).model_copy(
        update={
            "registries": {"r.example": RegistrySpec(username="u", password_secret="P")},
            "secrets": {"P": SecretSpec(env="HOME")},
        }
    )
    stack.apply(
        (change,), declared, facts([service("api"), service("db")], []), cast(DockerAdapter, fake)
    )
    ((overlay, prune, auth),) = fake.deploys
    assert (prune, auth) == (True, True)
    services = json.loads(overlay)["services"]
    assert services["api"] == {
        "deploy": {
            "labels": {CONFIG_HASH_LABEL: "h-api-new"},
            "update_config": {"failure_action": "rollback"},
        },
        "labels": {IMAGE_ID_LABEL: "sha-api2"},
    }
    assert "update_config" not in services["db"]["deploy"]  # the file's own `pause` stands


def test_a_wait_alone_deploys_nothing() -> None:
    """A plan holding only a wait deploys nothing."""
    fake = FakeSwarm([([service("api"), service("db")], [task("api"), task("db")])])
    change = Change(Step.SERVICES, "api", Action.WAIT, "0/1 tasks running")
    stack.apply((change,), state(), facts([], []), cast(DockerAdapter, fake))
    assert fake.deploys == []


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []

    def __call__(self, argv: Any, **kwargs: Any) -> processes.Finished:
        self.calls.append((tuple(argv), kwargs.get("stdin")))
        return processes.Finished(tuple(argv), 0, "", "", 0.01)


@pytest.mark.parametrize(("prune", "auth"), [(False, False), (True, True)])
def test_stack_deploy_argv(
    prune: bool, auth: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker stack deploy` gets the compose file on stdin, with `--prune` and registry auth as asked."""
    recorder = Recorder()
    monkeypatch.setattr(processes, "run", recorder)
    adapter = DockerAdapter(tmp_path / "c.yml", "p", swarm=True)
    adapter.stack_deploy("services: {}\n", prune=prune, with_registry_auth=auth)
    ((argv, stdin),) = recorder.calls
    assert argv[1:3] == ("stack", "deploy")
    assert ("--prune" in argv, "--with-registry-auth" in argv) == (prune, auth)
    assert argv[-1] == "p"
    assert stdin == "services: {}\n"
    assert "services: {}\n" not in argv
    assert adapter.mutating_calls
    assert adapter.mutating_calls[0].argv == argv


def test_a_swarm_exec_runs_in_a_running_task_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exec in swarm mode runs in a running task container of the service."""
    recorder = Recorder()

    def run(argv: Any, **kwargs: Any) -> processes.Finished:
        recorder(argv, **kwargs)
        out = "c-2\nc-1\n" if "ls" in argv else "ok"
        return processes.Finished(tuple(argv), 0, out, "", 0.01)

    monkeypatch.setattr(processes, "run", run)
    adapter = DockerAdapter(tmp_path / "c.yml", "p", swarm=True)
    result = adapter.exec("api", ["true"], mutating=True)
    assert result.exit_code == 0
    listing, execution = (argv for argv, _ in recorder.calls)
    assert "label=com.docker.swarm.service.name=p_api" in listing
    assert "status=running" in listing
    assert execution[1:] == ("container", "exec", "c-1", "true")


# End to end in swarm mode (`compose.mode: swarm`) on a single-node Swarm: a third engine
# on this machine (deploy/engine/ensure-swarm-engine.sh), never the main one.
#
# The e2e stack's images (FROM scratch) are built ON the swarm engine (the state's `engine:`)
# and deployed by name with `docker stack deploy`, no registry. The compose file is the e2e
# stack's in the form stack deploy reads (`depends_on` as a list, no host-bound port). Checked:
# the idempotence sequence (plan, apply, plan empty, apply with zero mutating calls, one tag
# change updating one service and leaving the others' tasks alone), and an update whose new
# tasks fail, rolled back by Swarm (its time printed for the note).


COMPOSE = """\
# The e2e stack as a Swarm stack: three busybox services with healthchecks.
x-health: &health
  interval: 250ms
  timeout: 2s
  retries: 120

services:
  db:
    build: {{context: ., args: {{ROLE: db}}}}
    image: {p}-db:1
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
  api:
    build: {{context: ., args: {{ROLE: api}}}}
    image: "{p}-api:1"   # pinned by the state
    depends_on: [db]
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
  worker:
    build: {{context: ., args: {{ROLE: worker}}}}
    image: {p}-worker:1
    depends_on: [api]
    deploy:
      replicas: 2
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
"""


STATE = """\
name: {p}
engine: "{engine}"
compose:
  file: docker-compose.yml
  project: {p}
  mode: swarm
services:
  db: {{image: {p}-db:1}}
  api: {{image: {p}-api:1, health_timeout: 90}}
  worker: {{image: {p}-worker:1, health_timeout: 90}}
{images}checks:
  - name: the worker reaches the api over the stack's network
    deadline: 30
    exec:
      service: worker
      command: [wget, -q, -O, "-", "http://tasks.api:8080/health"]  # DNS round robin: no VIP without iptables
      expect_output: '"role": "api"'
"""


BAD_DOCKERFILE = """\
# An api whose task exits at once: its update must fail and be rolled back.
FROM scratch
COPY busybox /bin/busybox
CMD ["/bin/busybox", "false"]
"""


def on_swarm(url: str, *args: str, check: bool = True) -> str:
    """`docker -H url ARGS`: its stdout (the test's own look at the swarm engine)."""
    done = subprocess.run(["docker", "-H", url, *args], capture_output=True, text=True, check=check)
    return done.stdout


def write_state(stack: Stack, engine: str, *, pins: dict[str, str], images: str = "") -> None:
    text = STATE.format(p=stack.project, engine=engine, images=images)
    for service, tag in pins.items():
        pinned = f"{service}: {{image: {stack.project}-{service}:"
        text = text.replace(f"{pinned}1", f"{pinned}{tag}")
    stack.state_file.write_text(text)


def running_tasks(url: str, project: str) -> dict[str, set[str]]:
    """service -> ids of its running tasks."""
    out = on_swarm(
        url,
        "stack",
        "ps",
        project,
        "--no-trunc",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Name}} {{.ID}} {{.CurrentState}}",
    )
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        name, task, state = line.split(" ", 2)
        if state.startswith("Running"):
            service = name.removeprefix(f"{project}_").rpartition(".")[0]
            found.setdefault(service, set()).add(task)
    return found


def plan_json(state_file: Path) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("plan", state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr[-3000:]
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def rows(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(c["step"], c["target"], c["action"]) for c in changes]


@pytest.fixture
def swarm_stack(swarm_engine: str, tmp_path: Path) -> Iterator[Stack]:
    """The e2e stack as a Swarm stack on the swarm engine; the stack and its images are
    removed afterwards."""
    stack = make_stack(tmp_path, port=int(os.environ.get("RTEST_API_PORT", "18700")))
    stack.compose_file.write_text(COMPOSE.format(p=stack.project))
    (stack.directory / "Dockerfile.bad").write_text(BAD_DOCKERFILE)
    write_state(stack, swarm_engine, pins={})
    try:
        yield stack
    finally:
        on_swarm(swarm_engine, "stack", "rm", stack.project, check=False)
        for _ in range(60):  # stack rm returns before the tasks' containers are gone
            if not on_swarm(swarm_engine, "ps", "-aq", "--filter", f"name={stack.project}_"):
                break
            time.sleep(0.5)
        refs = [
            ref
            for ref in on_swarm(
                swarm_engine, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"
            ).split()
            if ref.startswith(f"{stack.project}-")
        ]
        if refs:
            on_swarm(swarm_engine, "image", "rm", "-f", *refs, check=False)


@pytest.mark.docker
def test_stack_idempotence_sequence(swarm_stack: Stack, swarm_engine: str) -> None:
    """On a Swarm, the stack plans, deploys, converges and then has nothing to do."""
    stack, p = swarm_stack, swarm_stack.project
    # 1. plan: three images to build on the swarm engine, three services to deploy.
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert [r for r in rows(changes) if r[0] == "services"] == [
        ("services", name, "deploy") for name in ("api", "db", "worker")
    ]
    assert {r for r in rows(changes) if r[0] == "images"} == {
        ("images", f"{p}-{name}:1", "build") for name in ("db", "api", "worker")
    }
    # Nothing of it on the main engine.
    assert (
        f"{p}-api"
        not in subprocess.run(
            ["docker", "image", "ls"], capture_output=True, text=True, check=True
        ).stdout
    )

    # 2. apply: converged, the check passes through the stack's overlay network.
    started = time.monotonic()
    done = run_cli("apply", stack.state_file, "--json")
    first_apply = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert [c["passed"] for c in result["checks"]] == [True]
    tasks = running_tasks(swarm_engine, p)
    assert {name: len(ids) for name, ids in tasks.items()} == {"db": 1, "api": 1, "worker": 2}

    # 3. plan again: in sync.
    started = time.monotonic()
    code, changes = plan_json(stack.state_file)
    plan_seconds = time.monotonic() - started
    assert (code, changes) == (0, [])

    # 4. apply again: no change, no mutating docker call, the same tasks.
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    again = reconciler.apply(state, adapter=adapter)
    assert again.succeeded, again.error
    assert again.applied == ()
    assert adapter.mutating_calls == []
    assert running_tasks(swarm_engine, p) == tasks
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0
    assert "No changes" in done.stdout + done.stderr

    # 5. one tag change: the worker alone is updated (the file edited, the tag built).
    write_state(stack, swarm_engine, pins={"worker": "2"})
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert [r for r in rows(changes) if r[0] == "services"] == [("services", "worker", "update")]
    started = time.monotonic()
    done = run_cli("apply", stack.state_file, "--json")
    update_seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    after = running_tasks(swarm_engine, p)
    assert after["db"] == tasks["db"]
    assert after["api"] == tasks["api"]
    assert len(after["worker"]) == 2
    assert not after["worker"] & tasks["worker"]
    image = on_swarm(
        swarm_engine,
        "service",
        "inspect",
        f"{p}_worker",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    )
    assert image.strip() == f"{p}-worker:2"
    assert plan_json(stack.state_file) == (0, [])
    print(
        f"\nswarm: first apply {first_apply:.1f} s, plan in sync {plan_seconds:.2f} s, "
        f"one-service update {update_seconds:.1f} s"
    )


@pytest.mark.docker
def test_failed_update_is_rolled_back_by_swarm(swarm_stack: Stack, swarm_engine: str) -> None:
    """On a Swarm, an update whose task fails is rolled back by Swarm and the apply fails."""
    stack, p = swarm_stack, swarm_stack.project
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr[-4000:]
    before = running_tasks(swarm_engine, p)

    # A new api image whose task exits at once.
    bad = f'images:\n  "{p}-api:2":\n    build: {{context: ., dockerfile: Dockerfile.bad}}\n'
    write_state(stack, swarm_engine, pins={"api": "2"}, images=bad)
    started = time.monotonic()
    done = run_cli("apply", stack.state_file, "--json")
    apply_seconds = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert "rolled back by Swarm" in result["error"], result["error"]
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    rolled = [e for e in events if e.get("event") == "swarm rolled back"]
    assert [e["service"] for e in rolled] == ["api"], rolled
    assert rolled[0]["to"] == f"{p}-api:1"

    # Swarm runs the previous spec again; the other services were not touched.
    spec = on_swarm(
        swarm_engine,
        "service",
        "inspect",
        f"{p}_api",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.UpdateStatus.State}}",
    ).split()
    assert spec == [f"{p}-api:1", "rollback_completed"]
    after = running_tasks(swarm_engine, p)
    assert len(after["api"]) == 1
    assert after["db"] == before["db"]
    assert after["worker"] == before["worker"]
    # The next plan says the update is still to make, and why the last one is not there.
    code, changes = plan_json(stack.state_file)
    assert code == 2
    api = [c for c in changes if c["step"] == "services"]
    assert [c["target"] for c in api] == ["api"]
    assert "rolled back" in api[0]["reason"]
    print(
        f"\nswarm rollback: {rolled[0]['seconds']:.1f} s from the rollback's start to the old "
        f"task running again; the failing apply took {apply_seconds:.1f} s"
    )
