"""The engine lock's logic (reconciler.locks.engine) on a fake engine, and the adapter's lock
calls on a fake docker CLI: held -> refused naming the holder; stale -> taken over; released on
error; the create never retried."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from ruamel.yaml import YAML
from structlog.testing import capture_logs

import reconciler
from reconciler.docker.adapter import DockerAdapter, LockFacts, LockImageMissing, LockNameInUse
from reconciler.errors import (
    ApplyError,
    LockHeldError,
    LockLostError,
    PermanentDockerError,
    StopRequested,
    TransientDockerError,
)
from reconciler.locks.engine import (
    LOCK_IMAGE,
    STARTING_GRACE,
    engine_lock,
    is_remote,
    lock_container_name,
)
from reconciler.reconcile import loop as reconcile
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from reconciler.state.engine import parse_engine
from tests.conftest import RECONCILER, Stack, make_stack, remove_stack, run_cli
from tests.sshd_front import SshdFront

ENGINE = "ssh://deploy@core.example"
NAME = lock_container_name("shop")
OTHER = {
    "reconciler.lock.user": "alice",
    "reconciler.lock.host": "laptop",
    "reconciler.lock.pid": "4242",
    "reconciler.lock.started": "2026-11-23T10:00:00+00:00",
}
HOLDER = "alice@laptop pid 4242 since 2026-11-23T10:00:00+00:00"


@dataclass
class FakeHeld:
    container_id: str
    running: bool = True


@dataclass
class FakeEngine:
    """An engine with containers by name; the name reservation is what a real create does."""

    containers: dict[str, LockFacts] = field(default_factory=dict)
    has_image: bool = True
    start_error: Exception | None = None
    release_error: Exception | None = None
    stop: StopToken = field(default_factory=StopToken)
    starts: int = 0
    removed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    imported: list[tuple[str, list[str]]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def lock_start(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        command: Sequence[str],
        *,
        timeout: float = 60.0,
    ) -> FakeHeld:
        self.starts += 1
        if self.start_error is not None:
            raise self.start_error
        if not self.has_image:
            raise LockImageMissing(f"No such image: {image}")
        if name in self.containers:
            raise LockNameInUse(f'Conflict. The container name "/{name}" is already in use')
        self.labels = dict(labels)
        self.containers[name] = LockFacts(f"mine{self.starts}", "running", dict(labels))
        return FakeHeld(f"mine{self.starts}")

    def lock_inspect(self, name: str) -> LockFacts | None:
        return self.containers.get(name)

    def lock_remove(self, container_id: str, *, force: bool = False) -> bool:
        for name, found in list(self.containers.items()):
            if found.id == container_id:
                if found.status == "running" and not force:
                    raise PermanentDockerError("You cannot remove a running container")
                del self.containers[name]
                self.removed.append(container_id)
                return True
        return False

    def lock_release(self, held: FakeHeld, *, timeout: float = 30.0) -> None:
        if self.release_error is not None:
            raise self.release_error
        self.released.append(held.container_id)
        self.containers = {n: f for n, f in self.containers.items() if f.id != held.container_id}

    def import_rootfs(
        self, tarball: Path, reference: str, labels: dict[str, str], *, engine_lock: bool = False
    ) -> None:
        assert engine_lock
        with tarfile.open(tarball) as tar:
            self.imported.append((reference, tar.getnames()))
        self.has_image = True


class Clock:
    """A fake monotonic clock that `sleep` advances, running `on_sleep` callbacks in order."""

    def __init__(self, *on_sleep: Callable[[], None]) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.on_sleep = list(on_sleep)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep.pop(0)()


def hold(engine: FakeEngine, clock: Clock, timeout: float = 0.0) -> Any:
    return engine_lock(
        engine, "shop", engine=ENGINE, timeout=timeout, sleep=clock.sleep, clock=clock
    )


def test_a_free_lock_is_taken_with_the_holder_in_its_labels_and_released() -> None:
    """A free engine lock is taken with the holder in its labels and released afterwards."""
    engine, clock = FakeEngine(), Clock()
    with hold(engine, clock) as guard:
        assert engine.containers[NAME].status == "running"
        guard.check()
    assert engine.starts == 1
    assert engine.released == ["mine1"]
    assert NAME not in engine.containers
    assert {key.rpartition(".")[2] for key in engine.labels} == {
        "project",
        "user",
        "host",
        "pid",
        "started",
        "version",
    }
    assert engine.labels["reconciler.lock.project"] == "shop"


def test_a_held_lock_is_refused_at_once_naming_the_holder() -> None:
    """A lock held by another apply is refused at once, naming the holder and the engine."""
    engine = FakeEngine({NAME: LockFacts("theirs", "running", OTHER)})
    clock = Clock()
    with pytest.raises(LockHeldError) as refused, hold(engine, clock):
        pytest.fail("entered a held lock")
    assert str(refused.value) == (
        f"another apply holds the lock of project 'shop' on engine {ENGINE}: {HOLDER} "
        f"(container {NAME})"
    )
    assert refused.value.exit_code == 1
    assert engine.starts == 1
    assert engine.removed == []
    assert engine.released == []
    assert engine.containers[NAME].id == "theirs"
    assert clock.slept == []


def test_a_held_lock_is_waited_for_up_to_the_timeout() -> None:
    """With a timeout, a held lock is waited for and taken once its holder leaves."""
    engine = FakeEngine({NAME: LockFacts("theirs", "running", OTHER)})

    def release() -> None:
        del engine.containers[NAME]

    clock = Clock(lambda: None, release)  # the holder leaves during the second wait
    with hold(engine, clock, timeout=10):
        assert engine.containers[NAME].id == "mine3"
    assert clock.slept == [1.0, 1.0]
    assert engine.removed == []


def test_a_lock_held_past_the_timeout_is_refused_saying_how_long_it_waited() -> None:
    """A lock still held at the timeout is refused, saying how long it waited and who holds it."""
    engine = FakeEngine({NAME: LockFacts("theirs", "running", OTHER)})
    clock = Clock()
    with (
        pytest.raises(LockHeldError, match=r"after waiting 3 s: alice@laptop pid 4242"),
        hold(engine, clock, timeout=3),
    ):
        pytest.fail("entered a held lock")
    assert clock.now == pytest.approx(3.0)
    assert engine.containers[NAME].id == "theirs"


@pytest.mark.parametrize("status", ["exited", "dead"])
def test_a_stale_lock_is_removed_by_id_and_taken_over_with_a_warning(status: str) -> None:
    """A stale lock container is removed by its ID and taken over, with a warning."""
    engine = FakeEngine({NAME: LockFacts("theirs", status, OTHER)})
    with capture_logs() as logs, hold(engine, Clock()):
        assert engine.containers[NAME].id == "mine2"
    assert engine.removed == ["theirs"]
    assert engine.released == ["mine2"]
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["event"] == "took over the engine lock of a holder that is gone"
    assert warning["holder"] == HOLDER
    assert warning["state"] == status


def test_a_created_lock_is_stale_only_if_still_created_after_the_grace() -> None:
    """A lock container left `created` is stale only once the starting grace has passed."""
    engine = FakeEngine({NAME: LockFacts("theirs", "created", OTHER)})
    clock = Clock()
    with hold(engine, clock):
        pass
    assert clock.slept == [STARTING_GRACE]
    assert engine.removed == ["theirs"]


def test_a_created_lock_that_starts_within_the_grace_is_held() -> None:
    """A lock container that starts within the grace counts as held."""
    engine = FakeEngine({NAME: LockFacts("theirs", "created", OTHER)})

    def started() -> None:
        engine.containers[NAME] = LockFacts("theirs", "running", OTHER)

    clock = Clock(started)
    with pytest.raises(LockHeldError, match=re.escape(HOLDER)), hold(engine, clock):
        pytest.fail("entered a held lock")
    assert engine.removed == []


def test_the_lock_is_released_when_the_block_fails() -> None:
    """The engine lock is released when the block it guards raises."""
    engine = FakeEngine()
    with pytest.raises(RuntimeError, match="boom"), hold(engine, Clock()):
        raise RuntimeError("boom")
    assert engine.released == ["mine1"]
    assert engine.containers == {}


def test_the_lock_is_released_on_a_stop_request() -> None:
    """The engine lock is released when a stop request ends the block."""
    engine = FakeEngine()
    engine.stop.request(2)
    with pytest.raises(StopRequested), hold(engine, Clock()):
        engine.stop.check("step services")
    assert engine.released == ["mine1"]


def test_a_create_that_may_have_started_is_never_retried() -> None:
    """A connection lost during the create fails the run: the create is not attempted again."""
    engine = FakeEngine(start_error=TransientDockerError("ssh: connection reset"))
    clock = Clock()
    with pytest.raises(TransientDockerError), hold(engine, clock, timeout=30):
        pytest.fail("entered a lock never taken")
    assert engine.starts == 1
    assert clock.slept == []
    assert engine.released == []


def test_a_stop_while_waiting_ends_the_wait() -> None:
    """A stop request while waiting for a held lock ends the wait at once."""
    engine = FakeEngine({NAME: LockFacts("theirs", "running", OTHER)})

    def stopping(seconds: float) -> None:
        raise StopRequested(15, "while waiting")

    with (
        pytest.raises(StopRequested),
        engine_lock(engine, "shop", engine=ENGINE, timeout=60, sleep=stopping),
    ):
        pytest.fail("entered a held lock")
    assert engine.starts == 1


def test_a_missing_image_is_imported_once_from_a_static_busybox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing lock image is imported once from the static busybox found on PATH."""
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"not an ELF at all")
    monkeypatch.setattr("shutil.which", lambda name: str(busybox))
    engine = FakeEngine(has_image=False)
    with hold(engine, Clock()):
        pass
    assert engine.imported == [(LOCK_IMAGE, ["busybox"])]
    assert engine.starts == 2


def test_a_dynamically_linked_busybox_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.executable is a dynamically linked ELF (it names an interpreter)."""
    monkeypatch.setattr("shutil.which", lambda name: sys.executable)
    engine = FakeEngine(has_image=False)
    with (
        pytest.raises(ApplyError, match="needs a static busybox"),
        hold(engine, Clock()),
    ):
        pytest.fail("entered a lock never taken")
    assert engine.imported == []


def test_a_lock_whose_container_ended_is_lost() -> None:
    """A lock whose container ended (its connection dropped) is reported lost at the next check."""
    engine = FakeEngine()
    with hold(engine, Clock()) as guard:
        guard.check()
        guard.held.running = False  # its `docker run` ended: the connection dropped
        with pytest.raises(LockLostError, match="lost the lock of project 'shop' on engine"):
            guard.check()


def test_a_failed_release_only_warns() -> None:
    """A release that fails only warns: the lock ends with its connection anyway."""
    engine = FakeEngine(release_error=TransientDockerError("ssh: connection refused"))
    with capture_logs() as logs, hold(engine, Clock()):
        pass
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "could not release the engine lock; it ends with its connection"
    ]


@pytest.mark.parametrize(
    ("endpoint", "remote"),
    [
        ("ssh://root@127.0.0.1:18522", True),
        ("tcp://10.0.0.5:2376", True),
        ("unix:///var/run/docker.sock", False),
        ("npipe:////./pipe/docker_engine", False),
    ],
)
def test_which_engines_hold_the_lock(endpoint: str, remote: bool) -> None:
    """Which engine endpoints count as remote and so hold the lock themselves."""
    assert is_remote(endpoint) is remote


# ---- the run chooses: the engine's lock for a remote engine, the lock file otherwise -------


class FakeAdapterEngine(FakeEngine):
    project_name = "shop"

    def __init__(self, endpoint: str, engine: str | None) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.engine = parse_engine(engine) if engine else None

    def engine_endpoint(self) -> str:
        return self.endpoint


@pytest.mark.parametrize(
    ("endpoint", "engine", "shown"),
    [
        (ENGINE, ENGINE, ENGINE),
        (ENGINE, "prod", f"prod ({ENGINE})"),  # a context reaching a remote engine
        ("tcp://10.0.0.5:2376", None, "tcp://10.0.0.5:2376"),  # DOCKER_HOST
    ],
)
def test_a_remote_engine_gets_the_engine_lock(
    endpoint: str, engine: str | None, shown: str, tmp_path: Path
) -> None:
    """A remote engine gets the engine lock, and the host-local lock key names the engine."""
    fake = FakeAdapterEngine(endpoint, engine)
    fake.containers[NAME] = LockFacts("theirs", "running", OTHER)
    # a state naming its engine: the host-local lock key names the engine too, the engine's
    # lock container the project alone
    state = _state(tmp_path, engine)
    adapter = cast(DockerAdapter, fake)
    with (
        pytest.raises(LockHeldError) as refused,
        reconcile._project_lock(state, adapter, lock=True, timeout=0),
    ):
        pytest.fail("entered a held lock")
    assert f"on engine {shown}: {HOLDER}" in str(refused.value)
    assert not list(tmp_path.glob("locks/*.lock"))


def test_a_local_engine_keeps_the_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local engine keeps the host-local lock file and starts no lock container."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    fake = FakeAdapterEngine("unix:///var/run/docker.sock", None)
    with reconcile._project_lock(_state(tmp_path), cast(DockerAdapter, fake), lock=True, timeout=0):
        assert [path.name for path in (tmp_path / "locks").iterdir()] == ["shop.lock"]
    assert fake.starts == 0


def _state(tmp_path: Path, engine: str | None = None) -> Any:
    from reconciler.state import load_state  # noqa: PLC0415

    (tmp_path / "docker-compose.yml").write_text("services: {web: {image: web:1}}\n")
    (tmp_path / "state.yaml").write_text(
        "name: shop\n"
        + (f"engine: {engine}\n" if engine else "")
        + "compose: {file: docker-compose.yml, project: shop}\n"
        "services: {web: {image: 'web:1'}}\n"
    )
    return load_state(tmp_path / "state.yaml")


# ---- the adapter's lock calls, on a fake docker CLI ------------------------------------------

FAKE_DOCKER = """
import re
import sys
mode = sys.argv[1]
if mode == "conflict":
    sys.stderr.write('docker: Error response from daemon: Conflict. The container name '
                     '"/reconciler-lock-shop" is already in use by container "abc". You have to '
                     'remove (or rename) that container to be able to reuse that name.\\n')
    sys.exit(125)
if mode == "no-image":
    sys.stderr.write("docker: Error response from daemon: No such image: reconciler-lock:1\\n")
    sys.exit(125)
if mode == "ssh":
    sys.stderr.write("error during connect: Post ...: command [ssh -o ConnectTimeout=30 -T -l "
                     "root -p 18522 -- 127.0.0.1 docker system dial-stdio] has exited with exit "
                     "status 255, make sure the URL is valid, and Docker 18.09 or later is "
                     "installed on the remote host: stderr=ssh: connect to host 127.0.0.1 port "
                     "18522: Connection refused\\n")
    sys.exit(1)
print("c0ffee1234ab", flush=True)
sys.stdin.read()  # held until the holder closes its end
"""


@pytest.fixture
def docker_mode(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """`processes.start` runs a fake docker CLI in the given mode, as a real child."""

    def choose(mode: str) -> None:
        def start(argv: Sequence[str], **_: Any) -> processes.Background:
            return processes.Background([sys.executable, "-c", FAKE_DOCKER, mode])

        monkeypatch.setattr(processes, "start", start)

    return choose


def _adapter(tmp_path: Path) -> DockerAdapter:
    return DockerAdapter(tmp_path / "compose.yml", "shop", engine=parse_engine(ENGINE))


def test_the_adapter_holds_the_lock_until_released(
    tmp_path: Path, docker_mode: Callable[[str], None]
) -> None:
    """The adapter's lock container runs attached (`--interactive --rm`) until released, at no extra call."""
    docker_mode("held")
    adapter = _adapter(tmp_path)
    held = adapter.lock_start(NAME, LOCK_IMAGE, {"reconciler.lock.pid": "1"}, ["/busybox"])
    assert held.container_id == "c0ffee1234ab"
    assert held.running
    [call] = adapter.calls
    assert call.mutating
    assert call.engine_lock
    assert adapter.mutating_calls == []
    assert call.argv[1:3] == ("--host", ENGINE)
    assert {"--interactive", "--rm"} <= set(call.argv)
    assert call.argv[call.argv.index("--name") + 1] == NAME
    adapter.lock_release(held, timeout=10)
    assert not held.running
    assert len(adapter.calls) == 1, "a release that ends the container costs no call"


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("conflict", LockNameInUse),
        ("no-image", LockImageMissing),
        ("ssh", TransientDockerError),
    ],
)
def test_the_adapter_tells_why_the_lock_was_not_taken(
    mode: str, error: type[Exception], tmp_path: Path, docker_mode: Callable[[str], None]
) -> None:
    """The adapter tells why the lock was not taken (name in use, no image, ssh), never retrying."""
    docker_mode(mode)
    adapter = _adapter(tmp_path)
    with pytest.raises(error) as raised:
        adapter.lock_start(NAME, LOCK_IMAGE, {}, ["/busybox"])
    assert len(adapter.calls) == 1, "never retried"
    if mode == "ssh":
        assert "ssh to the engine at root@127.0.0.1:18522 failed" in str(raised.value)


DROPPED = (
    "command [ssh -o ConnectTimeout=30 -l root -p 18623 -- 127.0.0.1 docker system dial-stdio] "
    "has exited with exit status 255, please make sure the URL is valid, and Docker 18.09 or "
    "later is installed on the remote host: stderr=Connection to 127.0.0.1 closed by remote host."
)


def test_a_connection_dropped_during_a_migration_is_the_engines_fault_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose exec exits 1 with the docker CLI's ssh wrapper text (as recorded when the sshd
    was killed mid-migration): a docker fault naming the connection, not the migration's own
    exit 1; a mutating exec is not repeated."""
    runs: list[tuple[str, ...]] = []

    def run(argv: Sequence[str], **_: Any) -> processes.Finished:
        runs.append(tuple(argv))
        return processes.Finished(tuple(argv), 1, "", DROPPED, 0.1)

    monkeypatch.setattr(processes, "run", run)
    adapter = _adapter(tmp_path)
    with pytest.raises(TransientDockerError) as raised:
        adapter.exec("db", ["/bin/dd", "if=/gate/fifo"], mutating=True)
    assert str(raised.value) == (
        "ssh to the engine at root@127.0.0.1:18623 failed: Connection to 127.0.0.1 closed by "
        "remote host. (connection lost or refused)"
    )
    assert len(runs) == 1


def test_a_command_printing_connection_refused_is_still_the_commands_own_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exec whose command prints 'connection refused' is the command's failure, not the engine's."""

    def run(argv: Sequence[str], **_: Any) -> processes.Finished:
        return processes.Finished(tuple(argv), 1, "", "psql: connection refused\n", 0.1)

    monkeypatch.setattr(processes, "run", run)
    result = _adapter(tmp_path).exec("db", ["psql"], mutating=True)
    assert result.exit_code == 1


# End to end: the apply lock held BY a remote engine (reconciler.locks.engine), over real ssh.
#
# Applies are held open deterministically by a gate of the test's own: the state's migration
# (`apply: dd if=/gate/fifo`) blocks reading a FIFO baked into the stack's image until the test
# writes to it, and its `check` passes once the test touched /gate/done. No sleep races: the test
# waits for conditions on the engine (the lock container, the blocked `dd`), each with a bound.
#
# (a) two applies from two processes with different host-local lock directories: the second is
# refused (exit 1) naming the first; it succeeds once the first is done; a SIGKILLed holder's
# lock vanishes with it, and a stale lock container is taken over with a warning.
# (b) the connection dropped mid-apply: an sshd of the test's own (tests/sshd_front.py, port
# RTEST_API_PORT+23) in front of the same engine is killed with its sessions while an apply
# waits at the gate: exit 1 with a clear message, the compose file intact, no lock left; after
# the sshd restarts the next apply converges and the one after has no changes.


MIGRATION = """migrations:
  - name: gate
    service: db
    check: ["/bin/test", "-f", "/gate/done"]
    apply: ["/bin/dd", "if=/gate/fifo", "of=/dev/null"]
    timeout: 300
"""


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


@pytest.mark.docker
def test_a_second_apply_is_refused_by_the_engine_lock_naming_its_holder(
    remote_engine: str, lock_stack: Stack, tmp_path: Path
) -> None:
    """Over real ssh, a second apply on the same engine is refused by the engine lock, naming the first."""
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


@pytest.mark.docker
def test_a_connection_dropped_mid_apply_fails_cleanly_and_the_next_apply_converges(
    remote_engine: str, front: SshdFront, tmp_path: Path
) -> None:
    """A connection dropped mid-apply loses the lock, fails cleanly, and the next apply converges."""
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
