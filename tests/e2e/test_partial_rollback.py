"""End to end on the real engine, with a real file-system fault: a `files:` target on a tmpfs
that is read-only, or full, after the compose file and `.env` were written.

The compose-file step fails part-way: its first two writes are reported done, the target
FAILED; `--rollback-on-failure` puts back exactly those two files, byte for byte. The later
steps never run, so the engine is only read (no image built, no container made). Needs root
for `mount`; each mount is removed in a `finally`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX, STACK, Stack, remove_stack, run_cli

pytestmark = pytest.mark.docker

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
    done = run_cli("apply", stack.state_file, "--json", "--report", report, *extra)
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
