"""Records are evidence, never authority (`reconciler.runtime.records`): every bad shape of every record
is a warning naming the file, read as none and rewritten; a failed write never raises."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from reconciler.docker.facts import ContainerFacts
from reconciler.errors import PlanFileError, RecordError
from reconciler.images import wheelhouse
from reconciler.observe.inputs import InputDigest, read_record, record_path, write_record
from reconciler.plans import Action
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile import saved_plan
from reconciler.runtime import files, processes, records
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.processes import Finished
from reconciler.runtime.records import directory as state_directory
from reconciler.secrets.store import MACHINE, SecretRecords, machine_key
from reconciler.state import load_state
from reconciler.state.model import WheelhouseSpec
from tests.conftest import BUSYBOX, compose_down, run_cli
from tests.facts import fake_docker


@pytest.fixture
def _nothing_unwritten() -> Iterator[None]:
    """Each test starts and ends with no record kept in memory from a failed write."""
    records._UNWRITTEN.clear()
    yield
    records._UNWRITTEN.clear()


def _container(cid: str, service: str) -> ContainerFacts:
    return ContainerFacts(cid, f"p-{service}-1", service, "running", None, 0, "h", "img", False)


def _pip(argv: list[str], **kwargs: object) -> Finished:
    """`pip download` that succeeds at once."""
    return Finished(tuple(argv), 0, "", "", 0.0)


@dataclass(frozen=True)
class Kind:
    """A record kind through its own module's public reader and writer."""

    name: str
    path: Callable[[Path], Path]
    read: Callable[[Path], object]
    write: Callable[[Path], object]
    written: object  # what `read` gives after `write`
    wrong_types: tuple[str, ...]  # valid JSON objects of the right version, wrongly typed


def _write_inputs(path: Path) -> object:
    return write_record(path, [_container("c1", "app")], {"app": {"app.env": InputDigest("d1")}})


def _wheelhouse_dir(tmp: Path) -> Path:
    return tmp / "wheels"


def _download(path: Path) -> object:
    """wheelhouse.download into the marker's directory, pip answering at once; the digest."""
    requirements = path.parent.parent / "requirements.txt"
    requirements.write_text("six\n")
    spec = WheelhouseSpec(requirements=[requirements])
    original = processes.run
    processes.run = _pip  # type: ignore[assignment]
    try:
        wheelhouse.download(path.parent, spec, StopToken())
    finally:
        processes.run = original
    return wheelhouse.wanted_digest(spec)


KINDS = [
    Kind(
        "inputs",
        lambda tmp: record_path("p"),
        read_record,
        _write_inputs,
        {"c1": {"app.env": "d1"}},
        (
            '{"version": 1, "containers": []}',
            '{"version": 1, "containers": {"c1": "x"}}',
            '{"version": 1, "containers": {"c1": {"inputs": ["a"]}}}',
            '{"version": 1, "containers": {"c1": {"inputs": {"a": 1}}}}',
            '{"version": 1}',
        ),
    ),
    Kind(
        "secret records",
        lambda tmp: SecretRecords("p").path,
        lambda path: SecretRecords("p").read(),
        lambda path: SecretRecords("p").write({"c1": {"A": "hmac-sha256:1"}}),
        {"c1": {"A": "hmac-sha256:1"}},
        (
            '{"version": 1, "containers": null}',
            '{"version": 1, "containers": {"c1": ["A"]}}',
            '{"version": 1, "containers": {"c1": {"A": null}}}',
        ),
    ),
    Kind(
        "wheelhouse marker",
        lambda tmp: _wheelhouse_dir(tmp) / wheelhouse.MARKER,
        lambda path: wheelhouse.observed_digest(path.parent),
        _download,
        "from the download",
        ('{"digest": 5}', '{"digest": null}', "{}"),
    ),
]
EMPTY: dict[str, object] = {"inputs": {}, "secret records": {}, "wheelhouse marker": None}

# (bytes, what the warning says)
SHAPES = [
    (b"null", "holds null, not an object"),
    (b"[]", "holds [], not an object"),
    (b'["x"]', "holds an array"),
    (b'"text"', "holds a string"),
    (b"42", "holds a number"),
    (b"true", "holds a boolean"),
    (b"", "not JSON"),
    (b"{not json", "not JSON"),
    (b'{"version": 1, "containers": {}', "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"version": 2, "containers": {}, "models": {}, "digest": "d"}', "version 2, not 1"),
    (b'{"version": "1", "containers": {}, "models": {}, "digest": "d"}', 'version "1", not 1'),
    (b'{"version": true, "containers": {}, "models": {}, "digest": "d"}', "version true, not 1"),
    (b'{"version": null, "containers": {}, "models": {}, "digest": "d"}', "version null, not 1"),
]


def warnings(events: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    """The warning events among `events`."""
    return [e for e in events if e["log_level"] == "warning"]


def place(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def check_ignored_then_rewritten(kind: Kind, tmp_path: Path, data: bytes, problem: str) -> None:
    """Read: none, with one warning naming the file and the problem; then the writer replaces it."""
    path = kind.path(tmp_path)
    place(path, data)
    with capture_logs() as events:
        assert kind.read(path) == EMPTY[kind.name]
    (warning,) = warnings(events)
    assert warning["path"] == str(path)
    assert problem in warning["event"], warning
    assert "treated as empty and rewritten at the next write" in warning["event"]
    written = kind.write(path)
    result = kind.read(path)
    assert result == (written if kind.written == "from the download" else kind.written)
    assert records._UNWRITTEN == {}


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize(("data", "problem"), SHAPES, ids=[s[1] for s in SHAPES])
def test_a_record_of_the_wrong_shape_is_warned_ignored_and_rewritten(
    kind: Kind, data: bytes, problem: str, tmp_path: Path
) -> None:
    """null, [], a scalar, not JSON, not UTF-8, nested past the stack, another version: ignored."""
    check_ignored_then_rewritten(kind, tmp_path, data, problem)


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize(
    ("kind", "text"),
    [(kind, text) for kind in KINDS for text in kind.wrong_types],
    ids=lambda v: v.name if isinstance(v, Kind) else str(v),
)
def test_a_record_with_a_value_of_the_wrong_type_is_ignored(
    kind: Kind, text: str, tmp_path: Path
) -> None:
    """The right version, a field of the wrong type or missing: `wrong shape: <where>`."""
    check_ignored_then_rewritten(kind, tmp_path, text.encode(), "wrong shape: ")


@pytest.mark.usefixtures("_nothing_unwritten")
def test_the_wrong_shape_names_where_it_is(tmp_path: Path) -> None:
    """The warning says which field is wrong and how, in the record's own dotted terms."""
    path = record_path("p")
    place(path, b'{"version": 1, "containers": {"c1": {"inputs": {"a": 1}}}}')
    with capture_logs() as events:
        assert read_record(path) == {}
    (warning,) = warnings(events)
    assert "containers.c1.inputs.a: Input should be a valid string" in warning["event"]


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_record_over_its_cap_is_ignored(
    kind: Kind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record past the records' cap is not read: warned, ignored, rewritten."""
    monkeypatch.setitem(files.CAPS, "record", 4096)
    check_ignored_then_rewritten(kind, tmp_path, b" " * 5000, "larger than its cap")


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("special", ["directory", "FIFO"])
def test_a_special_file_in_a_records_place_warns_and_is_never_written(
    kind: Kind, special: str, tmp_path: Path
) -> None:
    """A directory or FIFO in a record's place: warned on read (never blocking), the write warns and skips, the run keeps its record in memory."""
    path = kind.path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if special == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    with capture_logs() as events:
        assert kind.read(path) == EMPTY[kind.name]
        written = kind.write(path)
        kept = kind.read(path)
    first, second = warnings(events)
    assert special in first["event"]
    assert first["path"] == str(path)
    assert first["event"].endswith("treated as empty and never written over: remove it")
    assert second["event"].startswith("cannot write ")
    assert second["path"] == str(path)
    assert special in second["error"]
    assert path.is_dir() if special == "directory" else stat.S_ISFIFO(path.stat().st_mode)
    assert kept == (written if kind.written == "from the download" else kind.written)
    assert [p for p in path.parent.iterdir() if p.name.endswith((".tmp", ".partial"))] == []


@pytest.mark.usefixtures("_nothing_unwritten")
def test_a_missing_record_is_none_without_a_warning(tmp_path: Path) -> None:
    """No record yet is no news: nothing warned, for every kind."""
    with capture_logs() as events:
        for kind in KINDS:
            assert kind.read(kind.path(tmp_path)) == EMPTY[kind.name]
        assert SecretRecords("p").key() is None
    assert warnings(events) == []


@pytest.mark.usefixtures("_nothing_unwritten")
def test_a_marker_without_a_version_is_version_one_and_keeps_its_bytes(tmp_path: Path) -> None:
    """Markers always held the digest alone: read as is, and written so (build contexts ship it)."""
    directory = tmp_path / "wheels"
    place(directory / wheelhouse.MARKER, b'{"digest": "sha256:1"}\n')
    assert wheelhouse.observed_digest(directory) == "sha256:1"
    digest = _download(directory / wheelhouse.MARKER)
    assert (directory / wheelhouse.MARKER).read_bytes() == (
        json.dumps({"digest": digest}) + "\n"
    ).encode()


# --- keys -----------------------------------------------------------------------------------

KEY_SHAPES = [
    (b"", "holds 0 bytes, not 32"),
    (b"k" * 31, "holds 31 bytes, not 32"),
    (b"k" * 33, "larger than its cap of 32 bytes"),
]


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize(("data", "problem"), KEY_SHAPES, ids=[s[1] for s in KEY_SHAPES])
def test_a_key_of_the_wrong_size_is_replaced_with_a_warning(data: bytes, problem: str) -> None:
    """A plan has no key (warned); the apply's ensure_key makes a new one and says what it costs."""
    secrets = SecretRecords("p")
    place(secrets.key_path, data)
    with capture_logs() as events:
        assert secrets.key() is None
    (read,) = warnings(events)
    assert problem in read["event"]
    assert read["path"] == str(secrets.key_path)
    with capture_logs() as events:
        key = secrets.ensure_key()
    made = warnings(events)[-1]
    assert made["event"].startswith("making a new secret key; no secret record made under")
    assert len(key) == 32
    assert secrets.key_path.read_bytes() == key
    assert stat.S_IMODE(secrets.key_path.stat().st_mode) == 0o600
    assert secrets.key() == key


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize("special", ["directory", "FIFO"])
def test_a_special_file_in_the_keys_place_warns_and_the_key_lives_for_the_run(
    special: str,
) -> None:
    """secrets.key a directory or FIFO: warned, never fatal; the run's new key serves its own later reads, the next process has none."""
    secrets = SecretRecords("p")
    secrets.directory.mkdir(parents=True)
    if special == "directory":
        secrets.key_path.mkdir()
    else:
        os.mkfifo(secrets.key_path)
    with capture_logs() as events:
        assert secrets.key() is None
        key = secrets.ensure_key()
        assert secrets.key() == key
        assert secrets.write({"c1": {"A": "hmac-sha256:1"}})
    assert any(special in w["event"] for w in warnings(events))
    assert any(w["event"].startswith("cannot write secret key") for w in warnings(events))
    records._UNWRITTEN.clear()  # another process
    with capture_logs() as events:
        assert SecretRecords("p").key() is None
    assert len(warnings(events)) == 1


@pytest.mark.usefixtures("_nothing_unwritten")
def test_the_machine_key_is_never_kept_in_memory_only(tmp_path: Path) -> None:
    """Plan files need a key that outlives the process: a directory there is a clean error."""
    path = state_directory() / MACHINE / "secrets.key"
    path.mkdir(parents=True)
    where = re.escape(str(path))
    with pytest.raises(RecordError, match=rf"cannot keep this machine's key .* at {where}: .*dire"):
        machine_key()
    with pytest.raises(PlanFileError, match="cannot make this machine's key for plan files"):
        saved_plan._machine_key()
    assert records._UNWRITTEN == {}


@pytest.mark.usefixtures("_nothing_unwritten")
def test_threads_making_the_machine_key_at_once_all_get_the_one_kept() -> None:
    """Fleet targets plan in threads: a key made by two at once would leave one's plan files stale."""
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: machine_key(), range(16)))
    assert keys == {(state_directory() / MACHINE / "secrets.key").read_bytes()}


@pytest.mark.usefixtures("_nothing_unwritten")
def test_a_machine_key_of_the_wrong_size_is_replaced(tmp_path: Path) -> None:
    """A damaged machine key is replaced (plan files saved under the old one turn stale)."""
    path = state_directory() / MACHINE / "secrets.key"
    place(path, b"short")
    with capture_logs() as events:
        key = machine_key()
    assert len(key) == 32
    assert path.read_bytes() == key
    assert any("refused as stale" in w["event"] for w in warnings(events))


# --- failed writes --------------------------------------------------------------------------


def refuse_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.replace fails with ENOSPC for anything under the state directory (a full disk)."""
    original = os.replace
    state = str(state_directory())

    def replace(source: str | Path, target: str | Path, **kwargs: Any) -> None:
        if str(target).startswith(state):
            raise OSError(28, "No space left on device", str(target))
        original(source, target, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named temp file"])
def test_a_failed_write_leaves_no_temp_file_and_does_not_raise(
    tmpfile: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full at the rename: warned with what is lost, old bytes kept, no temp file left, this run's later reads see the record."""
    if not tmpfile:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    path = record_path("p")
    assert _write_inputs(path)
    before = path.read_bytes()
    refuse_records(monkeypatch)
    with capture_logs() as events:
        assert not write_record(path, [_container("c2", "app")], {"app": {"a": InputDigest("2")}})
        assert not SecretRecords("p").write({"c2": {"A": "hmac-sha256:2"}})
        assert len(SecretRecords("p").ensure_key()) == 32
    assert [w["event"].split(";")[0] for w in warnings(events)] == [
        "cannot write input digest record",
        "cannot write secret records",
        "cannot write secret key",
    ]
    assert all("No space left on device" in w["error"] for w in warnings(events))
    assert path.read_bytes() == before
    leftovers = [p for p in state_directory().rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
    assert read_record(path) == {"c2": {"a": "2"}}, "this run's verification sees it"
    assert SecretRecords("p").read() == {"c2": {"A": "hmac-sha256:2"}}
    records._UNWRITTEN.clear()  # another process
    assert read_record(path) == {"c1": {"app.env": "d1"}}


@pytest.mark.usefixtures("_nothing_unwritten")
def test_a_state_directory_that_cannot_be_made_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$RECONCILER_STATE_DIR under a regular file: every write warns, none raises."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(blocker / "state"))
    with capture_logs() as events:
        assert not _write_inputs(record_path("p"))
        assert len(SecretRecords("p").ensure_key()) == 32
    failed = [w for w in warnings(events) if "error" in w]
    assert [w["error"] for w in failed] == ["Not a directory"] * 2


@pytest.mark.usefixtures("_nothing_unwritten")
def test_a_record_rewritten_after_a_failure_is_read_from_disk_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a later write succeeds, the memory of the failed one is dropped."""
    path = record_path("p")
    with monkeypatch.context() as patch:
        refuse_records(patch)
        assert not _write_inputs(path)
    assert records._UNWRITTEN
    assert _write_inputs(path)
    assert records._UNWRITTEN == {}
    assert read_record(path) == {"c1": {"app.env": "d1"}}


# --- a whole apply on recorded docker output ------------------------------------------------

STACK = Path(fake_docker.__file__).parent / "mutfx_stack"
TOKEN = "rc-records-token-4d1f"


def secret_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The mutfx stack with api reading secret API_TOKEN through a compose `secrets:` entry (which
    compose's config hash does not cover), behind a docker replaying scenarios/converged/ plus a
    `compose up`; returns the state file and the call log."""
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    scenario = tmp_path / "scenario"
    shutil.copytree(fake_docker.SCENARIOS / "converged", scenario)
    model_file = scenario / "01-compose-config-format.stdout"
    model = json.loads(model_file.read_text())
    model["services"]["api"]["secrets"] = [{"source": "token"}]
    model["secrets"] = {"token": {"name": "mutfxrb_token", "environment": "API_TOKEN"}}
    model_file.write_text(json.dumps(model, indent=2))
    index = json.loads((scenario / "scenario.json").read_text())
    index["calls"].append({"argv": "compose up *", "rc": 0, "stdout": None, "stderr": None})
    (scenario / "scenario.json").write_text(json.dumps(index))
    log = tmp_path / "fake-docker" / "calls.log"
    bin_dir = tmp_path / "fake-docker" / "bin"
    fake_docker.install(bin_dir, scenario, root=directory, log=log)
    fake_docker.first_on_path(bin_dir, monkeypatch)
    monkeypatch.setenv("RC_RECORDS_TOKEN", TOKEN)
    # Outside the stack: the stack is the images' build context, which the state must not change.
    state = tmp_path / "state.yaml"
    state.write_text(
        (directory / "state.yaml")
        .read_text()
        .replace("file: docker-compose.yml", "file: stack/docker-compose.yml")
        + "secrets:\n  API_TOKEN: {env: RC_RECORDS_TOKEN}\n"
    )
    return state, log


@pytest.mark.usefixtures("_nothing_unwritten")
def test_a_full_state_directory_does_not_fail_an_apply_after_its_recreate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full when the secret records are written after `compose up`: warned, the apply converges, no temp file left."""
    state_file, log = secret_stack(tmp_path, monkeypatch)
    state = load_state(state_file)
    (planned,) = reconcile.plan(state).changes
    assert (planned.target, planned.action) == ("api", Action.RECREATE)
    assert "no record of the value of secret API_TOKEN" in planned.reason
    refuse_records(monkeypatch)
    with capture_logs() as events:
        result = reconcile.apply(state, lock=False)
    assert result.error is None, result.error
    assert [(c.target, c.action) for c in result.applied] == [("api", Action.RECREATE)]
    assert [c.name for c in result.checks if c.passed] == [
        "api answers healthy",
        "image size mutfxrb-db:1",
    ]
    assert sum(call.startswith("compose up") for call in fake_docker.calls(log)) == 1
    failed = [w["event"].split(";")[0] for w in warnings(events) if "error" in w]
    assert failed == ["cannot write secret key", "cannot write secret records"]
    leftovers = [p for p in state_directory().rglob("*") if p.is_file()]
    assert leftovers == [], "nothing written, no temp file left"
    assert TOKEN not in json.dumps([dict(e) for e in events])


@pytest.mark.usefixtures("_nothing_unwritten")
def test_secret_records_written_after_a_recreate_make_the_next_plan_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a writable state directory the same apply records the secret, and another process plans nothing."""
    state_file, _ = secret_stack(tmp_path, monkeypatch)
    state = load_state(state_file)
    result = reconcile.apply(state, lock=False)
    assert result.error is None, result.error
    records._UNWRITTEN.clear()  # another process
    assert reconcile.plan(load_state(state_file)).empty


@pytest.mark.usefixtures("_nothing_unwritten")
@pytest.mark.parametrize(
    "damage", [b"null", b'{"version": 1, "containers": {"x": 1}}', "directory"]
)
def test_damaged_secret_records_mean_a_recreate_then_convergence(
    damage: bytes | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """secrets.json damaged between applies: the next apply warns, recreates its user, and converges."""
    state_file, _ = secret_stack(tmp_path, monkeypatch)
    assert reconcile.apply(load_state(state_file), lock=False).error is None
    records._UNWRITTEN.clear()  # another process
    path = SecretRecords("mutfxrb").path
    path.unlink()
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        path.mkdir()
    with capture_logs() as events:
        result = reconcile.apply(load_state(state_file), lock=False)
    assert result.error is None, result.error
    assert [(c.target, c.action) for c in result.applied] == [("api", Action.RECREATE)]
    assert any(w["path"] == str(path) for w in warnings(events))


# Records are evidence, never authority, end to end on the real engine: every record rewritten
# between applies (`null`, `[]`, garbage, a directory) is a warning naming it, and the next apply
# converges; a config-hash cache of wrong values recreates nothing and fails nothing.
#
# The stack: two busybox services built offline FROM scratch sharing one image; `app` reads an env
# file (an input digest record) and a compose secret fed from the environment (a secret record and
# the project's key), so each record kind is written by the first apply.


DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""


COMPOSE = """\
x-box: &box
  build: image
  image: {project}-box:1
  stop_grace_period: 1s
services:
  app:
    <<: *box
    env_file: app.env
    secrets: [token]
  other:
    <<: *box
secrets:
  token:
    environment: API_TOKEN
"""


STATE = """\
name: {project}
compose:
  file: docker-compose.yml
  project: {project}
secrets:
  API_TOKEN: {{env: RC_RECORDS_TOKEN}}
services:
  app:
    health_timeout: 60
  other:
    health_timeout: 60
"""


DAMAGE: dict[str, bytes | None] = {
    "null": b"null",
    "[]": b"[]",
    "garbage": b"\xff\x00{not json",
    "directory": None,
}


@dataclass
class Stack:
    """The stack's directory and project, and where its records are."""

    directory: Path
    project: str

    @property
    def state_file(self) -> Path:
        return self.directory / "state.yaml"

    def records(self) -> list[Path]:
        """Every record the first apply writes: input digests, config hashes, secrets, key."""
        state = Path(os.environ["RECONCILER_STATE_DIR"])
        return [
            state / f"inputs-{self.project}.json",
            state / f"config-hashes-{self.project}.json",
            state / self.project / "secrets.json",
            state / self.project / "secrets.key",
        ]

    def apply(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`apply --json`, which must exit 0: the changes it applied, and its warnings."""
        done = run_cli("apply", self.state_file, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        applied: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
        return applied, warnings_records(done.stderr)

    def plan(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`plan --json`: its changes, and its warnings."""
        done = run_cli("plan", self.state_file, "--json")
        assert done.returncode in {0, 2}, done.stderr
        changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
        return changes, warnings_records(done.stderr)


def warnings_records(stderr: str) -> list[dict[str, Any]]:
    """The warning events of a JSON log."""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [event for event in events if event.get("level") == "warning"]


@pytest.fixture
def stack(docker_engine: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack, converged by a first apply; torn down (containers, image) afterwards."""
    project = f"rc-rec{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "stack"
    (directory / "image").mkdir(parents=True)
    shutil.copy2(BUSYBOX, directory / "image" / "busybox")
    (directory / "image" / "Dockerfile").write_text(DOCKERFILE)
    (directory / "docker-compose.yml").write_text(COMPOSE.format(project=project))
    (directory / "state.yaml").write_text(STATE.format(project=project))
    (directory / "app.env").write_text("GREETING=hello\n")
    monkeypatch.setenv("RC_RECORDS_TOKEN", "rc-records-e2e-token")
    made = Stack(directory, project)
    try:
        made.apply()
        assert all(path.is_file() for path in made.records()), made.records()
        yield made
    finally:
        compose = ["docker", "compose", "-f", str(directory / "docker-compose.yml"), "-p", project]
        compose_down(compose, "--timeout", "1")
        subprocess.run(
            ["docker", "image", "rm", "-f", f"{project}-box:1"], capture_output=True, check=False
        )


def damage(path: Path, data: bytes | None) -> None:
    """Put `data` in the record's place, or a directory when None."""
    path.unlink()
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)


@pytest.mark.docker
def test_records_rewritten_between_applies_warn_and_the_next_apply_converges(
    stack: Stack,
) -> None:
    """null, [], garbage, a directory in every record's place: each apply warns naming them all and converges."""
    for name, data in DAMAGE.items():
        for path in stack.records():
            damage(path, data)
        applied, warned = stack.apply()
        named = {w.get("path") for w in warned}
        assert named >= {str(path) for path in stack.records()}, (name, warned)
        # No secret record (or no key) says which token app got: it is recreated, nothing else.
        assert [(c["target"], c["action"]) for c in applied] == [("app", "recreate")], name
        if data is None:
            for path in stack.records():
                assert path.is_dir(), "a directory is never written over"
                path.rmdir()
            stack.apply()
        changes, warned = stack.plan()
        assert (name, changes, warned) == (name, [], [])
        assert all(path.is_file() for path in stack.records()), name


@pytest.mark.docker
def test_a_config_hash_cache_of_wrong_values_recreates_nothing_and_fails_nothing(
    stack: Stack,
) -> None:
    """Remembered hashes that contradict compose's labels: compose is asked again, the apply changes nothing and passes."""
    path = stack.records()[1]
    data = json.loads(path.read_text())
    data["models"] = {
        key: dict.fromkeys(hashes, "0" * 64) for key, hashes in data["models"].items()
    }
    path.write_text(json.dumps(data))
    applied, warned = stack.apply()
    assert applied == []
    assert [w["event"] for w in warned] == [
        "remembered config hashes differ from compose's; replaced"
    ]
    assert "0" * 64 not in path.read_text()
    assert stack.plan() == ([], [])
