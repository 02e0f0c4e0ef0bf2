"""Swarm mode without docker: recorded `service inspect` / task answers (tests/facts/swarm), a
scripted fake adapter for the wait (a fake clock), the overlay stack deploy is given, and the
argv of the adapter's stack calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest

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
from tests.facts.clock import FakeClock

RECORDED = Path(__file__).parent.parent / "facts" / "swarm"


def recorded(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((RECORDED / f"{name}.json").read_text())
    return data


def test_recorded_services_parse() -> None:
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
    clock = FakeClock()
    fake = FakeSwarm([([service("api"), service("db")], [task("api"), task("db")])])
    done = wait(fake, clock, {"api"})
    assert set(done.services) == {"api", "db"}
    assert clock.slept == []


def test_swarm_rollback_is_waited_for_timed_and_reported() -> None:
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
    clock = FakeClock()
    rejected = task("api", "rejected", error="No such image: api:1")
    fake = FakeSwarm([([service("api"), service("db")], [rejected, task("db")])])
    with pytest.raises(HealthTimeoutError, match="task rejected: No such image") as raised:
        wait(fake, clock, set())
    assert "log of c-api" in raised.value.diagnostics["api"]


def test_a_service_never_ready_fails_at_its_deadline() -> None:
    clock = FakeClock()
    starting = task("api", "starting")
    fake = FakeSwarm([([service("api"), service("db")], [starting, task("db")])])
    with pytest.raises(HealthTimeoutError, match="not ready after 12"):
        wait(fake, clock, {"api"})
    assert 120 <= sum(clock.slept) < 122


def test_apply_stamps_labels_and_keeps_a_declared_failure_action() -> None:
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
