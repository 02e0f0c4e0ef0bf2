"""End to end: the apply lock held BY a remote engine (reconciler.locks.engine), over real ssh.

Applies are held open deterministically by a gate of the test's own: the state's migration
(`apply: dd if=/gate/fifo`) blocks reading a FIFO baked into the stack's image until the test
writes to it, and its `check` passes once the test touched /gate/done. No sleep races: the test
waits for conditions on the engine (the lock container, the blocked `dd`), each with a bound.

(a) two applies from two processes with different host-local lock directories: the second is
refused (exit 1) naming the first; it succeeds once the first is done; a SIGKILLed holder's
lock vanishes with it, and a stale lock container is taken over with a warning.
(b) the connection dropped mid-apply: an sshd of the test's own (tests/e2e/sshd_front.py, port
RTEST_API_PORT+23) in front of the same engine is killed with its sessions while an apply
waits at the gate: exit 1 with a clear message, the compose file intact, no lock left; after
the sshd restarts the next apply converges and the one after has no changes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

import reconciler
from reconciler.locks.engine import LOCK_IMAGE, lock_container_name
from reconciler.reconcile import loop as reconcile
from tests.conftest import RECONCILER, Stack, make_stack, remove_stack, run_cli
from tests.e2e.sshd_front import SshdFront

pytestmark = pytest.mark.docker

MIGRATION = """migrations:
  - name: gate
    service: db
    check: ["/bin/test", "-f", "/gate/done"]
    apply: ["/bin/dd", "if=/gate/fifo", "of=/dev/null"]
    timeout: 300
"""
# The stack's image, plus the gate: a directory and a FIFO in it.
GATE_STEPS = 'RUN ["/bin/mkdir", "/gate"]\nRUN ["/bin/mkfifo", "/gate/fifo"]\n'
BOUND = 90.0  # seconds any awaited condition may take


def _port(offset: int) -> int:
    return int(os.environ.get("RTEST_API_PORT", "18080")) + offset


def docker(url: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`docker -H url ARGS` through the shared sshd (the test's own view of the engine)."""
    return subprocess.run(
        ["docker", "-H", url, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        input=input,
    )


def wait_for(
    what: str,
    condition: Callable[[], bool],
    bound: float = BOUND,
    running: Apply | None = None,
) -> float:
    """Seconds until `condition()` held; fails after `bound` s, or if `running` ended."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started >= bound:
            so_far = "".join(running.output()) if running is not None else ""
            raise AssertionError(f"{what}: not within {bound:g} s\n{so_far}")
        if running is not None and running.poll() is not None:
            code, out, err = running.ended()
            raise AssertionError(f"{what}: the apply ended (exit {code}):\n{out}{err}")
        time.sleep(0.1)
    return time.monotonic() - started


def lock_labels(url: str, project: str) -> dict[str, str] | None:
    """The labels of the project's lock container on the engine; None when there is none."""
    done = docker(url, "container", "inspect", lock_container_name(project))
    if done.returncode != 0:
        assert "no such container" in done.stderr.lower(), done.stderr
        return None
    labels: dict[str, str] = json.loads(done.stdout)[0]["Config"]["Labels"]
    return labels


def db_container(url: str, project: str) -> str:
    label = f"label=com.docker.compose.project={project}"
    ids = docker(url, "container", "ls", "-q", "--filter", label, "--filter", "name=db").stdout
    assert ids.strip(), f"no db container of {project}"
    return ids.split()[0]


def gate_waiting(url: str, project: str) -> bool:
    """True when a migration `dd` blocks on the gate in the db container."""
    label = f"label=com.docker.compose.project={project}"
    ids = docker(url, "container", "ls", "-q", "--filter", label, "--filter", "name=db").stdout
    if not ids.strip():
        return False
    # busybox dd rewrites its argv (`if /gate/fifo`): the path alone is matched.
    return "/gate/fifo" in docker(url, "container", "top", ids.split()[0]).stdout


def open_gate(url: str, project: str) -> None:
    """Let a blocked migration finish and pass its check."""
    cid = db_container(url, project)
    assert docker(url, "exec", cid, "/bin/touch", "/gate/done").returncode == 0
    release_gate_reader(url, project)


def release_gate_reader(url: str, project: str) -> None:
    """Write to the gate once: ends the `dd`s reading it (opening blocks until one reads)."""
    cid = db_container(url, project)
    wrote = docker(url, "exec", "-i", cid, "/bin/dd", "of=/gate/fifo", input="go\n")
    assert wrote.returncode == 0, wrote.stderr


def close_gate(url: str, project: str) -> None:
    """Make the migration due again (its check fails until the gate opens)."""
    cid = db_container(url, project)
    assert docker(url, "exec", cid, "/bin/rm", "-f", "/gate/done").returncode == 0


class Apply:
    """`python -m reconciler apply` running in the background, its output going to files (a
    pipe nobody reads while it runs would fill up and block it)."""

    def __init__(self, state_file: Path, env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.out = (logs / "stdout").open("w+")
        self.err = (logs / "stderr").open("w+")
        self.process = subprocess.Popen(
            [*RECONCILER, "apply", str(state_file), "--log-format", "json"],
            stdout=self.out,
            stderr=self.err,
            text=True,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> tuple[str, str]:
        self.out.seek(0)
        self.err.seek(0)
        return self.out.read(), self.err.read()

    def poll(self) -> int | None:
        return self.process.poll()

    def ended(self, bound: float = BOUND) -> tuple[int, str, str]:
        """Its exit code, stdout and stderr once it ended (within `bound` s)."""
        code = self.process.wait(bound)
        return (code, *self.output())

    def kill(self) -> None:
        """SIGKILL it if it still runs (a test that failed half-way)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def env_with_lock_dir(directory: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    return {**(base or os.environ), "RECONCILER_LOCK_DIR": str(directory)}


def remote_stack(tmp_path: Path, url: str, port: int) -> Stack:
    created = make_stack(tmp_path, port=port, engine=url)
    dockerfile = created.directory / "Dockerfile"
    text = dockerfile.read_text()
    marker = 'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    assert marker in text
    dockerfile.write_text(text.replace(marker, marker + GATE_STEPS))
    created.state_file.write_text(created.state_file.read_text() + MIGRATION)
    return created


def remove_remote_stack(url: str, stack: Stack) -> None:
    remove_stack(stack, url)
    docker(url, "container", "rm", "--force", lock_container_name(stack.project))


@pytest.fixture
def lock_stack(remote_engine: str, tmp_path: Path) -> Iterator[Stack]:
    created = remote_stack(tmp_path / "a", remote_engine, _port(2))
    try:
        yield created
    finally:
        remove_remote_stack(remote_engine, created)


def test_a_second_apply_is_refused_by_the_engine_lock_naming_its_holder(
    remote_engine: str, lock_stack: Stack, tmp_path: Path
) -> None:
    url, stack = remote_engine, lock_stack
    first_env = env_with_lock_dir(tmp_path / "locks-first")
    second_env = env_with_lock_dir(tmp_path / "locks-second")

    # 1. The first apply takes the engine's lock and is held at the gate.
    first = Apply(stack.state_file, first_env, tmp_path / "first")
    try:
        wait_for(
            "the first apply's lock",
            lambda: lock_labels(url, stack.project) is not None,
            running=first,
        )
        labels = lock_labels(url, stack.project)
        assert labels is not None
        assert labels["reconciler.lock.pid"] == str(first.pid)
        assert labels["reconciler.lock.project"] == stack.project

        # 2. A second apply from another process and lock directory: refused, naming it.
        second = run_cli("apply", stack.state_file, env=second_env)
        assert second.returncode == 1, second.stdout + second.stderr
        said = second.stdout + second.stderr
        holder = (
            f"another apply holds the lock of project '{stack.project}' on engine {url}: "
            f"{labels['reconciler.lock.user']}@{labels['reconciler.lock.host']} "
            f"pid {first.pid} since {labels['reconciler.lock.started']}"
        )
        assert holder in said, said
        assert lock_labels(url, stack.project) == labels, "the refusal left the lock alone"

        # 3. The first one finishes; the second one then succeeds.
        wait_for(
            "the first apply at the gate",
            lambda: gate_waiting(url, stack.project),
            300,
            running=first,
        )
        open_gate(url, stack.project)
        code, out, err = first.ended()
        assert code == 0, out + err
    finally:
        first.kill()
    assert lock_labels(url, stack.project) is None, "released at exit"
    again = run_cli("apply", stack.state_file, env=second_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout

    # 4. A SIGKILLed holder: its lock ends with it; the next apply takes it.
    close_gate(url, stack.project)
    killed = Apply(stack.state_file, first_env, tmp_path / "killed")
    try:
        wait_for(
            "the killed apply at the gate",
            lambda: gate_waiting(url, stack.project),
            running=killed,
        )
        labels = lock_labels(url, stack.project)
        assert labels is not None
        assert labels["reconciler.lock.pid"] == str(killed.pid)
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.ended(30)[0] == -signal.SIGKILL
    finally:
        killed.kill()
    gone = wait_for(
        "the killed holder's lock to end", lambda: lock_labels(url, stack.project) is None, 30
    )
    print(f"\nSIGKILLed holder: its engine lock gone after {gone:.2f} s")
    open_gate(url, stack.project)  # the killed apply's migration is left reading the gate
    after = run_cli("apply", stack.state_file, env=second_env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "holds the lock" not in after.stdout + after.stderr

    # 5. A stale lock container (stopped, its holder gone): taken over with a warning.
    stale = docker(
        url, "container", "run", "--name", lock_container_name(stack.project),
        "--label", "reconciler.lock.user=ghost", "--label", "reconciler.lock.host=gone",
        "--label", "reconciler.lock.pid=4242",
        "--label", "reconciler.lock.started=2026-01-01T00:00:00+00:00",
        LOCK_IMAGE, "/busybox", "true",
    )  # fmt: skip
    assert stale.returncode == 0, stale.stderr
    took = run_cli("apply", stack.state_file, env=second_env)
    assert took.returncode == 0, took.stdout + took.stderr
    warnings = [json.loads(line) for line in took.stderr.splitlines() if line.startswith("{")]
    [takeover] = [w for w in warnings if w["event"].startswith("took over the engine lock")]
    assert takeover["holder"] == "ghost@gone pid 4242 since 2026-01-01T00:00:00+00:00"
    assert lock_labels(url, stack.project) is None

    # 6. The cost of the lock against this engine: docker calls and seconds.
    state = reconciler.load_state(stack.state_file)
    adapter = reconcile.make_adapter(state)
    started = time.monotonic()
    with reconcile._project_lock(state, adapter, lock=True, timeout=0):
        acquired = time.monotonic() - started
        calls = len(adapter.calls)
        started = time.monotonic()
    released = time.monotonic() - started
    print(
        f"engine lock: acquire {calls} docker call(s) {acquired:.2f} s, release "
        f"{len(adapter.calls) - calls} docker call(s) {released:.2f} s"
    )
    assert calls == 1
    assert len(adapter.calls) == calls


@pytest.fixture
def front(remote_engine: str, tmp_path: Path) -> Iterator[SshdFront]:
    """An sshd of this test's own on RTEST_API_PORT+23, in front of the remote engine."""
    sshd = SshdFront(tmp_path / "sshd", _port(23))
    sshd.start()
    try:
        yield sshd
    finally:
        sshd.stop()


def test_a_connection_dropped_mid_apply_fails_cleanly_and_the_next_apply_converges(
    remote_engine: str, front: SshdFront, tmp_path: Path
) -> None:
    url = remote_engine  # the test's own view of the engine, through the shared sshd
    stack = remote_stack(tmp_path / "b", front.url, _port(3))
    env = env_with_lock_dir(tmp_path / "locks-b", front.env())
    try:
        # 1. An apply through the test's sshd, held at the gate (everything before it done).
        dropped = Apply(stack.state_file, env, tmp_path / "dropped")
        try:
            wait_for(
                "the apply at the gate",
                lambda: gate_waiting(url, stack.project),
                300,
                running=dropped,
            )
            assert lock_labels(url, stack.project) is not None
            compose_before = stack.compose_file.read_bytes()

            # 2. The connection drops: sshd and all its sessions killed.
            front.stop()
            code, out, err = dropped.ended()
        finally:
            dropped.kill()
        said = out + err
        assert code == 1, said
        # The engine's connection is named as the cause, not the migration's own exit code.
        assert f"error: ssh to the engine at root@127.0.0.1:{front.port} failed: " in said, said
        assert "(connection lost or refused)" in said, said
        assert "migration gate failed" not in said, said
        assert "Traceback" not in said
        for secret in ("PRIVATE KEY", "AAAA", "SHA256:"):
            assert secret not in said, secret
        key = Path("/var/lib/reconciler-remote/ssh/client_ed25519").read_text()
        assert not any(line in said for line in key.splitlines()[1:-1] if len(line) > 20)
        # Nothing corrupted: the compose file as it was (fully written), valid YAML.
        assert stack.compose_file.read_bytes() == compose_before
        assert YAML(typ="safe").load(compose_before)["services"]
        # No lock left behind: it ended with its connection.
        wait_for("the dropped lock to end", lambda: lock_labels(url, stack.project) is None, 30)

        # 3. sshd back: the next apply converges (the migration), the one after has no changes.
        front.start()
        release_gate_reader(url, stack.project)  # the dropped apply's dd still reads the gate
        again = Apply(stack.state_file, env, tmp_path / "again")
        try:
            wait_for(
                "the next apply at the gate",
                lambda: gate_waiting(url, stack.project),
                running=again,
            )
            open_gate(url, stack.project)
            code, out, err = again.ended()
        finally:
            again.kill()
        assert code == 0, out + err
        assert re.search(r"^migrations\s+upgrade\s+gate\b", out, re.MULTILINE), out
        last = run_cli("apply", stack.state_file, env=env)
        assert last.returncode == 0, last.stdout + last.stderr
        assert "No changes" in last.stdout
    finally:
        remove_remote_stack(url, stack)
