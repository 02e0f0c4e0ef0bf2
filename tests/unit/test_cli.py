"""CLI contract: exit codes for bad input, and --json on stdout with logs on stderr."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from reconciler.cli.main import main


def test_bad_arguments_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown options are invalid input: exit 3, not argparse's 2 (which means changes pending)."""
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--no-such-option"])
    assert caught.value.code == 3
    assert "unrecognized arguments" in capsys.readouterr().err


def test_unknown_step_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--only with a step that does not exist is invalid input naming the valid steps."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "imagez"]) == 3
    err = capsys.readouterr().err
    assert "unknown step 'imagez'" in err
    assert "compose-file, images, services, migrations, checks" in err


def test_missing_state_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state path that does not exist: exit 3 and the path in the message."""
    assert main(["apply", str(tmp_path / "nope.yaml")]) == 3
    assert "nope.yaml: state file not found" in capsys.readouterr().err


def test_plan_only_compose_file_json_needs_no_docker(tmp_path: Path) -> None:
    """plan --only compose-file --json: contract JSON on stdout, exit 2, file untouched."""
    compose = tmp_path / "c.yml"
    compose.write_bytes(b"services:\r\n  a:\r\n    image: 'a:1'  # keep\r\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "plan",
            str(tmp_path / "s.yaml"),
            "--only",
            "compose-file",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    payload = json.loads(done.stdout)
    assert [
        (c["step"], c["target"], c["action"], c["before"], c["after"]) for c in payload["changes"]
    ] == [("compose-file", "c.yml:services.a.image", "edit", "a:1", "a:2")]
    assert set(payload["changes"][0]) >= {"step", "target", "action", "reason"}
    assert compose.read_bytes() == b"services:\r\n  a:\r\n    image: 'a:1'  # keep\r\n"


def test_apply_only_compose_file_edits_minimally_and_then_is_in_sync(tmp_path: Path) -> None:
    """apply --only compose-file changes just the value, keeps the mode; a second apply is a no-op."""
    compose = tmp_path / "c.yml"
    original = (
        b"# ops file\r\nservices:\r\n  a:\r\n    image: 'a:1'  # keep\r\n    ports: [8080:8080]"
    )
    compose.write_bytes(original)
    compose.chmod(0o640)
    (tmp_path / "s.yaml").write_text(
        "name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n"
    )
    assert main(["apply", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert compose.read_bytes() == original.replace(b"'a:1'", b"'a:2'")
    assert compose.stat().st_mode & 0o777 == 0o640
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert not list(tmp_path.glob(".c.yml.*")), "no temp file left behind"


def test_main_leaves_no_global_state(tmp_path: Path) -> None:
    """In-process main() restores stdout/stderr, signal handlers and structlog's defaults."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    streams = (sys.stdout, sys.stderr)
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert (sys.stdout, sys.stderr) == streams
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert not structlog.is_configured()


def test_main_keeps_the_callers_structlog_configuration(tmp_path: Path) -> None:
    """A caller's own structlog configuration is the same after an in-process main()."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    processors = [structlog.processors.KeyValueRenderer()]
    structlog.configure(processors=processors, cache_logger_on_first_use=True)
    before = structlog.get_config()
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert structlog.get_config() == before


def test_unexpected_error_is_one_line_naming_a_bug_and_a_traceback_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug prints one line naming it as a bug and the file holding its traceback; exit 1."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("reconciler.compose.edit.pin_images", broken)
    monkeypatch.setattr("reconciler.steps.compose_file.pin_images", broken)
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "internal error (a bug in reconciler): ZeroDivisionError" in lines[0]
    assert "Traceback" not in err
    saved = Path(lines[0].rsplit("traceback written to ", 1)[1])
    assert "ZeroDivisionError" in saved.read_text()
    saved.unlink()


def test_non_utf8_compose_file_exits_3_at_the_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A compose file that is not UTF-8 is refused at the bad byte's line and column."""
    compose = tmp_path / "c.yml"
    compose.write_bytes(b"services:\n  a:\n    image: caf\xe9\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 3
    assert f"{compose}:3:15: not UTF-8: byte 0xe9" in capsys.readouterr().err
    assert compose.read_bytes() == b"services:\n  a:\n    image: caf\xe9\n"
