"""Secrets from a store (`secrets:`): sources, errors that never show a value, the adapter's
environment (never argv), compose's model read for which service uses which secret, and the
keyed-hash records. No docker: a fake `docker` first on PATH where one is needed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.main import main
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import BuildConfig
from reconciler.docker.parse import compose_config as _parse_compose_config
from reconciler.docker.retry import RetryPolicy
from reconciler.errors import ApplyError, InputError
from reconciler.secrets.redact import MASK, Secrets
from reconciler.secrets.store import SecretRecords, SecretStore, keyed_hash
from reconciler.state import State, load_state
from tests.conftest import BUSYBOX, REPO, compose_down, run_cli
from tests.facts.fake_docker import first_on_path

VALUE = "s3cr3t-Value-9f2a"
FAST = RetryPolicy(attempts=1, initial_delay=0.01, max_delay=0.01, jitter=0.0)


def state_with(tmp_path: Path, secrets: str, *, files: dict[str, str] | None = None) -> State:
    """A state file with `secrets:` given as YAML text, loaded as the CLI would."""
    (tmp_path / "compose.yml").write_text("services:\n  web:\n    image: web:1\n")
    for name, text in (files or {}).items():
        path = tmp_path / name
        path.write_text(text)
        if name.endswith(".sh"):
            path.chmod(path.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state.yaml"
    state.write_text(f"name: x\ncompose:\n  file: compose.yml\nsecrets:\n{secrets}")
    return load_state(state)


def test_env_source_reads_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `env:` secret source reads the named variable."""
    monkeypatch.setenv("RTSEC_FROM", VALUE)
    state = state_with(tmp_path, "  API_TOKEN: {env: RTSEC_FROM}\n")
    assert SecretStore(state).values() == {"API_TOKEN": VALUE}


def test_env_source_unset_names_the_variable_and_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset `env:` source is an input error naming the variable and the state's line."""
    monkeypatch.delenv("RTSEC_UNSET", raising=False)
    state = state_with(tmp_path, "  API_TOKEN: {env: RTSEC_UNSET}\n")
    with pytest.raises(InputError) as raised:
        SecretStore(state).values()
    assert str(raised.value).startswith(f"{tmp_path}/state.yaml:5:3: secrets.API_TOKEN: ")
    assert "RTSEC_UNSET is not set" in str(raised.value)


def test_file_source_strips_one_trailing_newline(tmp_path: Path) -> None:
    """A `file:` source strips one trailing newline and keeps everything else."""
    state = state_with(
        tmp_path,
        "  A: {file: a.txt}\n  B: {file: b.txt}\n  C: {file: c.txt}\n",
        files={"a.txt": VALUE + "\n", "b.txt": VALUE + "\r\n", "c.txt": f" {VALUE}\n\n"},
    )
    assert SecretStore(state).values() == {"A": VALUE, "B": VALUE, "C": f" {VALUE}\n"}


def test_file_source_unreadable_later_never_shows_content(tmp_path: Path) -> None:
    """A `file:` source that is not UTF-8 or is gone fails without showing its content."""
    state = state_with(tmp_path, "  A: {file: a.txt}\n", files={"a.txt": VALUE})
    (tmp_path / "a.txt").write_bytes(VALUE.encode() + b"\xff\xfe")
    with pytest.raises(InputError, match="is not UTF-8 text") as raised:
        SecretStore(state).values()
    assert VALUE not in str(raised.value)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(InputError, match="cannot read"):
        SecretStore(state).values()


def test_command_source_runs_once_per_run_and_registers_the_value(tmp_path: Path) -> None:
    """A `command:` source runs once per run and registers its value for redaction."""
    script = f'#!/bin/sh\necho run >> "{tmp_path}/runs"\necho "$1-{VALUE}"\n'
    state = state_with(
        tmp_path, "  API_TOKEN: {command: [./get.sh, prefix]}\n", files={"get.sh": script}
    )
    found = Secrets()
    store = SecretStore(state, register=found)
    assert store.values() == {"API_TOKEN": f"prefix-{VALUE}"}
    assert store() == {"API_TOKEN": f"prefix-{VALUE}"}  # from memory
    assert (tmp_path / "runs").read_text() == "run\n"
    assert found.redact(f"token prefix-{VALUE}.") == f"token {MASK}."


def test_failing_command_names_program_and_exit_code_never_its_output(tmp_path: Path) -> None:
    """A failing `command:` source names its program and exit code, never its output."""
    script = f'#!/bin/sh\necho "{VALUE}"\necho "error near {VALUE}" >&2\nexit 7\n'
    state = state_with(
        tmp_path, "  API_TOKEN: {command: [./get.sh, x]}\n", files={"get.sh": script}
    )
    with pytest.raises(ApplyError) as raised:
        SecretStore(state).values()
    message = str(raised.value)
    assert "secret API_TOKEN: ./get.sh exited 7" in message
    assert f"{tmp_path}/state.yaml:5:15: secrets.API_TOKEN.command" in message
    assert VALUE not in message
    assert "error near" not in message
    assert VALUE not in repr(raised.value.__cause__) + repr(raised.value.__context__)


def test_command_timeout_is_an_error_and_the_program_is_stopped(tmp_path: Path) -> None:
    """A `command:` source past its timeout is an error and its program is stopped."""
    finished = tmp_path / "finished"
    script = f'#!/bin/sh\necho "{VALUE}"\nsleep 30\ntouch "{finished}"\n'
    state = state_with(
        tmp_path, "  API_TOKEN: {command: [./get.sh], timeout: 0.3}\n", files={"get.sh": script}
    )
    with pytest.raises(
        ApplyError, match=r"API_TOKEN: \./get\.sh did not finish within 0\.3 s"
    ) as raised:
        SecretStore(state).values()
    assert not finished.exists(), "the program ran to its end"
    assert VALUE not in str(raised.value)


def test_command_printing_nothing_is_an_error(tmp_path: Path) -> None:
    """A `command:` source that prints nothing is an error."""
    state = state_with(tmp_path, "  API_TOKEN: {command: ['true']}\n")
    with pytest.raises(ApplyError, match="printed nothing"):
        SecretStore(state).values()


def test_keyed_hash_depends_on_key_name_and_value() -> None:
    """The keyed hash depends on the key, the name and the value, and never shows the value."""
    key, other = b"k" * 32, b"o" * 32
    digest = keyed_hash(key, "API_TOKEN", VALUE)
    assert digest.startswith("hmac-sha256:")
    assert VALUE not in digest
    assert digest == keyed_hash(key, "API_TOKEN", VALUE)
    assert digest != keyed_hash(other, "API_TOKEN", VALUE)
    assert digest != keyed_hash(key, "OTHER", VALUE)
    assert digest != keyed_hash(key, "API_TOKEN", VALUE + "x")


def test_records_key_is_private_and_made_only_on_demand(tmp_path: Path) -> None:
    """The secret records' key is private to its user and made only when first needed."""
    records = SecretRecords("proj", tmp_path / "state")
    assert records.key() is None
    assert records.read() == {}
    assert not (tmp_path / "state").exists(), "reading makes nothing"
    key = records.ensure_key()
    assert records.ensure_key() == key
    assert len(key) == 32
    assert stat.S_IMODE(records.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(records.directory.stat().st_mode) == 0o700
    records.write({"cid": {"API_TOKEN": keyed_hash(key, "API_TOKEN", VALUE)}})
    assert stat.S_IMODE(records.path.stat().st_mode) == 0o600
    assert records.read() == {"cid": {"API_TOKEN": keyed_hash(key, "API_TOKEN", VALUE)}}
    assert VALUE not in records.path.read_text()
    records.path.write_text("{not json")
    assert records.read() == {}, "a damaged record is treated as none"


COMPOSE_MODEL = {
    "name": "p",
    "services": {
        "api": {
            "image": "api:1",
            "environment": {"API_TOKEN": VALUE, "URL": f"https://u:{VALUE}@h/"},
            "build": {"context": "/c", "args": {"NPM": "other-value"}},
        },
        "builder": {"image": "b:1", "build": {"context": "/c", "args": {"NPM": "npm-Value-77"}}},
        "reader": {"image": "api:1", "secrets": [{"source": "token"}]},
        "config_user": {"image": "api:1", "configs": [{"source": "conf"}]},
        "web": {"image": "web:1"},
    },
    "secrets": {"token": {"name": "p_token", "environment": "API_TOKEN"}},
    "configs": {"conf": {"name": "p_conf", "content": "key=npm-Value-77\n"}},
}


def test_compose_model_tells_which_service_uses_which_secret() -> None:
    """Hashed: the value is in the service (build left out, as compose's hash does); unhashed:
    through a compose secret or config fed from the environment or interpolated content."""
    values = {"API_TOKEN": VALUE, "NPM_TOKEN": "npm-Value-77"}
    config = _parse_compose_config(COMPOSE_MODEL, secrets=values)
    services = config.services
    assert services["api"].secrets_hashed == ("API_TOKEN",)
    assert services["builder"].secrets_hashed == ()
    assert services["reader"].secrets_unhashed == ("API_TOKEN",)
    assert services["config_user"].secrets_unhashed == ("NPM_TOKEN",)
    assert (services["web"].secrets_hashed, services["web"].secrets_unhashed) == ((), ())
    assert _parse_compose_config(COMPOSE_MODEL).services["api"].secrets_hashed == ()


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` first on PATH recording, per call, its argv and whether API_TOKEN/NPM reached it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s|token=%s|npm=%s\\n" "$*" "${{API_TOKEN:-unset}}" "${{NPM:-unset}}" '
        f'>> "{tmp_path}/calls"\n'
        'case "$*" in *"config --format json"*) '
        'printf \'{"name": "p", "services": {"web": {"image": "web:1", '
        '"environment": {"T": "%s"}}}}\' "$API_TOKEN";; esac\n'
    )
    script.chmod(0o755)
    first_on_path(bin_dir, monkeypatch)
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.delenv("NPM", raising=False)
    return tmp_path / "calls"


def test_secrets_reach_compose_calls_through_the_environment_only(
    tmp_path: Path, fake_docker: Path
) -> None:
    """Secrets reach compose calls through the environment only, never through argv."""
    compose = tmp_path / "compose.yml"
    compose.write_text("services: {}\n")
    adapter = DockerAdapter(compose, "p", retry=FAST, secrets=lambda: {"API_TOKEN": VALUE})
    config = adapter.compose_config()
    assert config.services["web"].secrets_hashed == ("API_TOKEN",)
    adapter.resolved_config_hashes(config)
    adapter.containers()
    adapter.up(["web"])
    adapter.down(volumes=False)
    calls = fake_docker.read_text().splitlines()
    assert all(VALUE not in call.partition("|")[0] for call in calls), "never in argv"
    assert all(VALUE not in " ".join(c.argv) for c in adapter.calls)
    by_kind = {call.split("|")[0].split()[-1]: call for call in calls}
    for compose_call in ("json", "*", "web", "down"):
        assert f"token={VALUE}" in by_kind[compose_call], compose_call
    assert "token=unset" in by_kind["label=com.docker.compose.project=p"], (
        "plain docker calls: none"
    )
    assert "API_TOKEN" not in os.environ, "never put into reconciler's own environment"


def test_a_build_arg_holding_a_secret_is_passed_by_name(tmp_path: Path, fake_docker: Path) -> None:
    """A build arg holding a secret is passed by name, its value through the environment."""
    compose = tmp_path / "compose.yml"
    compose.write_text("services: {}\n")
    adapter = DockerAdapter(compose, "p", retry=FAST, secrets=lambda: {"NPM_TOKEN": VALUE})
    build = BuildConfig(tmp_path, tmp_path / "Dockerfile", args={"NPM": VALUE, "ROLE": "api"})
    adapter.build("img:1", build, {})
    (call,) = fake_docker.read_text().splitlines()
    argv, _, env = call.partition("|")
    assert VALUE not in argv
    assert "--build-arg NPM --build-arg ROLE=api" in argv
    assert f"npm={VALUE}" in env


def test_records_written_only_by_apply_survive_as_json(tmp_path: Path) -> None:
    """The records file is plain JSON a person can inspect: container ids and keyed hashes."""
    records = SecretRecords("proj", tmp_path)
    key = records.ensure_key()
    records.write({"c2": {"B": "hmac-sha256:2"}, "c1": {"A": keyed_hash(key, "A", VALUE)}})
    data = json.loads(records.path.read_text())
    assert data["version"] == 1
    assert list(data["containers"]) == ["c1", "c2"]


def test_cli_failing_secret_command_exits_1_before_any_docker_call(
    tmp_path: Path, fake_docker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan and apply stop at the secret (exit 1), say which program failed how, show nothing
    of its output, and never run docker."""
    script = f'#!/bin/sh\necho "{VALUE}"\necho "denied for {VALUE}" >&2\nexit 4\n'
    state = state_with(tmp_path, "  API_TOKEN: {command: [./get.sh]}\n", files={"get.sh": script})
    for command in ("plan", "apply"):
        code = main([command, str(state.source), "--log-format", "json", "-v"])
        captured = capsys.readouterr()
        assert code == 1, captured.err
        assert "secret API_TOKEN: ./get.sh exited 4" in captured.err
        assert VALUE not in captured.out + captured.err
    assert not fake_docker.exists(), "no docker call was made"


# Secrets from a store, end to end on the real engine: a `command:` source (a stand-in for
# `op read`) feeds `${API_TOKEN:?...}` and a compose secret fed from the environment; the value
# reaches the containers and nothing else, and a changed secret recreates exactly its users.


COMPOSE = """\
x-box: &box
  build: ./image
  image: {project}-box:1
  stop_signal: SIGKILL
services:
  app:
    <<: *box
    environment:
      API_TOKEN: ${{API_TOKEN:?API_TOKEN is required}}
  reader:
    <<: *box
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
  API_TOKEN: {{command: [{vault}, read, api-token], timeout: 20}}
"""


DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sleep", "3600"]
"""


@dataclass
class Project:
    directory: Path  # the compose project: state, compose file, build context
    vault: Path  # the secret store's files, outside the project
    project: str
    env: dict[str, str]

    @property
    def state_file(self) -> Path:
        return self.directory / "state.yaml"

    def set_token(self, value: str) -> None:
        (self.vault / "api-token").write_text(value + "\n")

    def cli(self, *args: str, outputs: list[str]) -> tuple[int, str]:
        """Run the CLI on the state; keep both streams in `outputs`; return exit code, stdout."""
        done = run_cli(args[0], self.state_file, *args[1:], env=self.env, cwd=self.directory)
        outputs += [done.stdout, done.stderr]
        return done.returncode, done.stdout

    def container_ids(self) -> dict[str, str]:
        label = f"label=com.docker.compose.project={self.project}"
        rows = subprocess.run(
            ["docker", "ps", "-a", "--filter", label, "--format", "{{.ID}} {{.Names}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        ids = {}
        for row in filter(None, rows):
            cid, name = row.split()
            ids[name.removeprefix(f"{self.project}-").removesuffix("-1")] = cid
        return ids

    def in_container(self, service: str, *argv: str) -> str:
        return subprocess.run(
            ["docker", "exec", f"{self.project}-{service}-1", *argv],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()


@pytest.fixture
def project(docker_engine: None, tmp_path: Path) -> Iterator[Project]:
    name = f"rtsec{uuid.uuid4().hex[:8]}"
    directory, vault = tmp_path / "project", tmp_path / "vault"
    (directory / "image").mkdir(parents=True)
    vault.mkdir()
    shutil.copy2(BUSYBOX, directory / "image" / "busybox")
    (directory / "image" / "Dockerfile").write_text(DOCKERFILE)
    op = vault / "op"  # `op read NAME`: prints the stored value, as 1Password's CLI would
    op.write_text('#!/bin/sh\n[ "$1" = read ] || exit 2\ncat "$(dirname "$0")/$2"\n')
    op.chmod(0o755)
    (directory / "docker-compose.yml").write_text(COMPOSE.format(project=name))
    (directory / "state.yaml").write_text(STATE.format(project=name, vault=op))
    env = {
        **os.environ,
        "RECONCILER_STATE_DIR": str(tmp_path / "reconciler-state"),
        "PYTHONPATH": str(REPO),  # this checkout's reconciler, whatever the cwd
    }
    env.pop("API_TOKEN", None)
    created = Project(directory, vault, name, env)
    try:
        yield created
    finally:
        compose = ["docker", "compose", "-f", str(directory / "docker-compose.yml"), "-p", name]
        compose_down(
            compose, "--volumes", "--timeout", "1", env={**os.environ, "API_TOKEN": "cleanup"}
        )
        subprocess.run(
            ["docker", "image", "rm", "-f", f"{name}-box:1"], capture_output=True, check=False
        )


def changes(stdout: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(stdout)["changes"]
    return result


@pytest.mark.docker
def test_secret_from_a_command_converges_drifts_by_keyed_hash_and_is_never_written(
    project: Project,
) -> None:
    """A secret from a command converges, drifts by its keyed hash, and is never written anywhere."""
    first, second = (f"tok-{kind}-{uuid.uuid4().hex[:16]}" for kind in ("first", "second"))
    project.set_token(first)
    outputs: list[str] = []

    code, out = project.cli("plan", "--json", outputs=outputs)
    assert code == 2, outputs[-1][-2000:]
    planned = {(c["step"], c["target"], c["action"]) for c in changes(out)}
    assert {("services", s, "create") for s in ("app", "reader", "other")} <= planned
    code, _ = project.cli("apply", "-v", "--report", "report.md", outputs=outputs)
    assert code == 0, outputs[-1][-3000:]
    code, out = project.cli("plan", "--json", outputs=outputs)
    assert (code, changes(out)) == (0, []), "a second plan is empty"
    assert f"API_TOKEN={first}" in project.in_container("app", "env").splitlines()
    assert project.in_container("reader", "cat", "/run/secrets/token") == first
    before = project.container_ids()

    project.set_token(second)
    code, out = project.cli("plan", "--json", "-v", outputs=outputs)
    assert code == 2, outputs[-1][-2000:]
    drift = {c["target"]: c for c in changes(out)}
    assert set(drift) == {"app", "reader"}, "exactly the services that use the secret"
    assert drift["app"]["reason"] == "secret API_TOKEN changed (config hash differs)"
    assert drift["reader"]["reason"].startswith("secret API_TOKEN changed (not covered")
    code, _ = project.cli("plan", "--log-format", "console", outputs=outputs)
    assert code == 2
    code, out = project.cli("apply", "--json", "-v", "--report", "report2.md", outputs=outputs)
    assert code == 0, outputs[-1][-3000:]
    assert {c["target"] for c in changes(out)} == {"app", "reader"}
    after = project.container_ids()
    assert after["other"] == before["other"], "the service without the secret is left alone"
    assert after["app"] != before["app"]
    assert after["reader"] != before["reader"]
    assert f"API_TOKEN={second}" in project.in_container("app", "env").splitlines()
    assert project.in_container("reader", "cat", "/run/secrets/token") == second
    code, out = project.cli("plan", "--json", outputs=outputs)
    assert (code, changes(out)) == (0, [])

    code, _ = project.cli("down", outputs=outputs)  # compose interpolates for down too
    assert code == 0, outputs[-1][-2000:]
    assert project.container_ids() == {}

    everything = "\n".join(outputs)
    assert "docker call" in everything, "debug logs were searched too"
    written = [project.directory, project.directory.parent / "reconciler-state"]
    files = [path for top in written for path in top.rglob("*") if path.is_file()]
    assert any(path.name == "report2.md" for path in files)
    assert any(path.name == "secrets.json" for path in files), "the keyed-hash records"
    for token in (first, second):
        assert token not in everything, "a secret value was printed"
        for path in files:
            assert token.encode() not in path.read_bytes(), f"{token} written to {path}"
