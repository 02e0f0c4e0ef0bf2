"""The project lock cannot be turned against its user: planted links and files, other users'
or open directories, long names and unusable paths all end as a clean `LockError` (exit 1)
or a safe lock, never a followed link, a truncated file or an `OSError`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import reconciler
from reconciler.cli.main import _exit_code, main
from reconciler.errors import LockError
from reconciler.locks.engine import lock_container_name
from reconciler.locks.local import LockHeldError, lock_directory, lock_file_name, project_lock
from reconciler.plans import Step

VICTIM_BYTES = b"precious bytes of another file\n"
NOBODY = 65534
LONG = "p" * 300


@pytest.fixture
def no_lock_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test picks its lock directory itself, and reaches the local engine only."""
    for name in ("RECONCILER_LOCK_DIR", "XDG_RUNTIME_DIR", "DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)


def own_dir(path: Path, mode: int = 0o700) -> Path:
    """A directory of this user's with exactly `mode`."""
    path.mkdir()
    path.chmod(mode)
    return path


def victim(tmp_path: Path) -> Path:
    """A file an attacker would like truncated."""
    target = tmp_path / "victim"
    target.write_bytes(VICTIM_BYTES)
    return target


def refusal(directory: Path, project: str = "shop") -> str:
    """The LockError message taking the project's lock in `directory` raises."""
    with pytest.raises(LockError) as caught, project_lock(project, directory=directory):
        pytest.fail("the lock was taken")
    assert caught.value.exit_code == 1
    return str(caught.value)


def write_state(tmp_path: Path) -> Path:
    """A state pinning a:2 over a compose file at a:1 (compose-file step only: no docker)."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    state = tmp_path / "s.yaml"
    state.write_text("name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n")
    return state


@pytest.mark.usefixtures("no_lock_env")
def test_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """A lock file planted as a symlink to a victim is not followed: refused, victim intact."""
    locks = own_dir(tmp_path / "locks")
    target = victim(tmp_path)
    (locks / "shop.lock").symlink_to(target)
    message = refusal(locks)
    assert "is a symlink" in message
    assert str(locks / "shop.lock") in message
    assert target.read_bytes() == VICTIM_BYTES


@pytest.mark.usefixtures("no_lock_env")
def test_dangling_symlink_is_refused_and_nothing_created(tmp_path: Path) -> None:
    """A symlink to a missing file is refused too; its target is not created."""
    locks = own_dir(tmp_path / "locks")
    (locks / "shop.lock").symlink_to(tmp_path / "created-by-lock")
    assert "is a symlink" in refusal(locks)
    assert not (tmp_path / "created-by-lock").exists()


@pytest.mark.usefixtures("no_lock_env")
def test_lock_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A lock file of another uid is refused naming that uid, and left as it was."""
    locks = own_dir(tmp_path / "locks")
    planted = locks / "shop.lock"
    planted.write_bytes(VICTIM_BYTES)
    os.chown(planted, NOBODY, NOBODY)
    assert f"owned by uid {NOBODY}" in refusal(locks)
    assert planted.read_bytes() == VICTIM_BYTES


@pytest.mark.usefixtures("no_lock_env")
def test_fifo_lock_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO where the lock file should be is refused at once as not a regular file."""
    locks = own_dir(tmp_path / "locks")
    os.mkfifo(locks / "shop.lock")
    assert "is not a regular file" in refusal(locks)


@pytest.mark.usefixtures("no_lock_env")
def test_hard_linked_lock_file_is_refused(tmp_path: Path) -> None:
    """A lock file hard-linked to another file is refused; the other file keeps its bytes."""
    locks = own_dir(tmp_path / "locks")
    target = victim(tmp_path)
    os.link(target, locks / "shop.lock")
    assert "hard links" in refusal(locks)
    assert target.read_bytes() == VICTIM_BYTES


@pytest.mark.usefixtures("no_lock_env")
def test_lock_directory_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock directory pre-created by another uid is refused naming it and that uid."""
    locks = own_dir(tmp_path / "locks")
    os.chown(locks, NOBODY, NOBODY)
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(locks))
    with pytest.raises(LockError) as caught, project_lock("shop"):
        pass
    assert f"lock directory {locks}: owned by uid {NOBODY}" in str(caught.value)
    assert not (locks / "shop.lock").exists()


@pytest.mark.usefixtures("no_lock_env")
def test_group_writable_lock_directory_is_refused(tmp_path: Path) -> None:
    """A named lock directory writable by its group is refused, naming its mode."""
    locks = own_dir(tmp_path / "locks", 0o770)
    assert "mode 0770" in refusal(locks)


@pytest.mark.usefixtures("no_lock_env")
def test_named_directory_readable_by_others_is_accepted(tmp_path: Path) -> None:
    """A directory the user names may be readable by others (0755): only write is refused."""
    locks = own_dir(tmp_path / "locks", 0o755)
    with project_lock("shop", directory=locks):
        assert (locks / "shop.lock").is_file()


@pytest.mark.usefixtures("no_lock_env")
def test_default_directory_open_to_the_group_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory reconciler picks itself ($XDG_RUNTIME_DIR/reconciler) must be 0700."""
    runtime = own_dir(tmp_path / "run")
    own_dir(runtime / "reconciler", 0o750)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(LockError, match=r"mode 0750 .* needs mode 0700"), project_lock("shop"):
        pass


@pytest.mark.usefixtures("no_lock_env")
def test_regular_file_where_the_directory_should_be_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regular file at the lock directory's path is refused as not a directory, unchanged."""
    planted = victim(tmp_path)
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(planted))
    with pytest.raises(LockError) as caught, project_lock("shop"):
        pass
    assert str(caught.value) == f"lock directory {planted}: is not a directory"
    assert planted.read_bytes() == VICTIM_BYTES


@pytest.mark.usefixtures("no_lock_env")
def test_symlinked_lock_directory_is_refused(tmp_path: Path) -> None:
    """A lock directory that is a symlink (even to a directory of this user's) is refused."""
    real = own_dir(tmp_path / "real")
    (tmp_path / "locks").symlink_to(real)
    assert "is a symlink" in refusal(tmp_path / "locks")
    assert list(real.iterdir()) == []


@pytest.mark.usefixtures("no_lock_env")
def test_unusable_directory_path_is_a_lock_error_not_an_os_error(tmp_path: Path) -> None:
    """A lock directory under a regular file (ENOTDIR, even as root) is a LockError naming it."""
    path = victim(tmp_path) / "locks"
    with pytest.raises(LockError) as caught, project_lock("shop", directory=path):
        pass
    assert str(caught.value) == f"lock directory {path}: Not a directory"
    assert isinstance(caught.value.__cause__, NotADirectoryError)


@pytest.mark.usefixtures("no_lock_env")
def test_300_character_project_name_takes_a_lock(tmp_path: Path) -> None:
    """A 300-character project name gets a bounded, hashed lock file and locks normally."""
    locks = own_dir(tmp_path / "locks")
    with project_lock(LONG, directory=locks):
        (lock,) = locks.iterdir()
    assert lock.name == lock_file_name(LONG)
    assert re.fullmatch(r"p{60}-[0-9a-f]{16}\.lock", lock.name)


@pytest.mark.usefixtures("no_lock_env")
def test_two_long_names_get_two_locks(tmp_path: Path) -> None:
    """Two long names sharing their readable prefix still get distinct files and locks."""
    locks = own_dir(tmp_path / "locks")
    with project_lock(LONG + "a", directory=locks), project_lock(LONG + "b", directory=locks):
        assert len(list(locks.iterdir())) == 2


@pytest.mark.usefixtures("no_lock_env")
def test_unsafe_characters_are_hashed_into_one_file_in_the_directory(tmp_path: Path) -> None:
    """A name with `/` (or NUL) locks a file directly in the lock directory, never elsewhere."""
    locks = own_dir(tmp_path / "locks")
    with project_lock("../../etc/x", directory=locks), project_lock("a\0b", directory=locks):
        names = sorted(path.name for path in locks.iterdir())
    assert all(path.is_file() for path in locks.iterdir())
    assert len(names) == 2
    assert "etc-x-" in names[0] + names[1]


@pytest.mark.usefixtures("no_lock_env")
def test_short_names_keep_their_lock_file_name() -> None:
    """Short ordinary names (a fleet target's `project@engine-digest` too) are unchanged."""
    assert lock_file_name("shop") == "shop.lock"
    assert (
        lock_file_name("p-a@ssh-root-one.example-0123abcd")
        == "p-a@ssh-root-one.example-0123abcd.lock"
    )
    assert lock_file_name("x" * 128) == "x" * 128 + ".lock"
    assert lock_file_name("x" * 129) != "x" * 129 + ".lock"


@pytest.mark.usefixtures("no_lock_env")
def test_engine_lock_container_name_is_bounded_for_a_long_project() -> None:
    """The engine lock's container name stays short and valid for a 300-character project."""
    assert lock_container_name("shop") == "reconciler-lock-shop"
    long_a, long_b = lock_container_name(LONG + "a"), lock_container_name(LONG + "b")
    assert long_a != long_b
    for name in (long_a, long_b):
        assert len(name) <= 100
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name)


@pytest.mark.usefixtures("no_lock_env")
def test_xdg_runtime_dir_is_used_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With XDG_RUNTIME_DIR set, locks live in its `reconciler` directory, created 0700."""
    runtime = own_dir(tmp_path / "run")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert lock_directory() == runtime / "reconciler"
    with project_lock("shop"):
        assert (runtime / "reconciler" / "shop.lock").is_file()
    assert (runtime / "reconciler").stat().st_mode & 0o777 == 0o700


@pytest.mark.usefixtures("no_lock_env")
def test_lock_dir_override_wins_over_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RECONCILER_LOCK_DIR still wins over XDG_RUNTIME_DIR."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(own_dir(tmp_path / "run")))
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    assert lock_directory() == tmp_path / "locks"


@pytest.mark.usefixtures("no_lock_env")
def test_per_user_tmp_directory_without_a_usable_xdg_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An XDG_RUNTIME_DIR that is missing or relative is ignored: /tmp/reconciler-locks-<uid>."""
    default = Path("/tmp") / f"reconciler-locks-{os.getuid()}"
    assert lock_directory() == default
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert lock_directory() == default
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative")
    assert lock_directory() == default


@pytest.mark.usefixtures("no_lock_env")
def test_holder_record_is_written_to_the_lock_file_only(tmp_path: Path) -> None:
    """Holding writes the holder in the lock file; release empties it; nothing else changes."""
    locks = own_dir(tmp_path / "locks")
    target = victim(tmp_path)
    with project_lock("shop", directory=locks):
        assert b'"pid": ' in (locks / "shop.lock").read_bytes()
    assert (locks / "shop.lock").read_bytes() == b""
    assert target.read_bytes() == VICTIM_BYTES


@pytest.mark.usefixtures("no_lock_env")
def test_lock_error_maps_to_exit_1() -> None:
    """The CLI's one mapping gives LockError exit 1 (a failure, not bad input)."""
    assert _exit_code(LockError("lock directory /x: is not a directory")) == 1


@pytest.mark.usefixtures("no_lock_env")
def test_unusable_lock_directory_is_a_failed_apply_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apply with an unusable lock directory returns a failed result (LockError), nothing written."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(victim(tmp_path) / "locks"))
    state = reconciler.load_state(write_state(tmp_path))
    result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,))
    assert isinstance(result.error, LockError)
    assert (tmp_path / "c.yml").read_text() == "services:\n  a:\n    image: a:1\n"


@pytest.mark.usefixtures("no_lock_env")
def test_unusable_lock_directory_fails_down_with_a_lock_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """down raises LockError (before any docker call) when the lock directory is unusable."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(victim(tmp_path) / "locks"))
    state = reconciler.load_state(write_state(tmp_path))
    with pytest.raises(LockError, match="Not a directory"):
        reconciler.down(state)


@pytest.mark.usefixtures("no_lock_env")
@pytest.mark.parametrize("command", ["apply", "down"])
def test_cli_exits_1_naming_the_lock_path_without_a_traceback(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`apply` and `down` exit 1 with one error line naming the lock directory, no bug report."""
    path = victim(tmp_path) / "locks"
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(path))
    extra = ["--only", "compose-file"] if command == "apply" else []
    assert main([command, str(write_state(tmp_path)), *extra]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "internal error" not in err
    assert f"lock directory {path}: Not a directory" in err


# One apply at a time per project: held locks fail or wait, dead holders are taken over.


HOLD = """
import sys, time
from pathlib import Path
from reconciler.locks.local import project_lock
with project_lock(sys.argv[1], directory=Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def hold(project: str, directory: Path, seconds: float) -> subprocess.Popen[str]:
    """A separate process holding the lock for `seconds`; returns once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, project, str(directory), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_holder_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    """With timeout 0 the second apply fails immediately; the message names pid, host and start."""
    holder = hold("shop", tmp_path, 30)
    try:
        with pytest.raises(LockHeldError) as caught, project_lock("shop", directory=tmp_path):
            pass
        assert holder.poll() is None, "refused only once the holder let go: it waited"
        message = str(caught.value)
        assert f"pid {holder.pid} on {socket.gethostname()} since 20" in message
        assert caught.value.exit_code == 1
    finally:
        holder.kill()
        holder.wait()


def test_waits_up_to_the_timeout_for_the_holder(tmp_path: Path) -> None:
    """A lock released within --lock-timeout is acquired after waiting."""
    holder = hold("shop", tmp_path, 1.0)
    try:
        with project_lock("shop", directory=tmp_path, timeout=30):
            pass
    finally:
        holder.wait()


def test_lock_of_a_killed_holder_is_taken_over_and_logged(tmp_path: Path) -> None:
    """SIGKILL leaves holder details behind; the next apply takes the lock and logs the takeover."""
    holder = hold("shop", tmp_path, 30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with capture_logs() as logs, project_lock("shop", directory=tmp_path):
        pass
    takeovers = [
        entry for entry in logs if entry["event"] == "took over a lock left by a dead process"
    ]
    assert takeovers
    assert takeovers[0]["pid"] == holder.pid


def test_projects_do_not_share_a_lock(tmp_path: Path) -> None:
    """Locks are per compose project: another project is not blocked."""
    holder = hold("shop", tmp_path, 30)
    try:
        with project_lock("other", directory=tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_cli_apply_exits_1_when_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apply` on a locked project exits 1 and says who holds the lock; nothing is written."""
    locks = tmp_path / "locks"
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(locks))
    compose = tmp_path / "c.yml"
    compose.write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\ncompose:\n  file: c.yml\n  project: shop\nservices:\n  a:\n    image: a:2\n"
    )
    holder = hold("shop", locks, 30)
    try:
        assert main(["apply", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 1
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert compose.read_text() == "services:\n  a:\n    image: a:1\n"
    finally:
        holder.kill()
        holder.wait()
    assert main(["apply", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert "a:2" in compose.read_text()
