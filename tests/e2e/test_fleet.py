"""End to end: a fleet of two targets, the local engine and a second one over SSH
(deploy/engine/ensure-remote-engine.sh), each a copy of the e2e stack with its own project and
port. One `apply fleet.yaml` converges both; a second is a no-op (no mutating docker call on
either engine); a failed target in wave 1 stops wave 2. The wall time of a serial apply
against one wave is measured by tests/benchmarks/bench_fleet.py, not here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import reconciler
from tests.conftest import RECONCILER, Stack, all_target, make_stack, remove_stack, run_cli

pytestmark = pytest.mark.docker


def _port(offset: int) -> int:
    return int(os.environ.get("RTEST_API_PORT", "18080")) + offset


@dataclass
class Pair:
    """The fleet file's directory, its two stacks and the remote engine's URL."""

    directory: Path
    local: Stack
    remote: Stack
    url: str

    def write(self, waves: str = "", name: str = "fleet.yaml") -> Path:
        path = self.directory / name
        text = (
            "fleet: e2e\n"
            "targets:\n"
            "  local: {state: local/stack/state.yaml}\n"
            f'  remote: {{state: remote/stack/state.yaml, engine: "{self.url}"}}\n'
        )
        path.write_text(text + (f"waves: {waves}\n" if waves else ""))
        return path


def on_engine(url: str | None, *args: str) -> str:
    argv = ["docker", *(["-H", url] if url else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def services_of(url: str | None, project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    fmt = '{{.Label "com.docker.compose.service"}}'
    return sorted(on_engine(url, "container", "ls", "--filter", label, "--format", fmt).split())


def reset(pair: Pair) -> None:
    """Both stacks down, their images removed (by tag), on both engines: a cold start."""
    for url, stack in ((None, pair.local), (pair.url, pair.remote)):
        remove_stack(stack, url)


@pytest.fixture
def pair(remote_engine: str, tmp_path: Path) -> Iterator[Pair]:
    local = make_stack(tmp_path / "local", port=_port(1))
    remote = make_stack(tmp_path / "remote", port=_port(2))
    created = Pair(tmp_path, local, remote, remote_engine)
    try:
        yield created
    finally:
        reset(created)
        remove_stack(local)


def test_a_fleet_of_two_engines_converges_in_one_apply_and_then_does_nothing(
    pair: Pair,
) -> None:
    fleet_file = pair.write()
    done = run_cli("plan", fleet_file, "--json")
    assert done.returncode == 2, done.stderr
    plan = json.loads(done.stdout)
    assert [(n, t["status"], t["engine"]) for n, t in plan["targets"].items()] == [
        ("local", "changes", "default"),
        ("remote", "changes", pair.url),
    ]

    done = run_cli("apply", fleet_file)
    assert done.returncode == 0, done.stderr
    assert "  local   changed  ok=" in done.stdout
    assert "  remote  changed  ok=" in done.stdout
    assert services_of(None, pair.local.project) == ["api", "db", "worker"]
    assert services_of(pair.url, pair.remote.project) == ["api", "db", "worker"]
    assert services_of(pair.url, pair.local.project) == []
    assert services_of(None, pair.remote.project) == []

    done = run_cli("plan", fleet_file)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("Fleet e2e: in sync on all 2 targets")

    done = run_cli("apply", fleet_file)
    assert done.returncode == 0, done.stderr
    assert "No changes: already in the declared state on every target." in done.stdout
    assert "fleet e2e: targets=2 ok=" in done.stdout
    assert " changed=0 failed=0 skipped=0" in done.stdout

    result = reconciler.apply_fleet(reconciler.load_fleet(fleet_file))
    assert result.exit_code == 0
    assert not result.changed
    for target in result.targets:
        assert target.result is not None
        assert target.result.calls, target.name
        mutating = [c.argv for c in target.result.calls if c.mutating and not c.engine_lock]
        assert mutating == [], target.name  # the engine lock on the ssh engine aside
    remote_calls = result.targets[1].result.calls if result.targets[1].result else ()
    assert all_target(remote_calls, pair.url)


def test_a_failed_target_in_wave_1_stops_wave_2(pair: Pair) -> None:
    dockerfile = pair.local.directory / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'RUN ["/bin/busybox", "false"]\n')
    fleet_file = pair.write("[[local], [remote]]")
    done = run_cli("apply", fleet_file, "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["targets"]["local"]["status"] == "failed"
    assert result["targets"]["remote"] == {
        "engine": pair.url,
        "wave": 2,
        "status": "skipped",
        "skipped": "not started: wave 1 failed (local)",
        "changes": [],
    }
    assert result["summary"]["skipped"] == 1
    assert "error: target local: " in done.stderr
    assert services_of(pair.url, pair.remote.project) == []
    assert on_engine(pair.url, "image", "ls", "-q", pair.remote.image("api")).strip() == ""


def test_ctrl_c_stops_every_target_of_a_running_wave(pair: Pair) -> None:
    """One SIGINT during a wave of two (both building): the handler only records it, each
    target stops at its next stop point, the run exits 130 and names each target's stop."""
    fleet_file = pair.write("[[local, remote]]")
    apply = subprocess.Popen(
        [*RECONCILER, "apply", str(fleet_file), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert apply.stderr is not None
    started: set[str] = set()
    for line in apply.stderr:
        event = json.loads(line)
        if event.get("event") == "target started":
            started.add(event["fleet_target"])
        if started == {"local", "remote"}:
            break
    assert started == {"local", "remote"}
    time.sleep(2)  # both are observing or building now (a cold start takes far longer)
    apply.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = apply.communicate(timeout=120)
    assert apply.returncode == 130, err[-2000:]
    print(f"\nSIGINT during a wave of two: exit 130 after {time.monotonic() - sent:.1f} s")
    assert "stopped by SIGINT" in err
    assert "Fleet e2e recap:" in out
    assert "Traceback" not in err
