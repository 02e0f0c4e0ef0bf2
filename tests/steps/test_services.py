"""Readiness judged from recorded `docker container inspect` JSON, with a fake clock.

tests/facts/inspect/ holds real inspect output (engine 20.10) of one container per state:
healthy, unhealthy, health starting, exited 0 (a one-shot), exited 1, restarting and
restarted again (restart: on-failure), running without a healthcheck. See
tests/facts/inspect/docker-compose.yml for how each was made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import reconciler
from reconciler.docker.adapter import DockerAdapter, _container_facts
from reconciler.docker.facts import ComposeConfig, ContainerFacts, docker_epoch
from reconciler.docker.parse import compose_config as _parse_compose_config
from reconciler.errors import HealthTimeoutError
from reconciler.plans import Plan
from reconciler.reconcile.loop import make_adapter
from reconciler.runtime.records import ReadyEntry
from reconciler.state import State
from reconciler.steps import services
from reconciler.steps.services import (
    STABLE_FOR,
    Readiness,
    ReadinessWatch,
    ServicesFacts,
    readiness,
)
from tests.conftest import BUSYBOX, STACK, compose_down
from tests.facts import fake_docker
from tests.facts.clock import FakeClock

INSPECT = Path(fake_docker.__file__).parent / "inspect"
CONFIG = _parse_compose_config(json.loads((INSPECT / "compose-config.json").read_text()))
REFUSED = "wget: can't connect to remote host (127.0.0.1): Connection refused"


def facts(sample: str) -> ContainerFacts:
    """The container of a recorded sample, as the adapter parses it."""
    (item,) = json.loads((INSPECT / f"{sample}.json").read_text())
    return _container_facts(item)


def assess(sample: str, now: float = 0.0) -> Readiness:
    container = facts(sample)
    return ReadinessWatch().assess(container.service, [container], CONFIG, now)


def test_recorded_samples_parse_to_the_states_they_show() -> None:
    """The adapter reads status, health, exit code, restarts and last health output from inspect."""
    seen = {
        name: (c.service, c.status, c.health, c.exit_code, c.restart_policy)
        for name in ("healthy", "unhealthy", "starting", "exited-0", "exited-1", "restarting")
        for c in [facts(name)]
    }
    assert seen == {
        "healthy": ("becomes-healthy", "running", "healthy", 0, ""),
        "unhealthy": ("unhealthy", "running", "unhealthy", 0, ""),
        "starting": ("becomes-healthy", "running", "starting", 0, ""),
        "exited-0": ("migrate", "exited", None, 0, "no"),
        "exited-1": ("broken", "exited", None, 1, "no"),
        "restarting": ("crashloop", "restarting", None, 1, "on-failure"),
    }
    assert facts("unhealthy").last_health_output == REFUSED
    assert facts("crashloop-restarted").restart_count > facts("restarting").restart_count


def test_healthy_container_is_ready() -> None:
    """A running container whose healthcheck passes is ready."""
    assert assess("healthy") == Readiness("becomes-healthy", True, False, "running, healthy")


def test_unhealthy_container_fails_the_wait() -> None:
    """An unhealthy container is not ready and fails at once, as `compose up --wait` does."""
    assert assess("unhealthy") == Readiness("unhealthy", False, True, "unhealthy")
    container = facts("unhealthy")
    assert not readiness("unhealthy", [container], CONFIG).ready


def test_unhealthy_replica_fails_its_service_even_beside_a_healthy_one() -> None:
    """One unhealthy container among healthy ones makes the service failed, not ready."""
    unhealthy = facts("unhealthy")
    healthy = facts("healthy")
    result = ReadinessWatch().assess("unhealthy", [healthy, unhealthy], CONFIG, 0.0)
    assert (result.ready, result.failed) == (False, True)


def test_health_starting_is_waited_for() -> None:
    """A container whose healthcheck has not passed yet is not ready and not failed."""
    assert assess("starting") == Readiness("becomes-healthy", False, False, "health: starting")


def test_exited_container_fails_with_its_exit_code() -> None:
    """A container that exited 1 (no restart policy) fails the wait, naming the exit code."""
    assert assess("exited-1") == Readiness("broken", False, True, "exited (exit code 1)")


def test_completed_one_shot_is_ready() -> None:
    """A one-shot that exited 0 (another service waits for its completion) counts as ready."""
    result = assess("exited-0")
    assert (result.ready, result.failed) == (True, False)


def test_restarting_container_is_waited_for_then_fails_once_it_restarts_again() -> None:
    """`restarting` alone is not a failure; a higher restart count in a later sample is a crash loop."""
    watch = ReadinessWatch()
    first = watch.assess("crashloop", [facts("restarting")], CONFIG, 0.0)
    assert (first.ready, first.failed) == (False, False)
    later = watch.assess("crashloop", [facts("crashloop-restarted")], CONFIG, 1.0)
    assert (later.ready, later.failed) == (False, True)
    assert "crash-looping" in later.summary


def test_container_without_healthcheck_is_ready_only_after_staying_up() -> None:
    """Running with no healthcheck: ready once seen up (same start) for STABLE_FOR seconds."""
    container = facts("running-no-healthcheck")
    watch = ReadinessWatch()
    assert not watch.assess("no-healthcheck", [container], CONFIG, 100.0).ready
    assert not watch.assess("no-healthcheck", [container], CONFIG, 100.0 + STABLE_FOR / 2).ready
    assert watch.assess("no-healthcheck", [container], CONFIG, 100.0 + STABLE_FOR).ready


def test_no_container_is_waited_for() -> None:
    """A service with no container yet is not ready and not failed."""
    result = ReadinessWatch().assess("unhealthy", [], CONFIG, 0.0)
    assert (result.ready, result.failed) == (False, False)


NO_PINS = State.model_validate({"name": "s", "compose": {"file": "docker-compose.yml"}})


def observed_with(*containers: ContainerFacts) -> ServicesFacts:
    return ServicesFacts(
        config=CONFIG,
        config_hashes={c.service: c.config_hash or "" for c in containers},
        containers=containers,
    )


def test_diff_recreates_an_unhealthy_service_with_its_health_output() -> None:
    """services.diff plans a recreate of the unhealthy service, its reason quoting the check."""
    plan = services.diff(NO_PINS, observed_with(facts("unhealthy"), facts("healthy")), Plan())
    by_target = {c.target: c for c in plan.changes}
    assert by_target["unhealthy"].action == "recreate"
    assert by_target["unhealthy"].reason == f"unhealthy: {REFUSED}"
    assert "becomes-healthy" not in by_target
    assert ("becomes-healthy", "running, healthy") in [(r.target, r.reason) for r in plan.ok]


def test_diff_waits_for_a_starting_service_and_starts_an_exited_one() -> None:
    """A starting healthcheck is a `wait`; an exited (non one-shot) container is a `start`."""
    plan = services.diff(NO_PINS, observed_with(facts("starting"), facts("exited-1")), Plan())
    actions = {c.target: c.action for c in plan.changes}
    assert actions["becomes-healthy"] == "wait"
    assert actions["broken"] == "start"


def waiting_for(service: str, tmp_path: Path) -> tuple[State, ComposeConfig, DockerAdapter]:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(f"services:\n  {service}:\n    image: mutfx-busybox:1\n")
    state = State.model_validate(
        {
            "name": "mutfxrd",
            "compose": {"file": str(compose), "project": "mutfxrd"},
            "services": {service: {"health_timeout": 30}},
        }
    )
    config = ComposeConfig(CONFIG.project, {service: CONFIG.services[service]})
    return state, config, DockerAdapter(compose, "mutfxrd")


def test_wait_polls_until_healthy_without_a_fixed_sleep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sampled starting, starting, healthy: the wait returns after two short back-off sleeps."""
    fake_docker.on_path("wait-healthy", tmp_path, monkeypatch)
    state, config, adapter = waiting_for("becomes-healthy", tmp_path)
    clock = FakeClock(1000.0)
    services.wait_until_ready(state, adapter, config, clock=clock, sleep=clock.sleep)
    assert clock.slept == pytest.approx([0.2, 0.3])


def test_wait_fails_at_once_on_unhealthy_with_check_output_and_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unhealthy sample ends the wait without sleeping; the error shows the check and log tail."""
    fake_docker.on_path("wait-unhealthy", tmp_path, monkeypatch)
    state, config, adapter = waiting_for("unhealthy", tmp_path)
    clock = FakeClock(1000.0)
    with pytest.raises(HealthTimeoutError, match=r"unhealthy \(unhealthy\)") as caught:
        services.wait_until_ready(state, adapter, config, clock=clock, sleep=clock.sleep)
    assert clock.slept == []
    diagnostics = caught.value.diagnostics["unhealthy"]
    assert f"last health check output: {REFUSED}" in diagnostics
    assert "listening on :8081" in diagnostics


def frozen_engine(
    adapter: DockerAdapter,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    samples: list[tuple[float, str]],
) -> list[float]:
    """Answer each `containers()` with the recorded sample named, after that many seconds of
    the fake clock (an engine that does not answer meanwhile); return when each was asked."""
    asked: list[float] = []

    def containers() -> list[ContainerFacts]:
        asked.append(clock.now)
        seconds, sample = samples[min(len(asked), len(samples)) - 1]
        clock.now += seconds
        return [facts(sample)]

    monkeypatch.setattr(adapter, "containers", containers)
    monkeypatch.setattr(adapter, "container_logs", lambda *_args, **_kw: "listening on :8081")
    return asked


def test_a_deadline_passed_while_the_engine_was_frozen_gets_one_more_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine answers a sample after 40 s (past the 30 s timeout): asked once more, it is ready."""
    state, config, adapter = waiting_for("becomes-healthy", tmp_path)
    clock = FakeClock(1000.0)
    asked = frozen_engine(
        adapter, clock, monkeypatch, [(0.0, "starting"), (40.0, "starting"), (0.0, "healthy")]
    )
    services.wait_until_ready(state, adapter, config, clock=clock, sleep=clock.sleep)
    assert len(asked) == 3


def test_the_wait_notes_when_a_container_became_ready_and_when_it_was_last_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting, then healthy: the health log shows the first pass (its end) after a failed run
    (its start: not ready then). When the log no longer shows it (five passes), the wait's own
    looks bound it: ready when first seen so, after the look that last saw it starting."""
    state, config, adapter = waiting_for("becomes-healthy", tmp_path)
    clock = FakeClock(1000.0)
    frozen_engine(adapter, clock, monkeypatch, [(0.0, "starting"), (0.0, "healthy")])
    ready: dict[str, ReadyEntry] = {}
    services.wait_until_ready(
        state, adapter, config, clock=clock, sleep=clock.sleep, ready=ready, wall=clock
    )
    healthy = facts("healthy")
    (entry,) = ready.values()
    assert entry.ready_at == docker_epoch(healthy.health_log[-1].end)
    assert entry.ready_after == docker_epoch(healthy.health_log[-2].start)

    passes = tuple(replace(probe, exit_code=0) for probe in healthy.health_log)
    state, config, adapter = waiting_for("becomes-healthy", tmp_path)
    looks: list[float] = []

    def containers() -> list[ContainerFacts]:
        looks.append(clock.now)
        if len(looks) < 3:
            return [facts("starting")]
        return [replace(healthy, health_log=passes)]

    monkeypatch.setattr(adapter, "containers", containers)
    ready.clear()
    services.wait_until_ready(
        state, adapter, config, clock=clock, sleep=clock.sleep, ready=ready, wall=clock
    )
    (entry,) = ready.values()
    assert (entry.ready_after, entry.ready_at) == (looks[1], looks[2])


def test_a_wait_lost_to_a_frozen_engine_is_blamed_on_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Still starting once the engine answers again: the error says the engine did not answer."""
    state, config, adapter = waiting_for("becomes-healthy", tmp_path)
    clock = FakeClock(1000.0)
    samples = [(0.0, "starting"), (40.0, "starting"), (0.0, "starting")]
    asked = frozen_engine(adapter, clock, monkeypatch, samples)
    with pytest.raises(HealthTimeoutError) as caught:
        services.wait_until_ready(state, adapter, config, clock=clock, sleep=clock.sleep)
    assert str(caught.value) == (
        "the engine did not answer for 40.0 s of the 40.5 s wait; not ready once it answered: "
        "becomes-healthy (health: starting)"
    )
    assert len(asked) == 3, "exactly one more sample, after the engine answered"
    assert asked[2] > asked[1] + 40.0


def test_a_service_that_had_its_time_is_still_blamed_for_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow sample early on, then answers until the deadline: `not ready after`, silence noted."""
    state, config, adapter = waiting_for("becomes-healthy", tmp_path)
    clock = FakeClock(1000.0)
    frozen_engine(adapter, clock, monkeypatch, [(6.0, "starting"), (0.0, "starting")])
    with pytest.raises(HealthTimeoutError) as caught:
        services.wait_until_ready(state, adapter, config, clock=clock, sleep=clock.sleep)
    assert str(caught.value) == (
        "not ready after 30.6 s (the engine did not answer for 6.0 s of it): "
        "becomes-healthy (health: starting)"
    )


# Readiness on a real engine: a crash loop is never ready; a completed one-shot stays done.


TRIES = 3


def write_project(directory: Path, project: str, services: str) -> Path:
    """A compose project of busybox services (one image, built once); returns its state file."""
    directory.mkdir(parents=True)
    for name in ("Dockerfile", "serve.sh"):
        shutil.copy2(STACK / name, directory / name)
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "docker-compose.yml").write_text("services:\n" + services)
    state = directory / "state.yaml"
    state.write_text(
        f"name: {project}\ncompose:\n  file: docker-compose.yml\n  project: {project}\n"
    )
    return state


@pytest.fixture
def project(docker_engine: None, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A unique project name and directory, torn down afterwards (containers and image)."""
    name = f"rr{uuid.uuid4().hex[:8]}"
    yield tmp_path / "project", name
    compose = tmp_path / "project" / "docker-compose.yml"
    compose_down(["docker", "compose", "-f", str(compose), "-p", name], "-t", "0")
    subprocess.run(
        ["docker", "image", "rm", "-f", f"{name}-img:1"], capture_output=True, check=False
    )


@pytest.mark.docker
def test_crash_looping_service_is_never_accepted(project: tuple[Path, str]) -> None:
    """restart: on-failure and an exit after 0.1 s: every apply fails, naming the crash loop."""
    directory, name = project
    state_file = write_project(
        directory,
        name,
        f"  flaky:\n    build: .\n    image: {name}-img:1\n    restart: on-failure\n"
        '    command: ["sh", "-c", "sleep 0.1; exit 1"]\n',
    )
    state = reconciler.load_state(state_file)
    for attempt in range(TRIES):
        result = reconciler.apply(state)
        assert not result.succeeded, f"attempt {attempt}: a crash loop was accepted"
        assert result.error is not None
        text = str(result.error)
        assert "flaky" in text
        assert any(word in text for word in ("crash-looping", "restarting", "exited")), text


@pytest.mark.docker
def test_completed_one_shot_is_in_sync_and_not_started_again(project: tuple[Path, str]) -> None:
    """A one-shot that exited 0 (no restart policy) converges; plan is then empty; apply no-op."""
    directory, name = project
    state_file = write_project(
        directory,
        name,
        f'  setup:\n    build: .\n    image: {name}-img:1\n    command: ["true"]\n'
        f"  app:\n    image: {name}-img:1\n    stop_grace_period: 1s\n"
        "    depends_on:\n      setup:\n        condition: service_completed_successfully\n",
    )
    state = reconciler.load_state(state_file)
    first = reconciler.apply(state)
    assert first.succeeded, first.error
    plan = reconciler.plan(state)
    assert plan.empty, plan.changes
    assert any(row.target == "setup" and "exited" in row.reason for row in plan.ok), plan.ok
    adapter = make_adapter(state)
    again = reconciler.apply(state, adapter=adapter)
    assert again.succeeded, again.error
    assert not again.changed
    assert adapter.mutating_calls == []
