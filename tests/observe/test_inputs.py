"""Input digests (no docker): what changes a bind mount's, env file's or config's digest and what
does not, the walk's caps, which inputs a service has, and the per-container record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.docker.facts import ContainerFacts, InputSource
from reconciler.docker.parse import compose_config as _parse_compose_config
from reconciler.observe.inputs import (
    InputDigest,
    env_file_sources,
    path_digest,
    read_record,
    record_path,
    service_digests,
    write_record,
)
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from tests.conftest import BUSYBOX, compose_down, run_cli


def _tree(root: Path) -> Path:
    (root / "conf" / "sub").mkdir(parents=True)
    (root / "conf" / "a.conf").write_text("a = 1\n")
    (root / "conf" / "sub" / "b.conf").write_text("b = 2\n")
    (root / "unrelated.txt").write_text("not mounted\n")
    return root / "conf"


def test_a_changed_byte_changes_a_files_digest(tmp_path: Path) -> None:
    """One byte more or different in a mounted file changes its digest; rewriting the same
    bytes does not."""
    path = tmp_path / "app.conf"
    path.write_bytes(b"port = 80\n")
    before = path_digest(path)
    path.write_bytes(b"port = 80\n")
    assert path_digest(path) == before
    path.write_bytes(b"port = 81\n")
    changed = path_digest(path)
    assert changed != before
    assert changed.digest.startswith("sha256:")
    assert not changed.capped


def test_a_mode_change_changes_the_digest(tmp_path: Path) -> None:
    """chmod of a mounted file, or of a file inside a mounted directory, is a change."""
    path = tmp_path / "run.sh"
    path.write_text("echo hi\n")
    path.chmod(0o644)
    before = path_digest(path)
    path.chmod(0o755)
    assert path_digest(path) != before
    directory = _tree(tmp_path / "tree")
    before = path_digest(directory)
    (directory / "sub" / "b.conf").chmod(0o600)
    assert path_digest(directory) != before


def test_directory_digest_sees_added_changed_and_nested_files(tmp_path: Path) -> None:
    """A file added, a nested file's content, or a symlink's target changes a directory's
    digest; a file beside the directory (not mounted) does not."""
    directory = _tree(tmp_path)
    first = path_digest(directory)
    (tmp_path / "unrelated.txt").write_text("changed, but not mounted\n")
    (tmp_path / "sibling.conf").write_text("new, but not mounted\n")
    assert path_digest(directory) == first
    (directory / "c.conf").write_text("c = 3\n")
    added = path_digest(directory)
    assert added != first
    (directory / "sub" / "b.conf").write_text("b = 3\n")
    nested = path_digest(directory)
    assert nested != added
    (directory / "link").symlink_to("a.conf")
    linked = path_digest(directory)
    assert linked != nested
    (directory / "link").unlink()
    (directory / "link").symlink_to("sub/b.conf")
    assert path_digest(directory) != linked


def test_an_empty_file_renamed_changes_the_directory_digest(tmp_path: Path) -> None:
    """Relative paths are part of the digest, not only contents."""
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "x").write_text("")
    before = path_digest(directory)
    (directory / "x").rename(directory / "y")
    assert path_digest(directory) != before


def test_missing_source_has_its_own_digest(tmp_path: Path) -> None:
    """A missing source is no error (compose complains, not the plan); it appearing is a change."""
    path = tmp_path / "absent.conf"
    assert path_digest(path) == InputDigest("missing")
    path.write_text("")
    assert path_digest(path).digest.startswith("sha256:")


def test_walk_is_capped_and_says_so(tmp_path: Path) -> None:
    """Past `max_entries` entries the walk stops (a change there goes unseen) and says so;
    past `max_bytes` of content files count by size and mtime, and it says so."""
    directory = tmp_path / "many"
    directory.mkdir()
    for index in range(5):
        (directory / f"f{index}").write_text(f"{index}\n")
    capped = path_digest(directory, max_entries=3)
    assert capped.capped == "only the first 3 entries of the directory are digested"
    (directory / "f4").write_text("changed past the cap\n")
    assert path_digest(directory, max_entries=3) == capped
    (directory / "f0").write_text("changed within the cap\n")
    assert path_digest(directory, max_entries=3) != capped
    assert not path_digest(directory).capped
    by_size = path_digest(directory, max_bytes=4)
    assert "count by size and mtime" in by_size.capped
    os.utime(directory / "f3", ns=(1, 1))
    assert path_digest(directory, max_bytes=4) != by_size


def test_service_digests_leave_out_writable_directories(tmp_path: Path) -> None:
    """A read-write bind-mounted directory (data the container writes) is left out; a
    read-write file, read-only directories, env files and configs are in, labelled relative to
    the compose file (absolute outside its directory)."""
    compose_file = tmp_path / "project" / "docker-compose.yml"
    _tree(tmp_path / "project")
    (tmp_path / "project" / "data").mkdir()
    (tmp_path / "project" / "app.env").write_text("A=1\n")
    (tmp_path / "outside.conf").write_text("x\n")
    sources = [
        InputSource("bind", tmp_path / "project" / "data", read_only=False),
        InputSource("bind", tmp_path / "project" / "conf", read_only=True),
        InputSource("bind", tmp_path / "outside.conf", read_only=False),
        InputSource("env_file", tmp_path / "project" / "app.env"),
        InputSource("config", tmp_path / "project" / "conf" / "a.conf"),
    ]
    digests = service_digests(sources, compose_file)
    assert list(digests) == ["conf", str(tmp_path / "outside.conf"), "app.env", "conf/a.conf"]


def test_env_file_sources_from_the_compose_text(tmp_path: Path) -> None:
    """`env_file` as a string, a list, `{path, required}`, through a merge key and with an
    interpolated path, resolved against the compose file's directory."""
    text = """\
x-common: &common
  env_file: common.env
services:
  api:
    <<: *common
  worker:
    env_file:
      - ./a.env
      - path: ${ENV_DIR:-envs}/b.env
        required: false
  db:
    image: postgres
"""
    compose_file = tmp_path / "docker-compose.yml"
    found = env_file_sources(text, compose_file, {"ENV_DIR": "/etc/envs"})
    assert found == {
        "api": (InputSource("env_file", tmp_path / "common.env"),),
        "worker": (
            InputSource("env_file", tmp_path / "a.env"),
            InputSource("env_file", Path("/etc/envs/b.env")),
        ),
    }
    assert env_file_sources(text, compose_file, {})["worker"][1].path == tmp_path / "envs/b.env"
    assert env_file_sources("services: [", compose_file, {}) == {}


def test_compose_model_lists_bind_mounts_and_file_configs() -> None:
    """From compose's normalised JSON: bind sources (with :ro), file-backed configs; named
    volumes and external configs are not inputs."""
    model = {
        "name": "p",
        "configs": {"site": {"file": "/srv/site.conf"}, "ext": {"external": True}},
        "services": {
            "web": {
                "image": "web:1",
                "volumes": [
                    {"type": "bind", "source": "/srv/conf", "target": "/c", "read_only": True},
                    {"type": "bind", "source": "/srv/data", "target": "/d"},
                    {"type": "volume", "source": "cache", "target": "/cache"},
                ],
                "configs": [{"source": "site", "target": "/s"}, {"source": "ext"}],
            }
        },
    }
    config = _parse_compose_config(model, json.dumps(model))
    assert config.services["web"].inputs == (
        InputSource("bind", Path("/srv/conf"), read_only=True),
        InputSource("bind", Path("/srv/data"), read_only=False),
        InputSource("config", Path("/srv/site.conf")),
    )
    assert config.resolved == json.dumps(model)
    assert "resolved" not in repr(config)


def _container(cid: str, service: str, *, oneoff: bool = False) -> ContainerFacts:
    return ContainerFacts(cid, f"p-{service}-1", service, "running", None, 0, "h", "img", oneoff)


def test_record_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$RECONCILER_STATE_DIR, else $XDG_STATE_HOME/reconciler, else ~/.local/state/reconciler:
    never beside the compose file, where it would sit in a build context."""
    monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert record_path("proj") == tmp_path / "xdg" / "reconciler" / "inputs-proj.json"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert record_path("p") == tmp_path / "home" / ".local/state/reconciler/inputs-p.json"
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "records"))
    assert record_path("p") == tmp_path / "records" / "inputs-p.json"


def test_record_round_trip_written_only_on_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record maps container IDs to their inputs' digests and is rewritten only when it
    changes."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "records"))
    path = record_path("proj")
    assert read_record(path) == {}
    digests = {"app": {"app.env": InputDigest("sha256:1")}, "db": {}}
    containers = [
        _container("c1", "app"),
        _container("c2", "db"),
        _container("c3", "app", oneoff=True),
    ]
    assert write_record(path, containers, digests)
    assert read_record(path) == {"c1": {"app.env": "sha256:1"}}
    assert not write_record(path, containers, digests)
    assert write_record(path, [_container("c9", "app")], digests)
    assert read_record(path) == {"c9": {"app.env": "sha256:1"}}


def test_unreadable_record_counts_as_none(tmp_path: Path) -> None:
    """A damaged record means every container is unknown (taken as current), not a crash."""
    path = tmp_path / "inputs-p.json"
    path.write_text("{not json")
    assert read_record(path) == {}
    path.write_text(json.dumps({"version": 99, "containers": {"c": {"inputs": {"a": "b"}}}}))
    assert read_record(path) == {}


@pytest.mark.parametrize("data", ["", "model: {a: 1}\n" * 2000])
def test_process_stdin_is_fed_whole(data: str) -> None:
    """`processes.run(stdin=...)` hands the whole text to the child (the resolved compose model
    goes to compose that way, never through argv)."""
    done = processes.run(["cat"], stop=StopToken(), on_stop=processes.OnStop.CUT, stdin=data)
    assert done.returncode == 0
    assert done.stdout == data


# End to end on the real engine: a service with an `env_file` converges (compose 2.26 leaves the
# env file out of `config --hash`), and a changed bind-mounted file or env file makes that service
# alone drift, and apply recreates it alone.
#
# The stack: two busybox services built offline FROM scratch (context `image/`, so that the edited
# files are no build input) sharing one image; `app` has an env file and a read-only bind-mounted
# config file, `other` has neither.


DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""


COMPOSE = """\
services:
  app:
    build: image
    image: {project}-app:1
    env_file: app.env
    volumes:
      - ./app.conf:/etc/app.conf:ro
  other:
    build: image
    image: {project}-app:1
"""


STATE = """\
name: {project}
compose:
  file: docker-compose.yml
  project: {project}
services:
  app:
    health_timeout: 60
  other:
    health_timeout: 60
"""


@pytest.fixture
def stack(docker_engine: None, tmp_path: Path) -> Iterator[Path]:
    """The stack's directory (state.yaml, docker-compose.yml, app.env, app.conf); torn down."""
    project = f"rtdrift{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "stack"
    (directory / "image").mkdir(parents=True)
    shutil.copy2(BUSYBOX, directory / "image" / "busybox")
    (directory / "image" / "Dockerfile").write_text(DOCKERFILE)
    (directory / "docker-compose.yml").write_text(COMPOSE.format(project=project))
    (directory / "state.yaml").write_text(STATE.format(project=project))
    (directory / "app.env").write_text("GREETING=hello\n")
    (directory / "app.conf").write_text("level = 1\n")
    try:
        yield directory
    finally:
        compose = ["docker", "compose", "-f", str(directory / "docker-compose.yml"), "-p", project]
        compose_down(compose, "--timeout", "1")
        subprocess.run(
            ["docker", "image", "rm", "-f", f"{project}-app:1"], capture_output=True, check=False
        )


def _plan(stack: Path) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("plan", stack / "state.yaml", "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def _apply(stack: Path) -> None:
    done = run_cli("apply", stack / "state.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def _project(stack: Path) -> str:
    return (stack / "state.yaml").read_text().split("project: ")[1].split()[0]


def _ids(stack: Path) -> dict[str, str]:
    """service -> container id."""
    project = _project(stack)
    out = subprocess.run(
        [
            "docker",
            "container",
            "ls",
            "--all",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            '{{.ID}} {{.Label "com.docker.compose.service"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {service: cid for cid, service in (line.split() for line in out.splitlines())}


def _env(container: str) -> str:
    return subprocess.run(
        ["docker", "exec", container, "env"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.docker
def test_env_file_converges_and_changed_files_recreate_only_their_service(stack: Path) -> None:
    """apply -> plan empty (env_file converges) -> edit the bind-mounted file: only app drifts,
    apply recreates only app -> edit the env file: likewise, with the new value -> plan empty."""
    _apply(stack)
    code, changes = _plan(stack)
    assert (code, changes) == (0, []), "a service with an env_file must converge"
    project = _project(stack)
    records = Path(os.environ["RECONCILER_STATE_DIR"]) / f"inputs-{project}.json"
    assert "app.env" in records.read_text()
    first = _ids(stack)
    assert set(first) == {"app", "other"}

    (stack / "app.conf").write_text("level = 2\n")
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("services", "app", "recreate")
    ]
    assert "changed: app.conf" in changes[0]["reason"]
    _apply(stack)
    second = _ids(stack)
    assert second["app"] != first["app"]
    assert second["other"] == first["other"]
    assert _plan(stack) == (0, [])

    (stack / "app.env").write_text("GREETING=bonjour\n")
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("services", "app", "recreate")
    ]
    assert "changed: app.env" in changes[0]["reason"]
    _apply(stack)
    third = _ids(stack)
    assert third["app"] != second["app"]
    assert third["other"] == first["other"]
    assert "GREETING=bonjour" in _env(third["app"])

    assert _plan(stack) == (0, [])


@pytest.mark.docker
def test_a_files_edit_of_a_mounted_config_recreates_its_reader(stack: Path) -> None:
    """The state's `files:` rewrites the bind-mounted config (atomically: a new inode, which a
    running container would never see): the plan recreates the service that mounts it, apply
    does so alone, the container reads the new content, the next plan is empty."""
    _apply(stack)
    first = _ids(stack)
    state = stack / "state.yaml"
    state.write_text(state.read_text() + 'files:\n  app.conf: {content: "level = 3\\n"}\n')
    code, changes = _plan(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", "app.conf", "edit"),
        ("services", "app", "recreate"),
    ]
    assert "the compose-file step edits app.conf" in changes[1]["reason"]
    _apply(stack)
    second = _ids(stack)
    assert second["app"] != first["app"]
    assert second["other"] == first["other"]
    assert (stack / "app.conf").read_text() == "level = 3\n"
    seen = subprocess.run(
        ["docker", "exec", second["app"], "cat", "/etc/app.conf"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert seen == "level = 3\n"
    assert _plan(stack) == (0, [])
    done = run_cli("apply", state)
    assert done.returncode == 0, done.stderr
    assert "No changes" in done.stdout + done.stderr
