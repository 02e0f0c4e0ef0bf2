"""One failure boundary: whatever goes wrong inside a step ends as a failed result, reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import reconciler
from reconciler.cli import main
from reconciler.errors import ApplyError, InternalError
from reconciler.lock import project_lock
from reconciler.plans import Step


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
    with project_lock(reconciler.reconcile.lock_name(state)):
        result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,))
    assert isinstance(result.error, reconciler.LockHeldError)
    assert result.error.exit_code == 1
    assert (tmp_path / "c.yml").read_text() == "services:\n  a:\n    image: a:1\n"
