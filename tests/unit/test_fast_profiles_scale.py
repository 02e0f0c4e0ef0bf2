"""compose.profiles and scale, with no engine: the state key, the `--profile` on every compose
call, compose's model of recorded profiles and replicas (tests/facts/profiles/), and readiness
of services scaled to 0 or to N."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

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
from tests.facts.clock import FakeClock

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
