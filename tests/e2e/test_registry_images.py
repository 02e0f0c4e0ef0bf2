"""Registry images end to end: a real registry on loopback (Debian's docker-registry, started by
deploy/engine/ensure-registry.sh), tiny images built FROM scratch here, pushed, and removed
locally before reconciler pulls them.

1. `pull: digest` without authentication: apply pulls and converges; a new image pushed under
   the same tag is drift (pull, then recreate exactly the services using it); apply converges;
   a second apply changes nothing and makes no mutating docker call.
2. With authentication (`--user tester`): the password comes from a `secrets:` entry (`env:`),
   apply logs in (`docker login --password-stdin`) and pulls; the password is in no output,
   report or JSON.

Every docker client here (the test's and reconciler's) has its own DOCKER_CONFIG, so no login
reaches the machine's ~/.docker and reconciler's login is the only one its runs can use.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.reconcile.loop import make_adapter
from reconciler.state import load_state
from tests.conftest import BUSYBOX, REPO, run_cli

pytestmark = pytest.mark.docker

ENSURE = REPO / "deploy" / "engine" / "ensure-registry.sh"
OPEN_PORT, AUTH_PORT = 18400, 18401

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
LABEL io.reconciler.test.variant={variant}
CMD ["/bin/busybox", "sleep", "3600"]
"""

COMPOSE_OPEN = """\
services:
  app:
    image: {ref}
    stop_signal: SIGKILL
  worker:
    image: {ref}
    stop_signal: SIGKILL
  other:
    build: ./other
    image: {project}-other:1
    stop_signal: SIGKILL
"""

STATE_OPEN = """\
name: {project}
compose:
  file: docker-compose.yml
  project: {project}
images:
  "{ref}": {{pull: digest}}
"""

COMPOSE_AUTH = """\
services:
  app:
    image: {ref}
    stop_signal: SIGKILL
"""

STATE_AUTH = """\
name: {project}
compose:
  file: docker-compose.yml
  project: {project}
secrets:
  REGISTRY_PASSWORD: {{env: RTREG_PASSWORD}}
registries:
  "127.0.0.1:{port}": {{username: tester, password_secret: REGISTRY_PASSWORD}}
images:
  "{ref}": {{pull: digest}}
"""


def docker(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, env=env, input=stdin
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass
class Registry:
    """A loopback registry (stopped and its data removed at teardown)."""

    host: str
    password: str | None = None


@pytest.fixture
def start_registry(docker_engine: None) -> Iterator[Callable[..., Registry]]:
    """Start registries on given ports; under CI=true one that cannot start fails the test."""
    started: list[int] = []

    def start(port: int, user: str | None = None) -> Registry:
        password = f"pw-{secrets.token_hex(12)}" if user else None
        argv = ["bash", str(ENSURE), "--port", str(port), *(["--user", user] if user else [])]
        env = {**os.environ, **({"REGISTRY_PASSWORD": password} if password else {})}
        started.append(port)
        done = subprocess.run(
            argv, capture_output=True, text=True, check=False, env=env, timeout=300
        )
        if done.returncode != 0:
            message = f"registry on 127.0.0.1:{port} did not start: {done.stderr[-1500:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        host = done.stdout.strip().splitlines()[-1]
        assert host == f"127.0.0.1:{port}"
        return Registry(host, password)

    yield start
    for port in started:
        subprocess.run(
            ["bash", str(ENSURE), "--port", str(port), "--stop"], capture_output=True, check=False
        )


@dataclass
class Project:
    """A compose project in tmp: its state, and the docker client configs of the test (pushes)
    and of reconciler (its own logins only)."""

    directory: Path
    name: str
    pusher: dict[str, str]  # environment of the test's own docker calls
    env: dict[str, str]  # environment of reconciler's runs
    refs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.directory / "state.yaml"

    def cli(self, *args: str) -> tuple[int, str]:
        done = run_cli(args[0], self.state_file, *args[1:], env=self.env, cwd=self.directory)
        self.outputs += [done.stdout, done.stderr]
        return done.returncode, done.stdout

    def plan(self) -> tuple[int, list[dict[str, Any]]]:
        code, out = self.cli("plan", "--json", "-v")
        assert code in {0, 2}, self.outputs[-1][-3000:]
        changes: list[dict[str, Any]] = json.loads(out)["changes"]
        return code, changes

    def push(self, ref: str, variant: int) -> str:
        """Build a tiny image FROM scratch, push it as `ref` without leaving `ref` moved
        locally (pushed under a scratch tag, copied to `ref` in the registry); return the
        image ID it has."""
        context = self.directory.parent / f"image-{variant}"
        context.mkdir(exist_ok=True)
        shutil.copy2(BUSYBOX, context / "busybox")
        (context / "Dockerfile").write_text(DOCKERFILE.format(variant=variant))
        scratch = f"{ref.rpartition(':')[0]}:scratch-{variant}"
        self.refs.append(scratch)
        docker("build", "--quiet", "--tag", scratch, str(context), env=self.pusher)
        image_id = docker("image", "inspect", "--format", "{{.Id}}", scratch, env=self.pusher)
        docker("push", "--quiet", scratch, env=self.pusher)
        docker("buildx", "imagetools", "create", "--tag", ref, scratch, env=self.pusher)
        docker("image", "rm", scratch, env=self.pusher)
        return image_id.strip()

    def containers(self) -> dict[str, str]:
        """service -> container id."""
        label = f"label=com.docker.compose.project={self.name}"
        fmt = '{{.ID}} {{.Label "com.docker.compose.service"}}'
        rows = docker("ps", "-a", "--no-trunc", "--filter", label, "--format", fmt, env=self.pusher)
        return {service: cid for cid, service in (row.split() for row in rows.splitlines())}

    def image_of(self, service: str) -> str:
        return docker(
            "inspect", "--format", "{{.Image}}", f"{self.name}-{service}-1", env=self.pusher
        ).strip()


@pytest.fixture
def make_project(docker_engine: None, tmp_path: Path) -> Iterator[Callable[[str], Project]]:
    made: list[Project] = []

    def make(kind: str) -> Project:
        name = f"rtest-reg-{kind}-{uuid.uuid4().hex[:6]}"
        directory = tmp_path / name / "project"
        directory.mkdir(parents=True)
        configs = tmp_path / name / "pusher-config", tmp_path / name / "reconciler-config"
        for config in configs:
            config.mkdir()
        base = {key: value for key, value in os.environ.items() if key != "RTREG_PASSWORD"}
        project = Project(
            directory,
            name,
            pusher={**base, "DOCKER_CONFIG": str(configs[0])},
            env={
                **base,
                "DOCKER_CONFIG": str(configs[1]),
                "PYTHONPATH": str(REPO),
                "RECONCILER_STATE_DIR": str(tmp_path / name / "reconciler-state"),
            },
        )
        made.append(project)
        return project

    yield make
    for project in made:
        compose = ["compose", "-f", str(project.directory / "docker-compose.yml")]
        subprocess.run(
            ["docker", *compose, "-p", project.name, "down", "--timeout", "1"],
            capture_output=True,
            check=False,
        )
        remove_images(project.refs)


def remove_images(refs: list[str]) -> None:
    """Remove the images of these references' repositories by name, tag or digest (never by
    ID: another test's image FROM the same busybox may have the same ID)."""
    names = set(refs)
    for repo in {ref.rpartition(":")[0] for ref in refs}:
        rows = subprocess.run(
            ["docker", "image", "ls", "--digests", "--format", _NAMES, repo],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        names.update(name for name in rows if "<none>" not in name)
    subprocess.run(["docker", "image", "rm", "-f", *names], capture_output=True, check=False)


_NAMES = "{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}"


def test_pull_digest_follows_a_moved_tag_and_recreates_exactly_its_users(
    start_registry: Callable[..., Registry],
    make_project: Callable[[str], Project],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = start_registry(OPEN_PORT)
    project = make_project("open")
    ref = f"{registry.host}/{project.name}/app:1"
    project.refs += [ref, f"{project.name}-other:1"]
    (project.directory / "other").mkdir()
    shutil.copy2(BUSYBOX, project.directory / "other" / "busybox")
    (project.directory / "other" / "Dockerfile").write_text(DOCKERFILE.format(variant="other"))
    (project.directory / "docker-compose.yml").write_text(
        COMPOSE_OPEN.format(ref=ref, project=project.name)
    )
    project.state_file.write_text(STATE_OPEN.format(ref=ref, project=project.name))
    first = project.push(ref, 1)
    images = docker("image", "ls", "-q", ref, env=project.pusher)
    assert images == "", "the pushed image is not here: reconciler must pull it"

    # 1. pull, build, create; then in sync.
    code, changes = project.plan()
    assert code == 2
    assert {(c["step"], c["target"], c["action"]) for c in changes} == {
        ("images", ref, "pull"),
        ("images", f"{project.name}-other:1", "build"),
        ("services", "app", "create"),
        ("services", "worker", "create"),
        ("services", "other", "create"),
    }
    code, _ = project.cli("apply")
    assert code == 0, project.outputs[-1][-3000:]
    assert project.image_of("app") == project.image_of("worker") == first
    code, changes = project.plan()
    assert (code, changes) == (0, []), "in sync after apply"
    before = project.containers()

    # 2. a new image under the same tag: drift, named with both digests.
    second = project.push(ref, 2)
    assert second != first
    code, changes = project.plan()
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("images", ref, "pull"),
        ("services", "app", "recreate"),
        ("services", "worker", "recreate"),
    ]
    reason = changes[0]["reason"]
    assert reason.startswith(f"tag {ref} moved in the registry: sha256:"), reason
    old_digest, new_digest = changes[0]["before"], changes[0]["after"]
    assert old_digest != new_digest
    assert reason.endswith(f"{old_digest[:19]} -> {new_digest[:19]}"), reason

    # 3. apply: pulled, exactly its users recreated, the other service left alone.
    code, out = project.cli("apply", "--json")
    assert code == 0, project.outputs[-1][-3000:]
    assert {(c["target"], c["action"]) for c in json.loads(out)["changes"]} == {
        (ref, "pull"),
        ("app", "recreate"),
        ("worker", "recreate"),
    }
    after = project.containers()
    assert after["other"] == before["other"]
    assert after["app"] != before["app"]
    assert after["worker"] != before["worker"]
    assert project.image_of("app") == project.image_of("worker") == second

    # 4. in sync: plan empty, apply says so and makes no mutating docker call.
    code, changes = project.plan()
    assert (code, changes) == (0, [])
    code, out = project.cli("apply")
    assert code == 0
    assert "No changes" in out
    monkeypatch.setenv("DOCKER_CONFIG", project.env["DOCKER_CONFIG"])
    state = load_state(project.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.mutating_calls == []
    reads = [call.argv for call in adapter.calls if "imagetools" in call.argv]
    assert len(reads) == 1, "one registry read per apply when in sync"


def test_registry_login_from_a_secret_then_pull_password_never_shown(
    start_registry: Callable[..., Registry], make_project: Callable[[str], Project]
) -> None:
    registry = start_registry(AUTH_PORT, user="tester")
    assert registry.password is not None
    project = make_project("auth")
    ref = f"{registry.host}/{project.name}/app:1"
    project.refs.append(ref)
    (project.directory / "docker-compose.yml").write_text(COMPOSE_AUTH.format(ref=ref))
    project.state_file.write_text(STATE_AUTH.format(ref=ref, project=project.name, port=AUTH_PORT))
    docker(
        "login",
        "--username",
        "tester",
        "--password-stdin",
        registry.host,
        env=project.pusher,
        stdin=registry.password,
    )
    pushed = project.push(ref, 1)
    project.env["RTREG_PASSWORD"] = registry.password
    config = Path(project.env["DOCKER_CONFIG"]) / "config.json"
    assert not config.exists(), "reconciler's docker client starts logged out"

    code, changes = project.plan()
    assert code == 2
    assert [(c["step"], c["action"]) for c in changes] == [
        ("images", "pull"),
        ("services", "create"),
    ]
    code, out = project.cli("apply", "--json", "-v", "--report", "report.md")
    assert code == 0, project.outputs[-1][-3000:]
    assert [(c["target"], c["action"]) for c in json.loads(out)["changes"]] == [
        (ref, "pull"),
        ("app", "create"),
    ]
    assert project.image_of("app") == pushed
    assert registry.host in json.loads(config.read_text())["auths"], "docker login stored it"
    code, changes = project.plan()
    assert (code, changes) == (0, []), "the digest read logs in again and finds the tag as is"

    everything = "\n".join(project.outputs)
    assert f"login --username tester --password-stdin {registry.host}" in everything
    assert "logged in to registry" in everything
    assert registry.password not in everything
    written = [path for path in project.directory.parent.rglob("*") if path.is_file()]
    assert any(path.name == "report.md" for path in written)
    for path in written:
        if path == config:
            continue  # docker's own credential store, as after a manual `docker login`
        assert registry.password.encode() not in path.read_bytes(), path


def test_pull_always_pulls_at_every_apply_and_recreates_only_when_the_image_changed(
    start_registry: Callable[..., Registry], make_project: Callable[[str], Project]
) -> None:
    registry = start_registry(OPEN_PORT)
    project = make_project("always")
    ref = f"{registry.host}/{project.name}/app:1"
    project.refs.append(ref)
    (project.directory / "docker-compose.yml").write_text(COMPOSE_AUTH.format(ref=ref))
    project.state_file.write_text(
        STATE_OPEN.format(ref=ref, project=project.name).replace("digest", "always")
    )
    first = project.push(ref, 1)
    code, _ = project.cli("apply")
    assert code == 0, project.outputs[-1][-3000:]
    assert project.image_of("app") == first
    before = project.containers()

    # Not idempotent by design: the plan always shows the pull; apply makes it, and converges.
    code, changes = project.plan()
    assert code == 2
    assert [(c["target"], c["action"]) for c in changes] == [(ref, "pull")]
    assert changes[0]["reason"].startswith("pull: always: pulled at every apply; present (")
    code, out = project.cli("apply", "--json")
    assert code == 0, project.outputs[-1][-3000:]
    assert [(c["target"], c["action"]) for c in json.loads(out)["changes"]] == [(ref, "pull")]
    assert project.containers() == before, "the same image: its service is left alone"

    # A moved tag: the pull brings another image, and the plan made after it recreates app.
    second = project.push(ref, 2)
    code, out = project.cli("apply", "--json")
    assert code == 0, project.outputs[-1][-3000:]
    assert [(c["target"], c["action"]) for c in json.loads(out)["changes"]] == [
        (ref, "pull"),
        ("app", "recreate"),
    ]
    assert project.containers()["app"] != before["app"]
    assert project.image_of("app") == second
