"""A compose-file step that fails part-way, with no engine: what it wrote is reported as applied,
the rest as failed, and `--rollback-on-failure` puts back exactly the files it wrote.

The step writes the env files, then the compose file, then the other `files:` targets, each
atomically. A `files:` target that cannot be written (its directory read-only, its disk full)
is simulated by refusing `os.replace` for that one name, as `test_failure_boundary` does; the
real read-only mount is in tests/steps/test_compose_file.py.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

import reconciler
from reconciler.cli.main import main
from reconciler.docker.facts import ComposeConfig
from reconciler.errors import ApplyError
from reconciler.plans import Change, Step
from reconciler.reconcile.loop import ApplyResult
from reconciler.runtime import files as files_module
from reconciler.runtime.files import FileWriteError
from reconciler.steps import services
from reconciler.steps.services import ServicesFacts
from tests.conftest import BUSYBOX, STACK, Stack, remove_stack
from tests.conftest import run_cli as run_cli_partial_rollback

# Byte-for-byte matters: CRLF, a comment, no final newline.
COMPOSE = b"services:\r\n  a:\r\n    image: a:1  # pinned by CI\r\n"
DOTENV = b"# defaults\nLOG=info  # quiet\nOTHER=1"
STATE = """\
name: s
compose:
  file: c.yml
services:
  a:
    image: a:2
files:
  .env:
    set: {LOG: debug}
  conf/app.conf:
    content: "workers = 4\\n"
"""
ONLY = (Step.COMPOSE_FILE,)
_REPLACE = os.replace


def layout(tmp_path: Path, state: str = STATE) -> Path:
    """The compose file, its .env and a state editing both and creating conf/app.conf."""
    (tmp_path / "c.yml").write_bytes(COMPOSE)
    (tmp_path / ".env").write_bytes(DOTENV)
    (tmp_path / "conf").mkdir()
    path = tmp_path / "s.yaml"
    path.write_text(state)
    return path


def refusing(*names: str, before: Callable[[], None] = lambda: None) -> Callable[..., None]:
    """os.replace failing as a read-only file system does for targets named `names` (`before`
    runs first: what someone else does meanwhile); every other rename is made."""

    def replace(source: str | Path, target: str | Path, **kwargs: object) -> None:
        if Path(target).name in names:
            before()
            raise OSError(errno.EROFS, "Read-only file system", str(target))
        _REPLACE(source, target)

    return replace


def apply_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, rollback: bool, name: str = "app.conf"
) -> ApplyResult:
    state = reconciler.load_state(layout(tmp_path))
    monkeypatch.setattr(os, "replace", refusing(name))
    return reconciler.apply(state, steps=ONLY, rollback_on_failure=rollback, lock=False)


def targets(changes: tuple[Change, ...]) -> list[str]:
    """The targets of some changes, in order."""
    return [change.target for change in changes]


def test_part_way_failure_rolls_back_exactly_the_files_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.env and c.yml written, conf/app.conf refused: both come back byte for byte, reported."""
    result = apply_refused(tmp_path, monkeypatch, rollback=True)
    assert isinstance(result.error, FileWriteError)
    assert str(result.error).startswith(f"{tmp_path / 'conf' / 'app.conf'}: cannot write: Read-")
    assert targets(result.applied) == [".env:LOG", "c.yml:services.a.image"]
    assert targets(result.failed) == ["conf/app.conf"]
    assert result.rolled_back == (
        "restored c.yml to its previous bytes",
        "restored .env to its previous bytes",
    )
    assert (tmp_path / "c.yml").read_bytes() == COMPOSE
    assert (tmp_path / ".env").read_bytes() == DOTENV
    assert not (tmp_path / "conf" / "app.conf").exists()
    assert result.counts == {"ok": 0, "changed": 2, "failed": 1}
    assert result.calls == (), "no service ran: the rollback asks docker nothing"


def test_without_rollback_the_written_files_keep_their_new_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the flag the two writes stay, and the result says they were applied."""
    result = apply_refused(tmp_path, monkeypatch, rollback=False)
    assert targets(result.applied) == [".env:LOG", "c.yml:services.a.image"]
    assert targets(result.failed) == ["conf/app.conf"]
    assert result.rolled_back == ()
    assert (tmp_path / "c.yml").read_bytes() == COMPOSE.replace(b"a:1", b"a:2")
    assert (tmp_path / ".env").read_bytes() == DOTENV.replace(b"info", b"debug")


def run_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], str, str]:
    """`apply --only compose-file --json --report` of the layout: code, JSON, report, stderr."""
    report = tmp_path / "report.md"
    argv = ["apply", str(tmp_path / "s.yaml"), "--only", "compose-file", "--json"]
    code = main([*argv, "--report", str(report), *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out), report.read_text(), err


def test_cli_report_and_json_list_applied_failed_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --rollback-on-failure: exit 1, 2 done, 1 FAILED, 2 restored, in JSON and report."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    layout(tmp_path)
    monkeypatch.setattr(os, "replace", refusing("app.conf"))
    code, data, report, err = run_cli(tmp_path, capsys, "--rollback-on-failure")
    assert code == 1
    assert "internal error" not in err
    assert [c["target"] for c in data["changes"]] == [".env:LOG", "c.yml:services.a.image"]
    [failed] = data["failed"]
    assert failed["target"] == "conf/app.conf"
    assert "Read-only file system" in failed["error"]
    assert data["rolled_back"] == [
        "restored c.yml to its previous bytes",
        "restored .env to its previous bytes",
    ]
    assert data["summary"] == {"ok": 0, "changed": 2, "failed": 1}
    assert "2 changed, 0 ok, 1 failed." in report
    assert "| compose-file | edit | .env:LOG | LOG is info; state sets LOG=debug | done |" in report
    assert "| c.yml:services.a.image | image is a:1; state pins a:2 | done |" in report
    assert "| compose-file | create | conf/app.conf |" in report
    assert report.count("| FAILED |") == 1
    assert "## Rolled back\n\n- restored c.yml to its previous bytes\n" in report
    assert "## Not rolled back" not in report
    assert (tmp_path / "c.yml").read_bytes() == COMPOSE


def test_cli_without_rollback_reports_that_the_done_changes_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the flag the report says what was done, what failed, and that it stays applied."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    layout(tmp_path)
    monkeypatch.setattr(os, "replace", refusing("app.conf"))
    code, data, report, _ = run_cli(tmp_path, capsys)
    assert code == 1
    assert data["rolled_back"] == []
    assert data["summary"] == {"ok": 0, "changed": 2, "failed": 1}
    assert "2 changed, 0 ok, 1 failed." in report
    assert report.count("| done |") == 2
    assert report.count("| FAILED |") == 1
    assert "## Rolled back" not in report
    assert (
        "## Not rolled back\n\nThe changes marked done above stay applied "
        "(--rollback-on-failure undoes them on failure)." in report
    )


def test_failure_at_the_first_write_applies_and_restores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.env refused first: nothing was written, every change failed, nothing to roll back."""
    result = apply_refused(tmp_path, monkeypatch, rollback=True, name=".env")
    assert result.applied == ()
    assert targets(result.failed) == [
        "c.yml:services.a.image",
        ".env:LOG",
        "conf/app.conf",
    ]
    assert result.rolled_back == ()
    assert (tmp_path / "c.yml").read_bytes() == COMPOSE
    assert (tmp_path / ".env").read_bytes() == DOTENV


def test_new_files_are_removed_and_modes_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target that did not exist is removed; one rewritten with a new mode gets both back."""
    state = STATE.replace(
        "  conf/app.conf:",
        "  conf/new.conf:\n    content: 'fresh\\n'\n"
        "  conf/old.conf:\n    content: 'new\\n'\n    mode: '0600'\n"
        "  conf/app.conf:",
    )
    path = layout(tmp_path, state)
    old = tmp_path / "conf" / "old.conf"
    old.write_bytes(b"old\r\n")
    old.chmod(0o640)
    monkeypatch.setattr(os, "replace", refusing("app.conf"))
    result = reconciler.apply(
        reconciler.load_state(path), steps=ONLY, rollback_on_failure=True, lock=False
    )
    assert targets(result.applied) == [
        ".env:LOG",
        "c.yml:services.a.image",
        "conf/new.conf",
        "conf/old.conf",
        "conf/old.conf:mode",
    ]
    assert result.rolled_back == (
        "restored conf/old.conf to its previous bytes",
        "removed conf/new.conf, which did not exist before",
        "restored c.yml to its previous bytes",
        "restored .env to its previous bytes",
    )
    assert not (tmp_path / "conf" / "new.conf").exists()
    assert old.read_bytes() == b"old\r\n"
    assert stat.S_IMODE(old.stat().st_mode) == 0o640


def test_a_write_that_landed_before_failing_is_rolled_back_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename of conf/app.conf made, its directory's fsync failed: the file is removed."""
    real = files_module._fsync_directory

    def failing(directory: Path) -> None:
        if directory.name == "conf":
            raise OSError(errno.EIO, "Input/output error")
        real(directory)

    monkeypatch.setattr(files_module, "_fsync_directory", failing)
    state = reconciler.load_state(layout(tmp_path))
    result = reconciler.apply(state, steps=ONLY, rollback_on_failure=True, lock=False)
    assert isinstance(result.error, FileWriteError)
    assert str(result.error).endswith(
        "cannot write: Input/output error; its new bytes are in place, but a crash could "
        "still lose them"
    )
    assert targets(result.failed) == ["conf/app.conf"]
    assert result.rolled_back[0] == "removed conf/app.conf, which did not exist before"
    assert not (tmp_path / "conf" / "app.conf").exists()
    assert (tmp_path / "c.yml").read_bytes() == COMPOSE


def test_a_file_changed_since_it_was_written_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone edits .env while the step runs: the rollback keeps their bytes and says so."""
    state = reconciler.load_state(layout(tmp_path))
    theirs = b"LOG=warning\n"

    def edit() -> None:
        (tmp_path / ".env").write_bytes(theirs)

    monkeypatch.setattr(os, "replace", refusing("app.conf", before=edit))
    result = reconciler.apply(state, steps=ONLY, rollback_on_failure=True, lock=False)
    assert result.rolled_back == (
        "restored c.yml to its previous bytes",
        "left .env as it is: it changed since this apply wrote it",
    )
    assert (tmp_path / ".env").read_bytes() == theirs


def test_one_file_that_cannot_be_restored_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """c.yml cannot be put back (now read-only too): .env still is, and the report says both."""
    state = reconciler.load_state(layout(tmp_path))
    refused = {"app.conf"}

    def replace(source: str | Path, target: str | Path, **kwargs: object) -> None:
        if Path(target).name in refused:
            refused.add("c.yml")  # from the first refusal on, the compose file's too
            raise OSError(errno.EROFS, "Read-only file system", str(target))
        _REPLACE(source, target)

    monkeypatch.setattr(os, "replace", replace)
    result = reconciler.apply(state, steps=ONLY, rollback_on_failure=True, lock=False)
    assert result.rolled_back == (
        f"rollback incomplete: c.yml not restored: {tmp_path / 'c.yml'}: cannot write: "
        "Read-only file system; the file kept its previous bytes",
        "restored .env to its previous bytes",
    )
    assert (tmp_path / ".env").read_bytes() == DOTENV


def test_os_error_in_a_step_names_its_file_and_reason_not_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare OSError inside the step is a clean ApplyError: `path: reason`, no `[Errno 13]`."""

    def denied(path: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("reconciler.steps.compose_file.write_atomic", denied)
    state = reconciler.load_state(layout(tmp_path))
    result = reconciler.apply(state, steps=ONLY, lock=False)
    assert type(result.error) is ApplyError
    assert str(result.error) == f"compose-file: {tmp_path / '.env'}: Permission denied"
    assert result.applied == ()


def test_mode_that_cannot_be_set_is_a_clean_failure_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod refused on a target holding its content: the failure names it and the mode."""
    state_text = STATE.replace(
        'content: "workers = 4\\n"', "content: \"workers = 4\\n\"\n    mode: '0600'"
    )
    path = layout(tmp_path, state_text)
    target = tmp_path / "conf" / "app.conf"
    target.write_bytes(b"workers = 4\n")
    target.chmod(0o644)

    def refuse(path: object, mode: int, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(os, "chmod", refuse)
    result = reconciler.apply(
        reconciler.load_state(path), steps=ONLY, rollback_on_failure=True, lock=False
    )
    assert str(result.error) == (
        f"{target}: cannot set its mode to 0600: Operation not permitted; it kept its previous mode"
    )
    assert targets(result.failed) == ["conf/app.conf:mode"]
    assert (tmp_path / "c.yml").read_bytes() == COMPOSE


def test_unusable_lock_directory_still_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply with a file where the lock directory should be: exit 1, report and JSON written."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(blocker / "locks"))
    layout(tmp_path)
    code, data, report, err = run_cli(tmp_path, capsys)
    assert code == 1
    assert data["error_kind"] == "LockError"
    assert f"lock directory {blocker / 'locks'}: Not a directory" in err
    assert "internal error" not in err
    assert "# s: apply FAILED" in report
    assert f"lock directory {blocker / 'locks'}: Not a directory" in report
    assert (tmp_path / "c.yml").read_bytes() == COMPOSE


def test_a_fault_releasing_the_lock_keeps_what_the_run_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flock(LOCK_UN) failing after a converged run: a clean failure that still lists the edit."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    import fcntl  # noqa: PLC0415 - patched for this test only

    real = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_UN:
            raise OSError(errno.EIO, "Input/output error")
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    path = layout(tmp_path, STATE.split("files:", maxsplit=1)[0])
    result = reconciler.apply(reconciler.load_state(path), steps=ONLY)
    assert type(result.error) is ApplyError
    assert str(result.error) == "apply: Input/output error"
    assert targets(result.applied) == ["c.yml:services.a.image"]


def test_full_disk_under_stdout_is_noted_not_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan > /dev/full`: the plan's real exit code, the lost output noted once on stderr."""

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    layout(tmp_path)
    monkeypatch.setattr("sys.stdout", Full())
    code = main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"])
    err = capsys.readouterr().err
    assert code == 2
    assert "No space left on device" in err
    assert "internal error" not in err


def test_a_bug_whose_traceback_cannot_be_saved_is_still_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full /tmp while reporting a bug: the bug's line says the traceback was not saved."""

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("no such thing")

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp")

    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr("reconciler.steps.compose_file.write_atomic", broken)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_space)
    layout(tmp_path)
    code = main(["apply", str(tmp_path / "s.yaml"), "--only", "compose-file"])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "error: internal error (a bug in reconciler): KeyError: 'no such thing'; "
        "its traceback could not be saved: /tmp: No space left on device\n"
    ) in err


def test_input_record_on_a_full_disk_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The converged run's input record failing to write (FileWriteError) warns, never fails."""

    def full(*args: object) -> None:
        raise FileWriteError(tmp_path / "record.json", "No space left on device")

    monkeypatch.setattr("reconciler.steps.services.write_record", full)
    state = reconciler.load_state(layout(tmp_path))
    with structlog.testing.capture_logs() as logs:
        services.record_inputs(state, ServicesFacts(ComposeConfig("p", {})))
    assert [(log["log_level"], log["event"]) for log in logs] == [
        ("warning", "cannot record input digests; file drift of these containers goes unseen")
    ]


# End to end on the real engine, with a real file-system fault: a `files:` target on a tmpfs
# that is read-only, or full, after the compose file and `.env` were written.
#
# The compose-file step fails part-way: its first two writes are reported done, the target
# FAILED; `--rollback-on-failure` puts back exactly those two files, byte for byte. The later
# steps never run, so the engine is only read (no image built, no container made). Needs root
# for `mount`; each mount is removed in a `finally`.


ENV = b"# local overrides\nLOG_LEVEL=info"  # no final newline: kept byte for byte


@pytest.fixture
def rb_stack(docker_engine: None, tmp_path: Path) -> Iterator[Stack]:
    """A private copy of the e2e stack under an `rb-` project, a `.env`, and a `conf/` mount
    point; torn down afterwards (nothing should have been made on the engine)."""
    project = f"rb-{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    shutil.copy2(BUSYBOX, directory / "busybox")
    for name in ("docker-compose.yml", "state.yaml"):
        path = directory / name
        text = path.read_text().replace("rtest-", f"{project}-").replace("rtest", project)
        path.write_text(text.replace("${RTEST_API_PORT:-18080}", "18080"))
    (directory / ".env").write_bytes(ENV)
    (directory / "conf").mkdir()
    made = Stack(directory, project)
    try:
        yield made
    finally:
        remove_stack(made)


@contextmanager
def tmpfs(directory: Path, *, size: str, read_only: bool) -> Iterator[None]:
    """A tmpfs of `size` mounted on `directory` (remounted read-only if asked), then removed."""
    if os.geteuid() != 0:
        message = "mounting a tmpfs needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)]
    subprocess.run(mount, check=True, capture_output=True)
    try:
        if read_only:
            remount = ["mount", "-o", "remount,ro", str(directory)]
            subprocess.run(remount, check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True, capture_output=True)


def declare(stack: Stack, files: str) -> bytes:
    """Pin api to :2, set LOG_LEVEL=debug in .env, add `files` (YAML lines); the compose bytes."""
    state = stack.state_file.read_text().replace(f"{stack.project}-api:1", f"{stack.project}-api:2")
    stack.state_file.write_text(state + "files:\n  .env: {set: {LOG_LEVEL: debug}}\n" + files)
    return stack.compose_file.read_bytes()


def apply(stack: Stack, *extra: str) -> tuple[int, dict[str, Any], str]:
    """`apply --json --report` of the stack: exit code, JSON result, Markdown report."""
    report = stack.directory / "report.md"
    done = run_cli_partial_rollback("apply", stack.state_file, "--json", "--report", report, *extra)
    assert "internal error" not in done.stderr, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout), report.read_text()


def engine_untouched(stack: Stack) -> None:
    """No container of the project, and no :2 image: the steps after compose-file never ran."""
    containers = subprocess.run(
        stack.compose_argv("ps", "-a", "-q"), capture_output=True, text=True, check=True
    )
    assert containers.stdout.strip() == ""
    image = subprocess.run(
        ["docker", "image", "inspect", stack.image("api", "2")], capture_output=True, check=False
    )
    assert image.returncode != 0


@pytest.mark.docker
def test_read_only_target_rolls_back_the_compose_file_and_env(rb_stack: Stack) -> None:
    """EROFS on conf/app.conf: 2 done, 1 FAILED, both written files restored byte for byte."""
    compose = declare(rb_stack, '  conf/app.conf: {content: "workers = 4\\n"}\n')
    with tmpfs(rb_stack.directory / "conf", size="64k", read_only=True):
        code, result, report = apply(rb_stack, "--rollback-on-failure")
        assert os.listdir(rb_stack.directory / "conf") == []
    assert code == 1
    assert [c["target"] for c in result["changes"]] == [
        ".env:LOG_LEVEL",
        "docker-compose.yml:services.api.image",
    ]
    [failed] = result["failed"]
    assert failed["target"] == "conf/app.conf"
    assert failed["error"] == (
        f"{rb_stack.directory / 'conf' / 'app.conf'}: cannot write: Read-only file system; "
        "the file kept its previous bytes"
    )
    assert result["rolled_back"] == [
        "restored docker-compose.yml to its previous bytes",
        "restored .env to its previous bytes",
    ]
    assert result["summary"]["changed"] == 2
    assert result["summary"]["failed"] == 1
    assert rb_stack.compose_file.read_bytes() == compose
    assert (rb_stack.directory / ".env").read_bytes() == ENV
    assert "## Rolled back\n\n- restored docker-compose.yml to its previous bytes\n" in report
    assert report.count("| done |") == 2
    assert report.count("| FAILED |") == 1
    engine_untouched(rb_stack)


@pytest.mark.docker
def test_full_target_without_rollback_reports_what_stays_applied(rb_stack: Stack) -> None:
    """ENOSPC on a 100 KB target in a 64 KB tmpfs: the two writes stay, and the report says so."""
    (rb_stack.directory / "big.conf").write_bytes(b"x" * 100_000 + b"\n")
    compose = declare(rb_stack, "  conf/app.conf: {source: big.conf}\n")
    with tmpfs(rb_stack.directory / "conf", size="64k", read_only=False):
        code, result, report = apply(rb_stack)
        assert os.listdir(rb_stack.directory / "conf") == [], "no temporary file left"
    assert code == 1
    assert [c["target"] for c in result["changes"]] == [
        ".env:LOG_LEVEL",
        "docker-compose.yml:services.api.image",
    ]
    [failed] = result["failed"]
    assert "No space left on device" in failed["error"]
    assert result["rolled_back"] == []
    assert rb_stack.compose_file.read_bytes() == compose.replace(
        f"{rb_stack.project}-api:1".encode(), f"{rb_stack.project}-api:2".encode()
    )
    assert (rb_stack.directory / ".env").read_bytes() == ENV.replace(b"info", b"debug")
    assert "## Not rolled back" in report
    engine_untouched(rb_stack)
