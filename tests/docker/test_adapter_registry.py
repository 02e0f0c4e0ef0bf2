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
import shlex
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.docker.adapter import DockerAdapter, manifest_digest
from reconciler.docker.facts import RegistryLogin, registry_host, repository
from reconciler.docker.retry import RetryPolicy
from reconciler.errors import PermanentDockerError, RegistryError
from reconciler.observe.snapshot import read_remote_digest
from reconciler.reconcile.loop import make_adapter
from reconciler.state import load_state
from tests.conftest import BUSYBOX, REPO, compose_down, run_cli
from tests.facts.fake_docker import first_on_path

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
        compose_down(["docker", *compose, "-p", project.name], "--timeout", "1")
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


@pytest.mark.docker
def test_pull_digest_follows_a_moved_tag_and_recreates_exactly_its_users(
    start_registry: Callable[..., Registry],
    make_project: Callable[[str], Project],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pull: digest` pulls, and a tag moved in the registry recreates exactly the services using it."""
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


@pytest.mark.docker
def test_registry_login_from_a_secret_then_pull_password_never_shown(
    start_registry: Callable[..., Registry], make_project: Callable[[str], Project]
) -> None:
    """A registry password from `secrets:` logs in and pulls, and is in no output, report or JSON."""
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


@pytest.mark.docker
def test_pull_always_pulls_at_every_apply_and_recreates_only_when_the_image_changed(
    start_registry: Callable[..., Registry], make_project: Callable[[str], Project]
) -> None:
    """`pull: always` pulls at every apply and recreates a service only when its image changed."""
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


# Registry images without an engine: the adapter's parsing of recorded registry answers
# (tests/facts/registry/), and `docker login` through a fake docker CLI that keeps what it got
# on stdin apart from its argv.


FACTS = Path(__file__).resolve().parent.parent / "facts"


REGISTRY = FACTS / "registry"


ERRORS = FACTS / "docker_errors"


FAST = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.0)


PASSWORD = "pw-" + "7f3c1a9e5b"  # what the fake registry accepts


PROBE = "127.0.0.1:18400/rtest-reg-probe"


MANIFEST = "sha256:2aefa9383cc3f135223dcd9c96b5efe8e62a5f1d6af5f7d38481e71bfdd9fe87"


INDEX = "sha256:9b7bfd72e45488049fcf714e2d79041077b38622a3224fa1a4241fafaa35186b"


def test_manifest_digest_of_a_single_platform_manifest() -> None:
    """`imagetools inspect --format '{{json .Manifest}}'` of a pushed image: its digest."""
    output = (REGISTRY / "imagetools-manifest.stdout").read_text()
    assert manifest_digest(output, f"{PROBE}:1") == MANIFEST


def test_manifest_digest_of_an_index_is_the_index_digest() -> None:
    """For a manifest list, the list's own digest (what RepoDigests records after a pull by
    tag), not one of its platform manifests."""
    output = (REGISTRY / "imagetools-index.stdout").read_text()
    assert MANIFEST in output, "the recorded index lists the platform manifest too"
    assert manifest_digest(output, f"{PROBE}:multi") == INDEX


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Name: x\nDigest: sha256:abc\n",
        '{"mediaType": "application/vnd.oci.image.index.v1+json", "size": 3}',
        '{"digest": "sha256:not-hex"}',
        '["sha256:' + "a" * 64 + '"]',
    ],
    ids=["empty", "text", "no-digest", "bad-digest", "not-an-object"],
)
def test_manifest_digest_refuses_anything_else(output: str) -> None:
    """An answer that is not a descriptor with a sha256 digest is a permanent error, named."""
    with pytest.raises(PermanentDockerError, match="unexpected answer for the manifest of x:1"):
        manifest_digest(output, "x:1")


@pytest.mark.parametrize(
    ("reference", "host", "repo"),
    [
        ("127.0.0.1:18400/app:1", "127.0.0.1:18400", "127.0.0.1:18400/app"),
        ("localhost:5000/team/app", "localhost:5000", "localhost:5000/team/app"),
        ("registry.example.com/app@sha256:" + "a" * 64, "registry.example.com", None),
        ("docker.io/library/redis:7", "docker.io", "redis"),
        ("redis", "docker.io", "redis"),
        ("team/app:2", "docker.io", "team/app"),
        ("[::1]:5000/app:2", "[::1]:5000", "[::1]:5000/app"),
    ],
)
def test_registry_host_and_repository_follow_dockers_rules(
    reference: str, host: str, repo: str | None
) -> None:
    """Registry host and repository of a reference follow docker's rules (docker.io default, ports)."""
    assert registry_host(reference) == host
    assert repository(reference) == (repo or "registry.example.com/app")


def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` first on PATH answering with recorded outputs: login (checking the password
    it reads on stdin), imagetools inspect, image inspect. Each argv goes to tmp/argv, each
    stdin to tmp/stdin; tmp/unreachable makes the registry unreachable."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, stdin, down = tmp_path / "argv", tmp_path / "stdin", tmp_path / "unreachable"
    script = bin_dir / "docker"
    q = shlex.quote
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {q(str(log))}\n'
        'case "$1" in\n'
        "login)\n"
        f"  pw=$(cat); printf '%s\\n' \"$pw\" >> {q(str(stdin))}\n"
        f"  if [ -e {q(str(down))} ]; then cat {q(str(ERRORS / 'login-registry-unreachable.stderr'))} >&2; exit 1; fi\n"
        f'  if [ "$pw" != {q(PASSWORD)} ]; then cat {q(str(ERRORS / "login-wrong-password.stderr"))} >&2; exit 1; fi\n'
        f"  cat {q(str(REGISTRY / 'login.stdout'))}; cat {q(str(REGISTRY / 'login.stderr'))} >&2 ;;\n"
        "buildx)\n"
        f"  if [ -e {q(str(down))} ]; then cat {q(str(ERRORS / 'imagetools-inspect-registry-unreachable.stderr'))} >&2; exit 1; fi\n"
        f"  cat {q(str(REGISTRY / 'imagetools-manifest.stdout'))} ;;\n"
        "image)\n"
        f'  if [ "$2" = inspect ]; then cat {q(str(REGISTRY / "image-inspect-pulled.stdout"))}; fi ;;\n'
        '*) echo "fake docker: unexpected $*" >&2; exit 99 ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    first_on_path(bin_dir, monkeypatch)
    return tmp_path


def adapter(tmp_path: Path, password: str = PASSWORD) -> DockerAdapter:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services: {}\n")
    return DockerAdapter(
        compose,
        "p",
        retry=FAST,
        secrets=lambda: {"REGISTRY_PASSWORD": password},
        registries={"127.0.0.1:18400": RegistryLogin("tester", "REGISTRY_PASSWORD")},
    )


def argv_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "argv").read_text().splitlines()


def test_login_once_per_run_before_the_first_registry_read_password_on_stdin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Login happens once per run before the first registry read, the password on stdin only."""
    fake_docker(tmp_path, monkeypatch)
    docker = adapter(tmp_path)
    assert docker.remote_digest(f"{PROBE}:1") == MANIFEST
    assert docker.remote_digest(f"{PROBE}:2") == MANIFEST
    lines = argv_lines(tmp_path)
    assert lines[0] == "login --username tester --password-stdin 127.0.0.1:18400"
    assert [line.split()[0] for line in lines] == ["login", "buildx", "buildx"], "login once"
    assert lines[1] == f"buildx imagetools inspect --format {{{{json .Manifest}}}} {PROBE}:1"
    assert (tmp_path / "stdin").read_text() == PASSWORD + "\n"
    recorded = " ".join(" ".join(call.argv) for call in docker.calls)
    assert PASSWORD not in recorded
    assert PASSWORD not in "\n".join(lines)
    assert not any(call.mutating for call in docker.calls), "login and reads change nothing"


def test_no_login_for_a_registry_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry without credentials is read with no `docker login` and nothing on stdin."""
    fake_docker(tmp_path, monkeypatch)
    docker = adapter(tmp_path)
    assert docker.remote_digest("127.0.0.1:18402/rtest-reg-probe:1") == MANIFEST
    assert [line.split()[0] for line in argv_lines(tmp_path)] == ["buildx"]
    assert not (tmp_path / "stdin").exists()


def test_a_failed_login_is_a_registry_error_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused login is a registry error whose message never holds the password."""
    fake_docker(tmp_path, monkeypatch)
    wrong = "wrong-" + "c0ffee1234"
    docker = adapter(tmp_path, password=wrong)
    with pytest.raises(RegistryError) as raised:
        docker.pull(f"{PROBE}:1")
    message = str(raised.value)
    assert message.startswith("registry 127.0.0.1:18400: docker login as tester failed: ")
    assert "401 Unauthorized" in message
    assert raised.value.exit_code == 1
    assert wrong not in message
    assert wrong not in repr(raised.value.__context__)
    assert [line.split()[0] for line in argv_lines(tmp_path)] == ["login"], "no pull after it"


def test_an_unreachable_registry_is_kept_as_the_fact_after_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login (a read for retries) and the digest read are retried on `connection refused`;
    what is left is the fact the images step turns into a RegistryError."""
    fake_docker(tmp_path, monkeypatch)
    (tmp_path / "unreachable").touch()
    found = read_remote_digest(adapter(tmp_path), f"{PROBE}:1")
    assert found.digest is None
    assert found.error is not None
    assert "docker login as tester failed" in found.error
    assert "connection refused" in found.error
    assert [line.split()[0] for line in argv_lines(tmp_path)] == ["login"] * FAST.attempts


def test_an_unreachable_registry_without_login_names_dockers_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable registry's digest read fails with docker's own reason."""
    fake_docker(tmp_path, monkeypatch)
    (tmp_path / "unreachable").touch()
    found = read_remote_digest(adapter(tmp_path), "127.0.0.1:18409/rtest-reg-probe:1")
    assert found.error == (
        'ERROR: failed to do request: Head "http://127.0.0.1:18409/v2/rtest-reg-probe/'
        'manifests/1": dial tcp 127.0.0.1:18409: connect: connection refused'
    )
    assert len(argv_lines(tmp_path)) == FAST.attempts, "a read: retried"


def test_image_facts_carry_repo_digests_all_of_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorded inspect of an image pulled both by manifest and through an index: both
    digests belong to its repository; the other registry's does not."""
    fake_docker(tmp_path, monkeypatch)
    image = adapter(tmp_path).images([f"{PROBE}:1"])[f"{PROBE}:1"]
    assert image.registry_digests(f"{PROBE}:1") == (MANIFEST, INDEX)
    assert image.registry_digests(f"{PROBE}:other-tag") == (MANIFEST, INDEX)
    assert image.registry_digests("127.0.0.1:18401/rtest-reg-probe:1") == (MANIFEST,)
    assert image.registry_digests("127.0.0.1:18400/elsewhere:1") == ()
