"""The one reader and the one writer (reconciler/files.py) against hostile paths: special
files, symlinks out of the root and in loops, oversize and non-UTF-8 files, device nodes,
planted symlinks, concurrent writers and other programs' temp files."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.errors import InputError
from reconciler.runtime.files import (
    FileWriteError,
    check_output,
    read_bytes,
    read_optional_bytes,
    read_text,
    write_atomic,
)


def finishes(action: Callable[[], object], seconds: float = 5.0) -> BaseException | None:
    """Run `action` in a thread; fail the test if it is still blocked after `seconds`."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked: the reader waited on a special file"
    return raised[0] if raised else None


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A bound AF_UNIX socket in the test's directory."""
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer is refused by its type at once, never waited on."""
    fifo = tmp_path / "state.yaml"
    os.mkfifo(fifo)
    error = finishes(lambda: read_bytes(fifo, "state file"))
    assert isinstance(error, InputError)
    assert "state file is a FIFO" in str(error)
    assert str(fifo) in str(error)


def test_dev_zero_is_refused_before_reading(tmp_path: Path) -> None:
    """/dev/zero (endless bytes) is refused as a character device, not read to the cap."""
    error = finishes(lambda: read_bytes(Path("/dev/zero"), "baseline"))
    assert isinstance(error, InputError)
    assert "baseline is a character device, not a regular file" in str(error)


def test_socket_and_directory_are_refused(tmp_path: Path, unix_socket: Path) -> None:
    """A socket and a directory are each refused naming their kind."""
    with pytest.raises(InputError, match="env file is a socket"):
        read_bytes(unix_socket, "env file")
    with pytest.raises(InputError, match="env file is a directory"):
        read_bytes(tmp_path, "env file")


def test_symlink_out_of_the_root_is_refused_before_reading(tmp_path: Path) -> None:
    """A link whose target lies outside the root is refused, its target's text never shown."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.env").write_text("DB_PASSWORD=hunter2hunter2\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / ".env").symlink_to(outside / "secret.env")
    with pytest.raises(InputError, match="outside the state's root") as raised:
        read_bytes(root / ".env", "env file", root=root)
    assert "hunter2" not in str(raised.value)
    assert read_bytes(root / ".env", "env file") == b"DB_PASSWORD=hunter2hunter2\n"


def test_symlink_inside_the_root_is_read(tmp_path: Path) -> None:
    """A link to a file inside the root reads its target."""
    (tmp_path / "real.env").write_text("A=1\n")
    (tmp_path / ".env").symlink_to("real.env")
    assert read_text(tmp_path / ".env", "env file", root=tmp_path) == "A=1\n"


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    """A link to itself is bad input naming the loop, with or without a root."""
    loop = tmp_path / "compose.yml"
    loop.symlink_to("compose.yml")
    for root in (None, tmp_path):
        with pytest.raises(InputError, match="symlink loop"):
            read_bytes(loop, "compose file", root=root)


def test_oversize_file_names_the_cap(tmp_path: Path) -> None:
    """A 50 MB (sparse) file is refused with the cap of its kind in the message."""
    big = tmp_path / "state.yaml"
    with big.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    with pytest.raises(InputError, match="larger than its cap of 1 MiB"):
        read_bytes(big, "state file")


def test_non_utf8_is_reported_at_line_and_column(tmp_path: Path) -> None:
    """A byte that is not UTF-8 is bad input at its file:line:column."""
    path = tmp_path / "Dockerfile"
    path.write_bytes(b"FROM scratch\nLABEL x=caf\xe9\n")
    with pytest.raises(InputError, match=r"Dockerfile:2:12: not UTF-8: byte 0xe9"):
        read_text(path, "Dockerfile")


def test_missing_file_is_left_to_the_caller(tmp_path: Path) -> None:
    """A missing file raises FileNotFoundError (or None from the optional reader)."""
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "nope", "env file")
    assert read_optional_bytes(tmp_path / "nope", "env file") is None


def test_nul_byte_in_a_path_is_bad_input(tmp_path: Path) -> None:
    """A NUL byte in a path is bad input for the reader and the writer alike."""
    with pytest.raises(InputError, match="NUL byte"):
        read_bytes(tmp_path / "a\0b", "compose file")
    with pytest.raises(InputError, match="NUL byte"):
        write_atomic(tmp_path / "a\0b", b"x")


def test_writer_never_replaces_a_device_node(tmp_path: Path) -> None:
    """A character device at the target is refused and stays a device."""
    device = tmp_path / "plan.json"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    with pytest.raises(InputError, match="character device; only a regular file"):
        write_atomic(device, b"{}", kind="plan file")
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    with pytest.raises(InputError, match="character device"):
        check_output(device, "plan file")


def test_writer_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    """Without a root a symlink is refused; out of the root too; the victim keeps its bytes."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    root = tmp_path / "root"
    root.mkdir()
    planted = root / "report.md"
    planted.symlink_to(victim)
    with pytest.raises(InputError, match="symlink"):
        write_atomic(planted, b"report")
    with pytest.raises(InputError, match="outside the state's root"):
        write_atomic(planted, b"report", root=root)
    assert victim.read_bytes() == b"precious"
    assert planted.is_symlink()


def test_writer_keeps_a_link_inside_the_root(tmp_path: Path) -> None:
    """A symlink inside the root is written through: the target changes, the link stays."""
    (tmp_path / "real.yml").write_bytes(b"old\n")
    os.chmod(tmp_path / "real.yml", 0o640)
    (tmp_path / "compose.yml").symlink_to("real.yml")
    write_atomic(tmp_path / "compose.yml", b"new\n", root=tmp_path)
    assert (tmp_path / "compose.yml").is_symlink()
    assert (tmp_path / "real.yml").read_bytes() == b"new\n"
    assert stat.S_IMODE((tmp_path / "real.yml").stat().st_mode) == 0o640


def test_writer_refuses_the_runs_own_inputs(tmp_path: Path) -> None:
    """An output onto one of the run's inputs (same file, or a link to it) is refused."""
    state = tmp_path / "state.yaml"
    state.write_bytes(b"name: x\n")
    (tmp_path / "alias.yaml").symlink_to(state)
    with pytest.raises(InputError, match="one of this run's own inputs"):
        check_output(state, "plan file", inputs=[state])
    with pytest.raises(InputError, match="one of this run's own inputs"):
        write_atomic(tmp_path / "alias.yaml", b"{}", root=tmp_path, inputs=[state])
    with pytest.raises(InputError, match="one of this run's own inputs"):
        write_atomic(state, b"{}", kind="plan file", inputs=[state])
    assert state.read_bytes() == b"name: x\n"


def test_check_output_refuses_a_directory_and_a_missing_parent(tmp_path: Path) -> None:
    """An output path that is a directory, or in no directory, is refused before any change."""
    with pytest.raises(InputError, match="is a directory"):
        check_output(tmp_path, "report")
    with pytest.raises(InputError, match="does not exist"):
        check_output(tmp_path / "no" / "report.md", "report")
    check_output(tmp_path / "report.md", "report")


def test_other_programs_temp_files_survive(tmp_path: Path) -> None:
    """Files that look like temp files (even matching a `*` target's pattern) are not touched."""
    others = [tmp_path / ".backup.db.tmp", tmp_path / ".notes.2024.tmp", tmp_path / ".*.1.tmp"]
    for other in others:
        other.write_bytes(b"keep me")
    write_atomic(tmp_path / "*", b"star")
    assert (tmp_path / "*").read_bytes() == b"star"
    assert all(other.read_bytes() == b"keep me" for other in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["*", ".backup.db.tmp", ".notes.2024.tmp", ".*.1.tmp"]
    )


def test_failed_write_removes_only_its_own_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails at the rename leaves the old bytes and no file of its own behind."""
    target = tmp_path / "app.env"
    target.write_bytes(b"A=1\n")
    (tmp_path / ".app.env.other.tmp").write_bytes(b"someone else's")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(FileWriteError, match="No space left on device"):
        write_atomic(target, b"A=2\n")
    assert target.read_bytes() == b"A=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".app.env.other.tmp", "app.env"]


def test_concurrent_writers_of_one_file_never_collide(tmp_path: Path) -> None:
    """Two threads writing one file 100 times each: no error, whole content, no leftovers."""
    target = tmp_path / "shared.env"
    errors: list[BaseException] = []

    def writer(data: bytes) -> None:
        try:
            for _ in range(100):
                write_atomic(target, data)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(bytes([65 + n]) * 4096,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() in (b"A" * 4096, b"B" * 4096)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.env"]


def test_new_file_mode_and_kept_mode(tmp_path: Path) -> None:
    """A new file gets 0644 (or the mode asked); a rewrite keeps the file's mode."""
    path = tmp_path / "a"
    write_atomic(path, b"1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o600)
    write_atomic(path, b"2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, b"3", mode=0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
