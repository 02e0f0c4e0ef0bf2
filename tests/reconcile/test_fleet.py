"""Fleets without an engine: the file's loading rules, waves, parallel targets, the stop at a
failed wave, exit codes, the CLI's output and JSON. The targets' compose-file step runs for
real (it needs no docker); a target is made to fail by holding its project lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.cli.main import main
from reconciler.errors import InputError, LockHeldError
from reconciler.locks.local import project_lock
from reconciler.plans import Plan, Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.fleet import FleetResult, TargetResult, apply_fleet, plan_fleet
from reconciler.reconcile.loop import ApplyResult, lock_name
from reconciler.runtime.interrupt import StopToken
from reconciler.state.fleet import is_fleet_file, load_fleet
from tests.conftest import RECONCILER, Stack, all_target, make_stack, remove_stack, run_cli

COMPOSE_ONLY = (Step.COMPOSE_FILE,)


def write_target(directory: Path, name: str, *, pin: str = "a:2", engine: str = "") -> None:
    """`name.yaml`, a state pinning service a of `name.yml` (at a:1) to `pin`."""
    (directory / f"{name}.yml").write_text("services:\n  a:\n    image: a:1\n")
    head = f"name: {name}\n" + (f"engine: {engine}\n" if engine else "")
    (directory / f"{name}.yaml").write_text(
        head + f"compose: {{file: {name}.yml, project: p-{name}}}\n"
        f'services:\n  a: {{image: "{pin}"}}\n'
    )


def write_fleet(directory: Path, names: list[str], waves: str = "", **engines: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["fleet: f", "targets:"]
    for name in names:
        if not (directory / f"{name}.yaml").exists():
            write_target(directory, name)
        engine = f", engine: {engines[name]}" if name in engines else ""
        lines.append(f"  {name}: {{state: {name}.yaml{engine}}}")
    if waves:
        lines.append(f"waves: {waves}")
    path = directory / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def pinned(directory: Path, name: str) -> str:
    return (directory / f"{name}.yml").read_text().split("image: ")[1].strip()


@pytest.fixture
def _locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))


# ---- the file ------------------------------------------------------------------------------


@pytest.mark.usefixtures("_locks")
def test_load_resolves_states_against_the_fleet_file_and_the_target_engine_wins(
    tmp_path: Path,
) -> None:
    """State paths are relative to the fleet file; a target's engine overrides the state's;
    without one the state's engine (or the local default) stays; no waves: one at a time."""
    directory = tmp_path / "fleets"
    directory.mkdir()
    write_target(directory, "a", engine="ssh://deploy@state.example")
    write_target(directory, "b", engine="ssh://deploy@state.example")
    write_target(directory, "c")
    path = write_fleet(directory, ["a", "b", "c"], a='"ssh://root@fleet.example:2222"')
    loaded = load_fleet(path)
    assert list(loaded.targets) == ["a", "b", "c"]
    assert loaded.targets["a"].engine == "ssh://root@fleet.example:2222"
    assert loaded.targets["a"].state.engine == "ssh://root@fleet.example:2222"
    assert loaded.targets["b"].engine == "ssh://deploy@state.example"
    assert loaded.targets["c"].engine == "default"
    assert loaded.targets["c"].state.engine is None
    assert loaded.targets["a"].state.compose.file == directory / "a.yml"
    assert loaded.waves == (("a",), ("b",), ("c",))
    assert not loaded.explicit_waves


@pytest.mark.usefixtures("_locks")
def test_select_keeps_the_waves_in_order_and_refuses_an_unknown_target(tmp_path: Path) -> None:
    """Selecting targets keeps the waves in order and refuses an unknown target name."""
    path = write_fleet(tmp_path, ["a", "b", "c"], "[[a, b], [c]]")
    loaded = load_fleet(path)
    assert loaded.select(["c", "a"]).waves == (("a",), ("c",))
    assert list(loaded.select(["c", "a"]).targets) == ["a", "c"]
    assert loaded.select([]) is loaded
    with pytest.raises(InputError, match=r"--target 'd': fleet 'f' has no such target") as error:
        loaded.select(["a", "d"])
    assert error.value.exit_code == 3


@pytest.mark.usefixtures("_locks")
def test_is_fleet_file_by_its_top_level_key(tmp_path: Path) -> None:
    """A file is a fleet file by its top-level `fleet:` key only."""
    path = write_fleet(tmp_path, ["a"])
    assert is_fleet_file(path)
    assert not is_fleet_file(tmp_path / "a.yaml")
    assert not is_fleet_file(tmp_path / "missing.yaml")
    (tmp_path / "odd.yaml").write_text("name: x\ncompose: {file: a.yml}\n# fleet: not a key\n")
    assert not is_fleet_file(tmp_path / "odd.yaml")
    (tmp_path / "broken.yaml").write_text("fleet: [\n")
    assert not is_fleet_file(tmp_path / "broken.yaml")


@pytest.mark.usefixtures("_locks")
def test_one_project_on_two_engines_has_two_locks(tmp_path: Path) -> None:
    """Two targets with one project name on different engines never block each other; a
    state without an engine keeps the project's plain lock name."""
    write_target(tmp_path, "a")
    path = write_fleet(tmp_path, ["a", "b"], a='"ssh://root@one.example"', b="other-context")
    (tmp_path / "b.yaml").write_text(
        (tmp_path / "a.yaml").read_text().replace("name: a", "name: b")
    )
    loaded = load_fleet(path)
    one, two = (loaded.targets[name].state for name in ("a", "b"))
    assert one.compose.project == two.compose.project == "p-a"
    assert lock_name(reconciler.load_state(tmp_path / "a.yaml")) == "p-a"
    assert lock_name(one) != lock_name(two)
    assert lock_name(one).startswith("p-a@ssh-root-one.example-")
    with (
        project_lock(lock_name(one)),
        project_lock(lock_name(two)),
        pytest.raises(LockHeldError),
        project_lock(lock_name(one)),
    ):
        pass


# ---- apply ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("_locks")
def test_a_failed_wave_stops_the_fleet_and_later_waves_are_skipped(tmp_path: Path) -> None:
    """b fails in wave 1 (its lock is held): a, in the same wave, is applied all the same;
    c, in wave 2, is never started; exit 1."""
    path = write_fleet(tmp_path, ["a", "b", "c"], "[[a, b], [c]]")
    loaded = load_fleet(path)
    seen: list[tuple[str, str]] = []
    with project_lock(lock_name(loaded.targets["b"].state)):
        result = apply_fleet(
            loaded, steps=COMPOSE_ONLY, on_done=lambda t: seen.append((t.name, t.status))
        )
    assert [(t.name, t.status, t.wave) for t in result.targets] == [
        ("a", "changed", 1),
        ("b", "failed", 1),
        ("c", "skipped", 2),
    ]
    assert sorted(seen) == [("a", "changed"), ("b", "failed"), ("c", "skipped")]
    assert seen[-1] == ("c", "skipped")
    assert isinstance(result.targets[1].result and result.targets[1].result.error, LockHeldError)
    assert result.targets[2].skipped == "not started: wave 1 failed (b)"
    assert (pinned(tmp_path, "a"), pinned(tmp_path, "b"), pinned(tmp_path, "c")) == (
        "a:2",
        "a:1",
        "a:1",
    )
    assert result.exit_code == 1
    assert result.counts == {"ok": 0, "changed": 1, "failed": 1, "skipped": 1}


@pytest.mark.usefixtures("_locks")
def test_without_waves_targets_run_one_at_a_time_and_stop_at_the_first_failure(
    tmp_path: Path,
) -> None:
    """Without waves, targets run one at a time and the first failure skips the rest."""
    path = write_fleet(tmp_path, ["a", "b", "c"])
    loaded = load_fleet(path)
    with project_lock(lock_name(loaded.targets["b"].state)):
        result = apply_fleet(loaded, steps=COMPOSE_ONLY)
    assert [t.status for t in result.targets] == ["changed", "failed", "skipped"]
    assert pinned(tmp_path, "c") == "a:1"


@pytest.mark.usefixtures("_locks")
def test_the_targets_of_a_wave_run_at_the_same_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each target waits at a barrier for the other: only parallel targets get past it."""
    path = write_fleet(tmp_path, ["a", "b"], "[[a, b]]")
    barrier = threading.Barrier(2, timeout=10)
    real_apply = reconcile.apply

    def meet_then_apply(*args: Any, **kwargs: Any) -> ApplyResult:
        barrier.wait()
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(reconcile, "apply", meet_then_apply)
    result = apply_fleet(load_fleet(path), steps=COMPOSE_ONLY)
    assert [t.status for t in result.targets] == ["changed", "changed"]


@pytest.mark.usefixtures("_locks")
def test_a_stop_request_skips_what_has_not_started(tmp_path: Path) -> None:
    """A stop request skips every target not yet started and exits 130."""
    path = write_fleet(tmp_path, ["a", "b"])
    stop = StopToken()
    stop.request(signal.SIGINT)
    result = apply_fleet(load_fleet(path), steps=COMPOSE_ONLY, stop=stop)
    assert [t.status for t in result.targets] == ["skipped", "skipped"]
    assert result.exit_code == 130
    assert pinned(tmp_path, "a") == "a:1"


@pytest.mark.usefixtures("_locks")
def test_exit_codes_over_the_fleet() -> None:
    """3 only when every failure is bad input and nothing changed anywhere; else 1."""
    bad = ApplyResult(Plan(), error=InputError("bad"))
    held = ApplyResult(Plan(), error=LockHeldError("held"))
    fine = ApplyResult(Plan())

    def fleet_of(*results: ApplyResult) -> FleetResult:
        return FleetResult(
            "f", tuple(TargetResult(f"t{i}", "default", 1, r) for i, r in enumerate(results))
        )

    assert fleet_of(fine, fine).exit_code == 0
    assert fleet_of(fine, bad).exit_code == 3
    assert fleet_of(bad, held).exit_code == 1
    changed = ApplyResult(Plan(), applied=(object(),))  # type: ignore[arg-type]
    assert fleet_of(changed, bad).exit_code == 1


@pytest.mark.usefixtures("_locks")
def test_plan_fleet_exit_codes(tmp_path: Path) -> None:
    """A fleet plan exits 2 when any target has changes and 0 when all are in sync."""
    path = write_fleet(tmp_path, ["a", "b"])
    write_target(tmp_path, "b", pin="a:1")
    plans = plan_fleet(load_fleet(path), steps=COMPOSE_ONLY)
    assert [t.status for t in plans.targets] == ["changes", "in-sync"]
    assert plans.exit_code == 2
    assert plan_fleet(load_fleet(path).select(["b"]), steps=COMPOSE_ONLY).exit_code == 0


# ---- CLI -----------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([*map(str, args), "--log-format", "json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("_locks")
def test_cli_plan_apply_then_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI a fleet plans, applies, then has nothing to do."""
    path = write_fleet(tmp_path, ["a", "b"], "[[a, b]]")
    code, out, _ = run(capsys, "plan", path, "--only", "compose-file")
    assert code == 2
    assert "=== a (default) ===\ncompose-file  edit" in out
    assert "Fleet f: 2 to change on 2 of 2 targets, 0 ok." in out
    code, out, _ = run(capsys, "apply", path, "--only", "compose-file")
    assert code == 0
    assert "Fleet f recap:\n  a  changed  ok=0 changed=1 failed=0\n" in out
    assert "fleet f: targets=2 ok=0 changed=2 failed=0 skipped=0" in out
    # Each target's block is whole: its header, its change, its counts, in that order.
    for name in ("a", "b"):
        block = out.split(f"=== {name} (default) ===\n")[1]
        assert block.startswith(f"compose-file  edit      {name}.yml:services.a.image")
        assert "ok=0 changed=1 failed=0\n" in block.split("===")[0]
    code, out, _ = run(capsys, "plan", path, "--only", "compose-file")
    assert (code, out.splitlines()[-1]) == (0, "Fleet f: in sync on all 2 targets (2 ok).")
    code, out, _ = run(capsys, "apply", path, "--only", "compose-file")
    assert code == 0
    assert "No changes: already in the declared state on every target." in out


@pytest.mark.usefixtures("_locks")
def test_cli_json_has_one_entry_per_target_in_the_single_state_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fleet's `--json` has one entry per target, each in the single-state shape."""
    path = write_fleet(tmp_path, ["a", "b", "c"], "[[a, b], [c]]")
    code, out, _ = run(capsys, "plan", path, "--only", "compose-file", "--json")
    plan = json.loads(out)
    assert code == 2
    assert list(plan["targets"]) == ["a", "b", "c"]
    assert {c["fleet_target"] for c in plan["changes"]} == {"a", "b", "c"}
    assert set(plan["targets"]["a"]) >= {"changes", "ok", "engine", "status"}
    single = json.loads(
        run(capsys, "plan", tmp_path / "a.yaml", "--only", "compose-file", "--json")[1]
    )
    assert plan["targets"]["a"]["changes"] == single["changes"]
    with project_lock(lock_name(reconciler.load_state(tmp_path / "b.yaml"))):
        code, out, err = run(capsys, "apply", path, "--only", "compose-file", "--json")
    result = json.loads(out)
    assert code == 1
    assert result["summary"] == {
        "targets": 3,
        "ok": 0,
        "changed": 1,
        "failed": 1,
        "skipped": 1,
    }
    assert result["targets"]["b"]["error_kind"] == "LockHeldError"
    assert result["targets"]["c"] == {
        "engine": "default",
        "wave": 2,
        "status": "skipped",
        "skipped": "not started: wave 1 failed (b)",
        "changes": [],
    }
    assert set(result["targets"]["a"]) >= {"changes", "ok", "failed", "checks", "summary"}
    assert "error: target b: another apply holds the lock" in err


@pytest.mark.usefixtures("_locks")
def test_cli_target_limits_and_bad_options_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--target` limits the run to the named targets; bad options exit 3."""
    path = write_fleet(tmp_path, ["a", "b"])
    code, out, _ = run(capsys, "apply", path, "--only", "compose-file", "--target", "b")
    assert code == 0
    assert (pinned(tmp_path, "a"), pinned(tmp_path, "b")) == ("a:1", "a:2")
    assert "=== a" not in out
    for args, message in [
        (["--target", "z"], "--target 'z': fleet 'f' has no such target"),
        (["--engine", "ssh://root@x.example"], "--engine cannot be given with a fleet file"),
        (["--report", str(tmp_path / "r.md")], "--report cannot be given with a fleet file"),
        (["--progress", "live"], "--progress live cannot be given with a fleet file"),
    ]:
        code, _, err = run(capsys, "apply", path, *args)
        assert code == 3, err
        assert f"error: {path}: {message}" in err
    code, _, err = run(capsys, "plan", tmp_path / "a.yaml", "--target", "a")
    assert code == 3
    assert "--target is for a fleet file" in err
    assert pinned(tmp_path, "a") == "a:1"


# End to end: a fleet of two targets, the local engine and a second one over SSH
# (deploy/engine/ensure-remote-engine.sh), each a copy of the e2e stack with its own project and
# port. One `apply fleet.yaml` converges both; a second is a no-op (no mutating docker call on
# either engine); a failed target in wave 1 stops wave 2. The wall time of a serial apply
# against one wave is measured by tests/benchmarks/bench_fleet.py, not here.


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


@pytest.mark.docker
def test_a_fleet_of_two_engines_converges_in_one_apply_and_then_does_nothing(
    pair: Pair,
) -> None:
    """A fleet on two engines converges in one apply, and the next apply changes nothing."""
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


@pytest.mark.docker
def test_a_failed_target_in_wave_1_stops_wave_2(pair: Pair) -> None:
    """A target failing in wave 1 stops wave 2 from starting."""
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


@pytest.mark.docker
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
