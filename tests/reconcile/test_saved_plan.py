"""Saved plans with no engine: the plan file's format, its fingerprints, stale and bad plan files.

The mutfx stack (tests/facts/mutfx_stack/) is observed through the fake docker CLI replaying
scenarios/converged/; a copy of that scenario with one container changed stands for a
container changed behind the plan's back. The CLI cases with `--only compose-file` need no
docker at all.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.cli.main import main
from reconciler.errors import PlanFileError, StalePlanError
from reconciler.observe.facts import Snapshot
from reconciler.plans import STEP_ORDER, Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.saved_plan import (
    FORMAT,
    VERSION,
    body_digest,
    fingerprints,
    is_plan_file,
    load_plan,
)
from reconciler.state import load_state
from reconciler.steps import registry
from reconciler.steps.contract import plain as plain_data
from tests.conftest import Stack, run_cli
from tests.facts import fake_docker

STACK = Path(fake_docker.__file__).parent / "mutfx_stack"
API_ID = "742433f6005b7bc48bb8d97ab55050524251165ea4518eb2f9ca668c513b9042"
INSPECT = "05-container-inspect-742433.stdout"


class FakeStack:
    """A private copy of the mutfx stack, observed through a replaying fake docker."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        self.directory = tmp_path / "stack"
        shutil.copytree(STACK, self.directory)
        self.log = fake_docker.on_path("converged", tmp_path, monkeypatch, root=self.directory)
        self.plan_file = tmp_path / "canary.plan"

    @property
    def state_file(self) -> Path:
        return self.directory / "state.yaml"

    @property
    def compose_file(self) -> Path:
        return self.directory / "docker-compose.yml"

    def replay(self, scenario: Path) -> None:
        """From now on, the fake docker answers from `scenario`."""
        fake_docker.install(
            self.tmp / "fake-docker" / "bin", scenario, root=self.directory, log=self.log
        )

    def save(self, **options: Any) -> reconciler.Plan:
        state = load_state(self.state_file)
        return reconcile.save_plan(state, self.plan_file, given="stack/state.yaml", **options)

    def data(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.plan_file.read_text())
        return loaded


@pytest.fixture
def fake_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeStack:
    return FakeStack(tmp_path, monkeypatch)


def stale(result: reconcile.ApplyResult) -> str:
    """The message of a refused apply, which must have changed nothing."""
    assert isinstance(result.error, StalePlanError), result.error
    assert result.error.exit_code == 1
    assert result.applied == ()
    assert [call for call in result.calls if call.mutating] == []
    return str(result.error)


def test_plan_file_holds_the_plan_state_steps_and_fingerprints(fake_stack: FakeStack) -> None:
    """The file: marker and version, the state (absolute and as given), steps, plan, digests."""
    the_plan = fake_stack.save(skip=["checks"])
    data = fake_stack.data()
    assert (data["format"], data["version"]) == (FORMAT, VERSION) == ("reconciler-plan", 2)
    assert list(data)[:2] == ["format", "version"]
    assert list(data)[-1] == "digest"
    assert data["digest"] == body_digest(data)
    assert data["state"] == {
        "path": str(fake_stack.state_file.resolve()),
        "given": "stack/state.yaml",
        "name": "mutfxrb",
    }
    assert data["selection"] == {"only": [], "skip": ["checks"]}
    assert data["steps"] == ["compose-file", "images", "services", "migrations"]
    assert data["plan"] == the_plan.to_dict()
    fingerprints = data["fingerprints"]
    assert fingerprints["algorithm"] == "sha256"
    assert [(f["kind"], f["path"]) for f in fingerprints["files"]] == [
        ("state file", "state.yaml"),
        ("compose file", "docker-compose.yml"),
        ("env file", ".env"),  # compose reads it when present: a new one makes a plan stale
        ("Dockerfile", "Dockerfile"),
    ]
    facts = fingerprints["facts"]
    assert set(facts) == {"compose-file", "images", "services", "migrations"}
    assert set(facts["services"]) == {"api", "db"}
    assert set(facts["images"]) == {"mutfxrb-api:1", "mutfxrb-db:1"}
    digests = [f["digest"] for f in fingerprints["files"] if f["kind"] != "env file"]
    assert [f["digest"] for f in fingerprints["files"] if f["kind"] == "env file"] == ["missing"]
    digests += [d for targets in facts.values() for d in targets.values()]
    assert all(d.startswith("sha256:") and len(d) == 71 for d in digests)
    assert is_plan_file(fake_stack.plan_file)
    assert not is_plan_file(fake_stack.state_file)
    loaded = load_plan(fake_stack.plan_file)
    assert loaded.steps == (Step.COMPOSE_FILE, Step.IMAGES, Step.SERVICES, Step.MIGRATIONS)
    assert loaded.to_dict() == data


def test_fingerprints_do_not_depend_on_when_the_stack_is_observed(fake_stack: FakeStack) -> None:
    """Two plans of the same environment, made apart, have the same fingerprints."""
    fake_stack.save()
    first = fake_stack.data()["fingerprints"]
    fake_stack.save()
    assert fake_stack.data()["fingerprints"] == first


def test_fresh_plan_file_is_applied(fake_stack: FakeStack) -> None:
    """Nothing moved: apply_plan applies it (converged: no change, checks run and pass)."""
    assert fake_stack.save().empty
    result = reconcile.apply_plan(fake_stack.plan_file, lock=False)
    assert result.error is None, result.error
    assert result.applied == ()
    assert [(c.name, c.passed) for c in result.checks] == [
        ("api answers healthy", True),
        ("image size mutfxrb-db:1", True),
    ]


def test_changed_state_file_is_refused_before_docker_is_asked(fake_stack: FakeStack) -> None:
    """A state pinned elsewhere since: refused, naming the state file as given; no docker call."""
    fake_stack.save()
    calls = len(fake_docker.calls(fake_stack.log))
    fake_stack.state_file.write_bytes((STACK / "state-pin-api-2.yaml").read_bytes())
    message = stale(reconcile.apply_plan(fake_stack.plan_file, lock=False))
    assert f"plan file {fake_stack.plan_file} is stale" in message
    assert "state file stack/state.yaml changed since the plan was made" in message
    assert len(fake_docker.calls(fake_stack.log)) == calls
    assert (fake_stack.directory / "docker-compose.yml").read_bytes() == (
        STACK / "docker-compose.yml"
    ).read_bytes()


def test_profiles_changed_since_the_plan_are_refused(fake_stack: FakeStack) -> None:
    """compose.profiles decide which services a plan covers: a plan saved without a profile is
    stale once the state activates one (the state file's fingerprint records them)."""
    fake_stack.save()
    text = fake_stack.state_file.read_text()
    fake_stack.state_file.write_text(
        text.replace("  project: mutfxrb\n", "  project: mutfxrb\n  profiles: [scale-2]\n")
    )
    assert load_state(fake_stack.state_file).compose.profiles == ["scale-2"]
    message = stale(reconcile.apply_plan(fake_stack.plan_file, lock=False))
    assert "state file stack/state.yaml changed since the plan was made" in message


def test_state_file_changed_after_loading_is_refused_under_the_lock(fake_stack: FakeStack) -> None:
    """The check under the lock reads the state file again: a change after loading is seen."""
    fake_stack.save()
    saved = load_plan(fake_stack.plan_file)
    state = load_state(fake_stack.state_file)
    fake_stack.state_file.write_text(fake_stack.state_file.read_text() + "# edited\n")
    message = stale(reconcile.apply(state, steps=saved.steps, saved=saved, lock=False))
    assert "state file stack/state.yaml changed since the plan was made" in message
    assert "compose file" not in message


def test_changed_compose_file_is_refused_naming_it(fake_stack: FakeStack) -> None:
    """An edit of the compose file since the plan: refused, naming that file (once)."""
    fake_stack.save()
    fake_stack.compose_file.write_text(fake_stack.compose_file.read_text() + "# edited by hand\n")
    message = stale(reconcile.apply_plan(fake_stack.plan_file, lock=False))
    assert "compose file docker-compose.yml changed since the plan was made" in message
    assert "state file" not in message
    assert "step compose-file" not in message, "the file is named once, as a file"


def test_changed_dockerfile_is_refused_naming_it(fake_stack: FakeStack) -> None:
    """A Dockerfile the plan builds with changed since: refused, naming it."""
    fake_stack.save()
    dockerfile = fake_stack.directory / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\n# edited\n")
    message = stale(reconcile.apply_plan(fake_stack.plan_file, lock=False))
    assert "Dockerfile Dockerfile changed since the plan was made" in message


def changed_scenario(tmp_path: Path, edit: dict[str, Any]) -> Path:
    """A copy of scenarios/converged/ whose api container's State is updated with `edit`."""
    scenario = tmp_path / "scenario-changed"
    shutil.copytree(fake_docker.SCENARIOS / "converged", scenario)
    containers = json.loads((scenario / INSPECT).read_text())
    (api,) = [c for c in containers if c["Id"] == API_ID]
    api["State"].update(edit)
    (scenario / INSPECT).write_text(json.dumps(containers))
    return scenario


def test_container_changed_behind_the_plans_back_is_refused(fake_stack: FakeStack) -> None:
    """api stopped since the plan: refused, naming the services step and the api target only."""
    fake_stack.save()
    fake_stack.replay(
        changed_scenario(
            fake_stack.tmp, {"Status": "exited", "Running": False, "ExitCode": 137, "Pid": 0}
        )
    )
    message = stale(reconcile.apply_plan(fake_stack.plan_file, lock=False))
    assert "observed facts of step services changed since the plan was made: api." in message
    assert "file" not in message.replace(f"plan file {fake_stack.plan_file}", "")


def test_restarted_container_is_refused(fake_stack: FakeStack) -> None:
    """A container restarted since the plan (new StartedAt) is a change too."""
    fake_stack.save()
    fake_stack.replay(
        changed_scenario(fake_stack.tmp, {"StartedAt": "2026-11-23T10:00:00.000000001Z"})
    )
    message = stale(reconcile.apply_plan(fake_stack.plan_file, lock=False))
    assert "observed facts of step services changed since the plan was made: api" in message


def test_health_check_output_alone_is_not_a_change(fake_stack: FakeStack) -> None:
    """A new health-check log line (it changes every interval) does not make a plan stale."""
    fake_stack.save()
    scenario = changed_scenario(fake_stack.tmp, {})
    containers = json.loads((scenario / INSPECT).read_text())
    for container in containers:
        for entry in container["State"]["Health"]["Log"]:
            entry["Output"] = "a new probe answer"
    (scenario / INSPECT).write_text(json.dumps(containers))
    fake_stack.replay(scenario)
    result = reconcile.apply_plan(fake_stack.plan_file, lock=False)
    assert result.error is None, result.error


def test_tampered_plan_is_refused_as_differing_from_the_plan_made_now(
    fake_stack: FakeStack,
) -> None:
    """Another plan in the file with its digest made again: refused, showing the difference."""
    fake_stack.save()
    data = fake_stack.data()
    data["plan"]["changes"].append(
        {"step": "services", "target": "db", "action": "recreate", "reason": "edited"}
    )
    data["digest"] = body_digest(data)
    fake_stack.plan_file.write_text(json.dumps(data))
    message = stale(reconcile.apply_plan(fake_stack.plan_file, lock=False))
    assert "the plan made now differs from the saved one" in message
    assert "- services recreate db (edited)" in message


def test_plan_for_another_state_or_steps_is_bad_input(fake_stack: FakeStack) -> None:
    """apply(state, saved=...) with another state file or other steps: PlanFileError (exit 3)."""
    fake_stack.save(only=["compose-file"])
    saved = load_plan(fake_stack.plan_file)
    other = fake_stack.directory / "state-pin-api-2.yaml"
    with pytest.raises(PlanFileError, match=r"the plan was made for state .*state\.yaml, not"):
        reconcile.apply(load_state(other), steps=saved.steps, saved=saved, lock=False)
    with pytest.raises(PlanFileError, match="made for steps compose-file, not compose-file, im"):
        reconcile.apply(load_state(fake_stack.state_file), saved=saved, lock=False)
    assert PlanFileError("x").exit_code == 3


def test_secrets_never_reach_the_plan_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_stack: FakeStack
) -> None:
    """A secret in the compose file is in no plan file, even hashed; its change changes a keyed digest."""
    text = fake_stack.compose_file.read_text()
    secret_text = text.replace(
        "      args:\n        ROLE: api\n",
        "      args:\n        ROLE: api\n        DB_PASSWORD: hunter2-{}\n",
    )
    assert secret_text != text
    files = []
    for value in ("first-secret", "other-value"):
        fake_stack.compose_file.write_text(secret_text.format(value))
        monkeypatch.setenv("CANARY_TOKEN", f"token-{value}")
        fake_stack.state_file.write_text(
            (STACK / "state.yaml").read_text() + "sensitive_env: [CANARY_TOKEN]\n"
        )
        fake_stack.save()
        raw = fake_stack.plan_file.read_text()
        assert "hunter2" not in raw
        assert value not in raw
        for secret in (f"hunter2-{value}", f"token-{value}"):
            assert hashlib.sha256(secret.encode()).hexdigest() not in raw
        files.append(fake_stack.data()["fingerprints"])
    assert files[0] != files[1], "a changed secret must make the plan stale"


def write_state(tmp_path: Path) -> Path:
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: 'a:1'\n")
    state = tmp_path / "s.yaml"
    state.write_text("name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n")
    return state


def test_cli_plan_out_then_apply_planfile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan --out prints the plan as plan does (exit 2) and where it saved it; apply applies it.

    Applying the same file again is refused (exit 1): the compose file moved since.
    """
    state = write_state(tmp_path)
    out = tmp_path / "s.plan"
    assert main(["plan", str(state), "--only", "compose-file", "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "compose-file  edit      c.yml:services.a.image" in printed
    assert "Plan: 1 to change, 0 ok." in printed
    assert f"Saved the plan to {out}; apply exactly it with: python -m reconciler apply" in printed
    assert load_plan(out).only == ("compose-file",)
    assert main(["apply", str(out)]) == 0
    assert (tmp_path / "c.yml").read_text() == "services:\n  a:\n    image: 'a:2'\n"
    capsys.readouterr()
    assert main(["apply", str(out)]) == 1
    err = capsys.readouterr().err
    assert "compose file c.yml changed since the plan was made" in err
    assert main(["plan", str(state), "--only", "compose-file", "--out", str(out)]) == 0
    assert load_plan(out).plan["changes"] == []


def test_cli_plan_out_json_keeps_stdout_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --json, stdout is the plan JSON alone; the saved-to line goes to stderr."""
    state = write_state(tmp_path)
    out = tmp_path / "s.plan"
    assert main(["plan", str(state), "--only", "compose-file", "--json", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == load_plan(out).plan
    assert "Saved the plan to" in captured.err


def test_cli_apply_planfile_refused_for_a_changed_state_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply PLANFILE after the state changed: exit 1, the state file named as given."""
    state = write_state(tmp_path)
    out = tmp_path / "s.plan"
    assert main(["plan", str(state), "--only", "compose-file", "--out", str(out)]) == 2
    state.write_text(state.read_text().replace("a:2", "a:3"))
    capsys.readouterr()
    assert main(["apply", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"state file {state} changed since the plan was made" in captured.err
    assert "ok=0 changed=0 failed=1" in captured.out
    assert (tmp_path / "c.yml").read_text() == "services:\n  a:\n    image: 'a:1'\n"


def good_plan(tmp_path: Path) -> dict[str, Any]:
    state = write_state(tmp_path)
    out = tmp_path / "good.plan"
    assert main(["plan", str(state), "--only", "compose-file", "--out", str(out)]) == 2
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"format": "reconciler-plan", "version": 1, "stat',
            ":1:45: not a valid plan file: invalid JSON",
        ),
        ('{"format": "reconciler-plan", "version": 7}', "format version 7 is not supported"),
        ('{"format": "reconciler-plan", "version": 1}', "format version 1 is not supported"),
        (
            '{"format": "reconciler-plan", "version": 2}',
            ": created_at: invalid plan file: Field required",
        ),
        ("\xff", None),
    ],
)
def test_malformed_plan_file_exits_3_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str | None
) -> None:
    """A damaged plan file is bad input: exit 3, naming the file and what is wrong."""
    bad = tmp_path / "bad.plan"
    bad.write_text(text, encoding="latin-1")
    code = main(["apply", str(bad)])
    err = capsys.readouterr().err
    assert code == 3
    assert str(bad) in err
    if expected is not None:
        assert expected in err, err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["fingerprints"].pop("facts"), "fingerprints.facts: invalid plan file"),
        (lambda d: d.update(steps=["compose-file", "dance"]), "unknown step 'dance'"),
        (lambda d: d["state"].update(path="rel/s.yaml"), "the state path must be absolute"),
        (lambda d: d.update(extra=1), "extra: invalid plan file: Extra inputs"),
        (lambda d: d["plan"].update(changes="none"), "plan.changes: invalid plan file"),
    ],
)
def test_invalid_plan_file_content_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, expected: str
) -> None:
    """A plan file with a missing or mistyped part: exit 3, naming the file and the key."""
    data = good_plan(tmp_path)
    edit(data)
    bad = tmp_path / "bad.plan"
    bad.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["apply", str(bad)]) == 3
    err = capsys.readouterr().err
    assert f"{bad}: " in err
    assert expected in err, err


def test_missing_plan_file_from_the_library_is_plan_file_error(tmp_path: Path) -> None:
    """load_plan of a missing file: PlanFileError naming it (an InputError, exit 3)."""
    with pytest.raises(PlanFileError, match=r"nope\.plan: plan file not found"):
        reconciler.load_plan(tmp_path / "nope.plan")


def test_plan_file_options_that_do_not_fit_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan PLANFILE`, and `apply PLANFILE --only ...`: bad input, exit 3, saying why."""
    good_plan(tmp_path)
    out = str(tmp_path / "good.plan")
    capsys.readouterr()
    assert main(["plan", out]) == 3
    assert "this is a plan file: give it to `apply`, not `plan`" in capsys.readouterr().err
    assert main(["apply", out, "--only", "services"]) == 3
    assert "--only/--skip cannot be given with a plan file" in capsys.readouterr().err


def test_unwritable_out_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plan --out into a missing directory: exit 3 naming the path; nothing left behind."""
    state = write_state(tmp_path)
    out = tmp_path / "no-such-dir" / "s.plan"
    assert main(["plan", str(state), "--only", "compose-file", "--out", str(out)]) == 3
    assert f"{out}: --out: plan file: directory {out.parent} does not exist" in (
        capsys.readouterr().err
    )


def test_library_exports() -> None:
    """`import reconciler` users get the saved-plan API."""
    for name in ("save_plan", "apply_plan", "load_plan", "is_plan_file", "SavedPlan"):
        assert name in reconciler.__all__
        assert getattr(reconciler, name) is not None
    assert reconciler.StalePlanError("x", ()).exit_code == 1
    assert len(STEP_ORDER) == 5


@dataclass(frozen=True)
class _FutureFacts:
    """Facts of a step digested whole (as the stack step's are), with a volatile field."""

    status: str
    environment: dict[str, str] = field(default_factory=dict)
    observed_at: float = 0.0


def test_facts_fingerprinted_whole_leave_out_volatile_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Facts digested whole (`contract.plain`): the wall clock ignored, secrets keyed-masked first."""
    whole = [
        replace(
            definition, fingerprint=lambda state, facts, secrets: {"*": plain_data(facts, secrets)}
        )
        if definition.step is Step.CHECKS
        else definition
        for definition in registry.STEPS
    ]
    monkeypatch.setattr(registry, "STEPS", tuple(whole))
    state = load_state(write_state(tmp_path))
    snapshot = Snapshot(
        compose_file=state.compose.file, compose_text="", secrets=frozenset({"hunter2-x"})
    )

    def digest(facts: _FutureFacts) -> str:
        return fingerprints(state, snapshot, {Step.CHECKS: facts}).facts["checks"]["*"]

    base = digest(_FutureFacts("up", {"API_TOKEN": "a-token", "MODE": "x"}, observed_at=1.0))
    assert digest(_FutureFacts("up", {"API_TOKEN": "a-token", "MODE": "x"}, 99.0)) == base
    assert digest(_FutureFacts("up", {"API_TOKEN": "another", "MODE": "x"}, 1.0)) != base
    assert digest(_FutureFacts("down", {"API_TOKEN": "a-token", "MODE": "x"}, 1.0)) != base
    assert digest(_FutureFacts("up", {"API_TOKEN": "a-token", "MODE": "y"}, 1.0)) != base
    secret, plain = digest(_FutureFacts("hunter2-x")), digest(_FutureFacts("up"))
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "another-machine"))
    assert digest(_FutureFacts("hunter2-x")) != secret, "masked first, by a keyed hash"
    assert digest(_FutureFacts("up")) == plain, "no key in a digest of no secret"


# Saved plans on the real engine: `plan --out PLANFILE`, then `apply PLANFILE` or its refusal.
#
# The e2e stack (tests/fixtures/stack): a plan file is refused (exit 1) once the state moved, applied
# when nothing did, refused again once it has been applied, and refused when a container was
# changed behind its back, naming the services step and the service.


def plan_out(stack: Stack, out: Path) -> int:
    """`plan STATE --out OUT`: its exit code; the file must exist and say where it went."""
    done = run_cli("plan", stack.state_file, "--out", out)
    assert done.returncode in {0, 2}, done.stderr
    assert f"Saved the plan to {out}" in done.stdout
    assert json.loads(out.read_text())["format"] == "reconciler-plan"
    return done.returncode


@pytest.mark.docker
def test_plan_file_is_refused_when_stale_and_applied_when_fresh(
    stack: Stack, tmp_path: Path
) -> None:
    """Pinned elsewhere since: refused naming the state file; fresh: converges; then no-op."""
    first = tmp_path / "first.plan"
    assert plan_out(stack, first) == 2
    original = stack.state_file.read_text()
    stack.state_file.write_text(original.replace(stack.image("api"), stack.image("api", "2")))
    compose_before = stack.compose_file.read_bytes()

    refused = run_cli("apply", first)
    assert refused.returncode == 1, refused.stderr
    assert f"state file {stack.state_file} changed since the plan was made" in refused.stderr
    assert stack.compose_file.read_bytes() == compose_before, "a refused plan changes nothing"
    listed = subprocess.run(
        stack.compose_argv("ps", "-aq"), capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == [], "a refused plan starts nothing"

    stack.state_file.write_text(original)
    second = tmp_path / "second.plan"
    assert plan_out(stack, second) == 2
    done = run_cli("apply", second, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    saved = json.loads(second.read_text())["plan"]["changes"]
    assert [(c["step"], c["target"], c["action"]) for c in result["changes"]] == [
        (c["step"], c["target"], c["action"]) for c in saved
    ]
    assert result["summary"]["failed"] == 0

    again = run_cli("apply", stack.state_file)
    assert again.returncode == 0, again.stderr
    assert "No changes" in again.stdout
    assert "changed=0 failed=0" in again.stdout

    reused = run_cli("apply", second)
    assert reused.returncode == 1, "an applied plan is stale: what it was made from moved"
    assert "observed facts of step images changed since the plan was made" in reused.stderr


@pytest.mark.docker
def test_plan_file_is_refused_when_a_container_changed_behind_its_back(
    stack: Stack, tmp_path: Path
) -> None:
    """Converged, planned, then `docker stop` of api: refused, naming services and api."""
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    planned = tmp_path / "converged.plan"
    assert plan_out(stack, planned) == 0

    subprocess.run(stack.compose_argv("stop", "api"), capture_output=True, check=True)
    refused = run_cli("apply", planned)
    assert refused.returncode == 1, refused.stderr
    assert "observed facts of step services changed since the plan was made: api" in (
        refused.stderr
    )
    assert "state file" not in refused.stderr
    status = subprocess.run(
        stack.compose_argv("ps", "-a", "--format", "{{.Service}} {{.State}}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "api exited" in status, "a refused plan starts nothing"
