"""One failure boundary: whatever goes wrong inside a step ends as a failed result, reported."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog

import reconciler
from reconciler.cli.main import main
from reconciler.docker.facts import ComposeConfig
from reconciler.errors import ApplyError, InternalError, os_error_text
from reconciler.locks.local import project_lock
from reconciler.plans import Step
from reconciler.reconcile.loop import make_adapter
from reconciler.runtime.files import FileWriteError
from reconciler.state import State
from reconciler.steps import services
from reconciler.steps.services import ServicesFacts
from tests.conftest import Stack, run_cli


def write_pin(tmp_path: Path) -> Path:
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    state = tmp_path / "s.yaml"
    state.write_text("name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n")
    return state


_REPLACE = os.replace


def refuse_replace(source: str | Path, target: str | Path, **kwargs: object) -> None:
    """os.replace refusing the compose file c.yml only (reports are written atomically too)."""
    if Path(target).name == "c.yml":
        raise PermissionError(13, "Permission denied", "c.yml")
    _REPLACE(source, target)


def test_os_error_in_a_step_is_a_failed_result_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PermissionError while writing the compose file ends as a failed ApplyResult, not a raise."""
    state = reconciler.load_state(write_pin(tmp_path))
    monkeypatch.setattr(os, "replace", refuse_replace)
    result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,), lock=False)
    assert isinstance(result.error, ApplyError)
    assert "Permission denied" in str(result.error)
    assert [c.target for c in result.failed] == [
        f"{tmp_path / 'c.yml'}:services.a.image"
    ] or result.failed
    assert (tmp_path / "c.yml").read_text() == "services:\n  a:\n    image: a:1\n"


def test_bug_in_a_step_is_an_internal_error_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A programming error inside a step comes back as InternalError carrying its traceback."""
    state = reconciler.load_state(write_pin(tmp_path))

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("no such thing")

    monkeypatch.setattr("reconciler.steps.compose_file.write_atomic", broken)
    result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,), lock=False)
    assert isinstance(result.error, InternalError)
    assert "KeyError" in result.error.traceback_text
    assert result.to_dict()["error_kind"] == "InternalError"


def test_cli_writes_the_report_and_exits_1_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI still writes the report for a step's OSError, prints one error line, exits 1."""
    state = write_pin(tmp_path)
    monkeypatch.setattr(os, "replace", refuse_replace)
    report = tmp_path / "report.md"
    code = main(["apply", str(state), "--only", "compose-file", "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'c.yml'}: cannot write: Permission denied; the file kept its "
        "previous bytes"
    ]
    assert "apply FAILED" in report.read_text()


def test_held_lock_is_a_failed_result_not_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held by another apply comes back as a failed result (exit 1), like any failure."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    state = reconciler.load_state(write_pin(tmp_path))
    with project_lock(reconciler.reconcile.loop.lock_name(state)):
        result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,))
    assert isinstance(result.error, reconciler.LockHeldError)
    assert result.error.exit_code == 1
    assert (tmp_path / "c.yml").read_text() == "services:\n  a:\n    image: a:1\n"


# --- an OSError names its file and the errno's meaning, never `[Errno N]` ------------------


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
    ],
)
def test_os_error_in_a_step_names_the_file_and_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, meaning: str
) -> None:
    """ENOSPC, EROFS, EACCES escaping a step: `step: FILE: meaning`, no `[Errno N]`."""
    state = reconciler.load_state(write_pin(tmp_path))
    target = tmp_path / "data" / "app.env"

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr("reconciler.steps.compose_file.write_atomic", failing)
    result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,), lock=False)
    assert isinstance(result.error, ApplyError)
    assert str(result.error) == f"compose-file: {target}: {meaning}"
    assert "Errno" not in str(result.error)


def test_os_error_text_names_both_files_a_descriptor_or_only_the_reason() -> None:
    """Two paths (a rename) are both named; a descriptor says so; no file leaves the meaning alone."""
    rename = OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a/x.tmp", None, "/b/x")
    assert os_error_text(rename) == "/a/x.tmp -> /b/x: Invalid cross-device link"
    assert os_error_text(OSError(errno.EIO, "Input/output error", 7)) == (
        "file descriptor 7: Input/output error"
    )
    assert os_error_text(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device"
    )
    assert os_error_text(OSError(errno.EROFS, "")) == os.strerror(errno.EROFS)


def test_cli_names_the_file_of_an_os_error_that_reaches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError the library did not wrap: `error: FILE: meaning`, exit 1, no internal error."""
    state = write_pin(tmp_path)

    def failing(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system", "/srv/reports/r.md")

    monkeypatch.setattr("reconciler.cli.main._run", failing)
    assert main(["apply", str(state), "--only", "compose-file"]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: /srv/reports/r.md: Read-only file system"
    ]


def test_a_bug_report_that_cannot_be_saved_still_reports_the_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full /tmp while saving a traceback: the internal error is told, and why no file."""
    state = write_pin(tmp_path)

    def broken(*args: object, **kwargs: object) -> int:
        raise KeyError("no such thing")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/reconciler-bug-x.txt")

    monkeypatch.setattr("reconciler.cli.main._run", broken)
    monkeypatch.setattr("reconciler.cli.main.tempfile.NamedTemporaryFile", full)
    assert main(["apply", str(state), "--only", "compose-file"]) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: internal error (a bug in reconciler): KeyError")
    assert line.endswith(
        "its traceback could not be saved: /tmp/reconciler-bug-x.txt: No space left on device"
    )


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device", "/state/reconciler"),
        FileWriteError(Path("/state/reconciler/inputs-p.json"), "No space left on device"),
    ],
)
def test_a_record_that_cannot_be_written_only_warns(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """A full disk under the input-digest record: a warning naming the file, never a failed apply."""

    def failing(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("reconciler.steps.services.write_record", failing)
    facts = ServicesFacts(config=ComposeConfig("p", {}), config_hashes={}, containers=())
    with structlog.testing.capture_logs() as logs:
        services.record_inputs(
            State.model_validate({"name": "s", "compose": {"file": "c.yml"}}), facts
        )
    (warning,) = logs
    assert warning["log_level"] == "warning"
    assert "/state/reconciler" in warning["error"]
    assert "No space left on device" in warning["error"]
    assert "Errno" not in warning["error"]


# End to end on the real engine: the idempotence sequence and a service that never gets healthy.
#
# The e2e stack (tests/fixtures/stack) is three busybox services built offline FROM scratch, with
# healthchecks, depends_on: service_healthy and a published port.


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m reconciler` with JSON logs, capturing both streams."""
    return run_cli(*args)


def plan_json(stack: Stack) -> tuple[int, list[dict[str, Any]]]:
    """Exit code and changes of `plan --json`."""
    done = cli("plan", stack.state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def container_ids(stack: Stack) -> dict[str, str]:
    """service -> container id of the stack's project."""
    ids = subprocess.run(
        stack.compose_argv("ps", "-aq"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            '{{index .Config.Labels "com.docker.compose.service"}} {{.Id}}',
            *ids,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


@pytest.mark.docker
def test_idempotence_sequence(stack: Stack) -> None:
    """plan -> apply -> plan (empty) -> apply (no mutating call) -> retag -> plan -> apply (only that service)."""
    # 1. plan: changes pending, exit 2; nothing built or started yet.
    code, changes = plan_json(stack)
    assert code == 2
    assert {(c["step"], c["action"]) for c in changes} == {
        ("images", "build"),
        ("services", "create"),
    }
    assert sorted(c["target"] for c in changes if c["step"] == "services") == [
        "api",
        "db",
        "worker",
    ]

    # 2. apply converges, and the published port answers.
    done = cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert "ok=3 changed=6 failed=0" in done.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/health", timeout=5) as response:
        assert json.load(response) == {"role": "api", "status": "healthy"}

    # 3. plan: in sync, exit 0.
    code, changes = plan_json(stack)
    assert (code, changes) == (0, [])

    # 4. apply again: nothing changed, and not one mutating docker command, counted by the adapter.
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded
    assert not result.changed
    assert adapter.calls, "observation must have asked docker"
    assert adapter.mutating_calls == []
    done = cli("apply", stack.state_file)
    assert done.returncode == 0
    assert "No changes" in done.stdout
    assert "ok=9 changed=0 failed=0" in done.stdout

    before_ids = container_ids(stack)
    before_bytes = stack.compose_file.read_bytes()

    # 5. change one service's tag in the state.
    state_text = stack.state_file.read_text()
    stack.state_file.write_text(state_text.replace(stack.image("api"), stack.image("api", "2")))

    # 6. plan shows exactly that edit and that one service.
    code, changes = plan_json(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", "docker-compose.yml:services.api.image", "edit"),
        ("images", stack.image("api", "2"), "build"),
        ("services", "api", "recreate"),
    ]
    assert changes[0]["before"] == stack.image("api")
    assert changes[0]["after"] == stack.image("api", "2")
    assert f'-    image: "{stack.image("api")}"' in changes[0]["diff"]
    assert f'+    image: "{stack.image("api", "2")}"' in changes[0]["diff"]
    assert stack.compose_file.read_bytes() == before_bytes, "plan must not touch the file"

    # 7. apply: only api is recreated; the others keep their container IDs.
    done = cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    after_ids = container_ids(stack)
    assert after_ids["db"] == before_ids["db"]
    assert after_ids["worker"] == before_ids["worker"]
    assert after_ids["api"] != before_ids["api"]
    expected = before_bytes.replace(
        f'image: "{stack.image("api")}"'.encode(), f'image: "{stack.image("api", "2")}"'.encode()
    )
    assert stack.compose_file.read_bytes() == expected
    assert plan_json(stack) == (0, [])


@pytest.mark.docker
def test_never_healthy_service_fails_within_deadline(stack: Stack) -> None:
    """A healthcheck that never passes fails apply (exit 1) in time and prints the health output:
    the wait ends on the failed check, before its deadline by reconciler's own account."""
    text = stack.compose_file.read_text()
    worker_check = (
        '      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]\n'
    )
    head, _, tail = text.rpartition(worker_check)
    sick = '      test: ["CMD", "sh", "-c", "echo worker cannot reach the queue; exit 1"]\n      retries: 2\n'
    stack.compose_file.write_text(head + sick + tail)
    state_text = stack.state_file.read_text()
    stack.state_file.write_text(state_text + "    health_timeout: 40\n")

    done = cli("apply", stack.state_file, "--verbose")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "worker (unhealthy)" in done.stderr
    assert "last health check output: worker cannot reach the queue" in done.stderr
    assert "log tail of" in done.stderr
    assert "failed=1" in done.stdout
    # The wait ended at the sample that saw the check fail, not by waiting out the deadline.
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    worker = [e for e in events if e["event"] == "service health" and e["service"] == "worker"]
    assert worker[-1]["failed"] is True, worker
    assert worker[-1]["state"] == "unhealthy", worker
    assert not [e for e in events if e["event"] == "all services ready"]
    # How long the wait took, as the error reports it (its own clock: no build or start time).
    waited = re.search(r"not ready after ([0-9.]+) s: worker \(unhealthy\)", done.stderr)
    assert waited is not None, done.stderr
    assert float(waited[1]) < 40, f"the wait ran past the 40 s deadline: {waited[0]}"
