"""The model as the compose-file step's env-file edits leave it (`reconciler.observe.planned`), with no
docker: every kind of value compose interpolates marks its service, with the variable and the
key path; the values later steps read (image, build, scale, environment) take their new value."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

import reconciler
from reconciler.docker.facts import (
    BuildConfig,
    ChangedValue,
    ComposeConfig,
    ContainerFacts,
    ImageFacts,
    ServiceConfig,
)
from reconciler.observe.planned import planned_images, planned_model, referenced_variables
from reconciler.plans import Action, Step
from reconciler.reconcile.loop import make_adapter
from reconciler.runtime.interrupt import StopToken
from reconciler.state import State
from reconciler.state.model import ComposeSpec, FileSpec
from tests.conftest import BUSYBOX, STACK, Stack, remove_stack, run_cli
from tests.reconcile.test_loop import container_ids

COMPOSE_FILE = Path("/p/docker-compose.yml")
ENV = Path("/p/.env")


def _state(values: dict[str, str]) -> State:
    """A state whose `files:` sets `values` in the implicit .env next to the compose file."""
    return State(
        name="t",
        compose=ComposeSpec(file=COMPOSE_FILE),
        files={str(ENV): FileSpec.model_validate({"set": values})},
    )


def _config(build: bool = False, scale: int = 1) -> ComposeConfig:
    """compose's model before the edit, of one service `app` (and a `base` it may extend)."""
    context = Path("/p")
    app = ServiceConfig(
        name="app",
        image="app:1",
        build=BuildConfig(context, context / "Dockerfile", {"MODE": "1"}) if build else None,
        environment={"MODE": "1", "V": "1"},
        scale=scale,
    )
    return ComposeConfig(project="p", services={"app": app, "base": ServiceConfig(name="base")})


def _plan(compose: str, *, env: str = "V=1\n", build: bool = False) -> ComposeConfig:
    """The planned model when `files:` changes V from 1 to 2 in .env."""
    return planned_model(_state({"V": "2"}), _config(build), compose, {ENV: env}, environment={})


# (id, compose text, where the service `app` interpolates V, covered by compose's hash)
KINDS = [
    ("image", "services:\n  app:\n    image: app:${V}\n", "image", True),
    (
        "environment-map",
        "services:\n  app:\n    environment: {MODE: '${V}'}\n",
        "environment.MODE",
        True,
    ),
    (
        "environment-list",
        "services:\n  app:\n    environment: ['MODE=$V']\n",
        "environment.0",
        True,
    ),
    (
        "environment-bare-map",
        "services:\n  app:\n    environment:\n      V:\n",
        "environment.V",
        True,
    ),
    ("environment-bare-list", "services:\n  app:\n    environment: [V]\n", "environment.V", True),
    ("ports", "services:\n  app:\n    ports: ['808${V}:80']\n", "ports.0", True),
    (
        "ports-long",
        "services:\n  app:\n    ports: [{target: 80, published: '808${V}'}]\n",
        "ports.0.published",
        True,
    ),
    ("labels-map", "services:\n  app:\n    labels: {tier: '${V}'}\n", "labels.tier", True),
    ("labels-list", "services:\n  app:\n    labels: ['tier=${V}']\n", "labels.0", True),
    ("command", "services:\n  app:\n    command: run --level $V\n", "command", True),
    ("entrypoint", "services:\n  app:\n    entrypoint: ['/bin/${V}']\n", "entrypoint.0", True),
    ("volumes", "services:\n  app:\n    volumes: ['./data${V}:/data']\n", "volumes.0", True),
    (
        "healthcheck",
        "services:\n  app:\n    healthcheck: {test: [CMD, check, '${V}']}\n",
        "healthcheck.test.2",
        True,
    ),
    ("env_file", "services:\n  app:\n    env_file: ['conf/${V}.env']\n", "env_file.0", True),
    ("working_dir", "services:\n  app:\n    working_dir: /srv/${V}\n", "working_dir", True),
    ("user", "services:\n  app:\n    user: '${V}'\n", "user", True),
    ("scale", "services:\n  app:\n    scale: ${V}\n", "scale", True),
    (
        "deploy-replicas",
        "services:\n  app:\n    deploy: {replicas: '${V}'}\n",
        "deploy.replicas",
        True,
    ),
    (
        "build-context",
        "services:\n  app:\n    build: {context: './ctx${V}'}\n",
        "build.context",
        True,
    ),
    (
        "build-args-map",
        "services:\n  app:\n    build: {context: ., args: {MODE: $V}}\n",
        "build.args.MODE",
        True,
    ),
    (
        "build-args-list",
        "services:\n  app:\n    build: {context: ., args: ['MODE=${V}']}\n",
        "build.args.0",
        True,
    ),
    (
        "build-args-bare",
        "services:\n  app:\n    build: {context: ., args: [V]}\n",
        "build.args.V",
        True,
    ),
    (
        "build-target",
        "services:\n  app:\n    build: {context: ., target: 'stage${V}'}\n",
        "build.target",
        True,
    ),
    (
        "nested-default",
        "services:\n  app:\n    environment: {MODE: '${UNSET:-${V}}'}\n",
        "environment.MODE",
        True,
    ),
    (
        "merge-key",
        "x-common: &common\n  environment: {MODE: '${V}'}\nservices:\n  app:\n    <<: *common\n",
        "environment.MODE",
        True,
    ),
    (
        "extends",
        "services:\n  base:\n    environment: {MODE: '${V}'}\n  app:\n    extends: base\n",
        "environment.MODE",
        True,
    ),
    (
        "config-content",
        "services:\n  app:\n    configs: [conf]\nconfigs:\n  conf: {content: 'level ${V}'}\n",
        "configs.conf.content",
        False,
    ),
    (
        "config-environment",
        "services:\n  app:\n    configs: [{source: conf}]\nconfigs:\n  conf: {environment: V}\n",
        "configs.conf.environment",
        False,
    ),
    (
        "secret-file",
        "services:\n  app:\n    secrets: [s]\nsecrets:\n  s: {file: './s${V}.txt'}\n",
        "secrets.s.file",
        False,
    ),
]


@pytest.mark.parametrize(
    ("compose", "where", "hashed"),
    [pytest.param(compose, where, hashed, id=name) for name, compose, where, hashed in KINDS],
)
def test_each_interpolated_field_kind_marks_its_service(
    compose: str, where: str, hashed: bool
) -> None:
    """A changed variable in this kind of value marks the service, naming V and the key path."""
    planned = _plan(compose, build="build" in compose)
    assert planned.services["app"].edited == (ChangedValue(where, ("V",), hashed),)


def test_unchanged_model_is_returned_as_is() -> None:
    """No edit planned (the value is already there): the observed model, the same object."""
    config = _config()
    compose = "services:\n  app:\n    image: app:${V}\n"
    assert (
        planned_model(_state({"V": "1"}), config, compose, {ENV: "V=1\n"}, environment={}) is config
    )


def test_values_the_later_steps_read_take_their_new_value() -> None:
    """Image, environment, build args and context, and scale become what the edit makes them."""
    compose = (
        "services:\n  app:\n    image: app:${V}\n    scale: $V\n"
        "    environment: [MODE=$V, V]\n"
        "    build: {context: './ctx$V', args: {MODE: '${V}'}}\n"
    )
    app = _plan(compose, build=True).services["app"]
    assert (app.image, app.scale) == ("app:2", 2)
    assert app.environment == {"MODE": "2", "V": "2"}
    assert app.build == BuildConfig(
        Path("/p/ctx2"), Path("/p/ctx2/Dockerfile"), {"MODE": "2"}, None
    )


def test_a_value_the_change_leaves_alone_marks_nothing() -> None:
    """`${V:+on}` is `on` for V=1 and V=2, and an overridden inherited value is not inherited."""
    compose = (
        "services:\n  base:\n    image: base:${V}\n"
        "  app:\n    extends: base\n    image: app:1\n    labels: {on: '${V:+on}'}\n"
    )
    planned = _plan(compose)
    assert planned.services["app"].edited == ()
    assert planned.services["base"].edited == (ChangedValue("image", ("V",)),)


def test_the_process_environment_wins_over_the_edit() -> None:
    """A variable set in compose's own environment does not change with the env file."""
    compose = "services:\n  app:\n    image: app:${V}\n"
    config = _config()
    planned = planned_model(
        _state({"V": "2"}), config, compose, {ENV: "V=1\n"}, environment={"V": "9"}
    )
    assert planned is config


def test_a_variable_defined_from_the_edited_one_changes_too() -> None:
    """`TAG=${V}-x` in the env file: editing V changes TAG, and so the image using TAG."""
    compose = "services:\n  app:\n    image: app:${TAG}\n"
    planned = _plan(compose, env="V=1\nTAG=${V}-x\n")
    assert planned.services["app"].edited == (ChangedValue("image", ("TAG",)),)
    assert planned.services["app"].image == "app:2-x"


def test_planned_images_are_the_new_references() -> None:
    """The references the edit makes services name, for the observation's first inspect."""
    compose = "services:\n  app:\n    image: app:${V}\n  base:\n    image: base:1\n"
    assert planned_images(_state({"V": "2"}), compose, {ENV: "V=1\n"}, environment={}) == {"app:2"}


def test_referenced_variables_cover_the_services_and_the_env_files() -> None:
    """Names in any service value, bare entries, used configs, and the env files' own values."""
    compose = (
        "services:\n  app:\n    image: a:${TAG:-${FALLBACK}}\n    environment: [BARE]\n"
        "    configs: [c]\nconfigs:\n  c: {environment: FROM_CONFIG}\n"
    )
    env = "TAG=${BASE}\nINHERITED\nPLAIN=x\n"
    assert referenced_variables(compose, {ENV: env, Path("/p/missing.env"): None}) == {
        "TAG",
        "FALLBACK",
        "BARE",
        "FROM_CONFIG",
        "BASE",
        "INHERITED",
    }


def test_an_alias_bomb_is_walked_once_per_node() -> None:
    """Nine levels of ten aliases (10**9 leaves expanded) are walked in their own size."""
    lines = ["x-0: &a0 ['${V}']"]
    lines += [f"x-{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    compose = "\n".join(lines) + "\nservices:\n  app:\n    labels: *a9\n"
    edited = _plan(compose).services["app"].edited
    assert [value.where for value in edited] == ["labels" + ".0" * 10]


HOMELAB = """\
services:
  backend:
    image: ghcr.io/kpiteira/ktrdr-backend:${IMAGE_TAG:-latest}
  mcp:
    image: ghcr.io/kpiteira/ktrdr-backend:${IMAGE_TAG:-latest}
    command: ["python", "-m", "mcp_server"]
"""
OLD, NEW = "ghcr.io/kpiteira/ktrdr-backend:latest", "ghcr.io/kpiteira/ktrdr-backend:abc123"


@dataclass
class _ObservedDocker:
    """What the observation asks docker, answered as on the homelab before the edit: compose's
    model names the old tag for both services, whose containers run it; only it is local."""

    asked: list[set[str]] = field(default_factory=list)
    swarm: bool = False
    project_name: str = "homelab"
    stop: StopToken = field(default_factory=StopToken)

    def secret_values(self) -> dict[str, str]:
        return {}

    def resume_reads(self) -> None:
        """Nothing to resume."""

    def abandon_reads(self) -> None:
        """Nothing in flight."""

    def compose_config(self) -> ComposeConfig:
        services = {name: ServiceConfig(name=name, image=OLD) for name in ("backend", "mcp")}
        return ComposeConfig(project="homelab", services=services)

    def containers(self) -> list[ContainerFacts]:
        return [
            ContainerFacts(
                f"id-{name}", f"homelab-{name}-1", name, "running", None, 0, "h", "sha-old"
            )
            for name in ("backend", "mcp")
        ]

    def images(self, references: Iterable[str]) -> dict[str, ImageFacts]:
        self.asked.append(set(references))
        return {ref: ImageFacts(ref, "sha-old") for ref in self.asked[-1] if ref == OLD}


def test_the_observation_hands_later_steps_the_edited_model(tmp_path: Path) -> None:
    """Through observe: pinning backend pulls the NEW tag once (inspected in the first round,
    no extra docker call), nothing for the old one, and recreates backend and mcp."""
    (tmp_path / "compose.yml").write_text(HOMELAB)
    (tmp_path / ".env.core").write_text("IMAGE_TAG=latest\n")
    (tmp_path / "state.yaml").write_text(
        "name: homelab\ncompose:\n  file: compose.yml\n  env_files: [.env.core]\n"
        f"services:\n  backend: {{image: '{NEW}'}}\n"
    )
    docker = _ObservedDocker()
    state = reconciler.load_state(tmp_path / "state.yaml")
    plan = reconciler.plan(
        state, steps=(Step.COMPOSE_FILE, Step.IMAGES, Step.SERVICES), adapter=cast(Any, docker)
    )
    assert [(c.step, c.target, c.action) for c in plan.changes] == [
        (Step.COMPOSE_FILE, ".env.core:IMAGE_TAG", Action.EDIT),
        (Step.IMAGES, NEW, Action.PULL),
        (Step.SERVICES, "backend", Action.RECREATE),
        (Step.SERVICES, "mcp", Action.RECREATE),
    ]
    assert "IMAGE_TAG" in plan.changes[3].reason
    assert docker.asked == [{NEW}]  # one inspect, of the new tag only


# End to end on the real engine: one apply converges when the state changes a variable compose
# interpolates through an env file, in a service's environment (the implicit `.env`) or in an
# image two services share (`.env.core`, the homelab's `${IMAGE_TAG:-latest}`); the next plan is
# empty and the next apply makes no mutating docker call. Project names start with `cv-`.


def _free_port() -> int:
    """A loopback port nothing listens on now (the api publishes it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def cv_stack(docker_engine: None, tmp_path: Path) -> Iterator[Stack]:
    """A private copy of the e2e stack under a `cv-` project, torn down afterwards."""
    project = f"cv-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    shutil.copy2(BUSYBOX, directory / "busybox")
    for name in ("docker-compose.yml", "state.yaml"):
        path = directory / name
        text = path.read_text().replace("rtest-", f"{project}-").replace("rtest", project)
        path.write_text(text.replace("${RTEST_API_PORT:-18080}", str(port)))
    created = Stack(directory, project, port)
    try:
        yield created
    finally:
        remove_stack(created)


def _plan_env_converge(stack: Stack) -> tuple[int, list[dict[str, Any]]]:
    """Exit code and changes of `plan --json`."""
    done = run_cli("plan", stack.state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def _inspect(container: str, template: str) -> str:
    """One `docker inspect --format` value of a container."""
    return subprocess.run(
        ["docker", "inspect", "--format", template, container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _env_of(container: str) -> dict[str, str]:
    """A container's environment."""
    items: list[str] = json.loads(_inspect(container, "{{json .Config.Env}}"))
    return dict(item.split("=", 1) for item in items)


def _second_apply_changes_nothing(stack: Stack) -> None:
    """The idempotence tail: the plan is empty (exit 0), and an apply through the library
    changes nothing, with not one mutating docker call (counted)."""
    assert _plan_env_converge(stack) == (0, [])
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.mutating_calls == [], adapter.mutating_calls


def _state_env_converge(stack: Stack, extra: str) -> None:
    """The stack's own state file, with `extra` appended (a `files:` section)."""
    state = (STACK / "state.yaml").read_text().replace("rtest", stack.project)
    stack.state_file.write_text(state + extra)


@pytest.mark.docker
def test_one_apply_converges_a_dotenv_variable_in_an_environment(cv_stack: Stack) -> None:
    """`files:` changes APP_MODE in .env, which the worker reads as `MODE: ${APP_MODE}`: one apply
    recreates the worker (and only it), the next plan is empty, the next apply changes nothing."""
    stack = cv_stack
    compose = stack.compose_file.read_text()
    anchor = f"    image: {stack.project}-worker:1\n"
    assert anchor in compose
    stack.compose_file.write_text(
        compose.replace(anchor, anchor + '    environment:\n      MODE: "${APP_MODE}"\n')
    )
    (stack.directory / ".env").write_text("APP_MODE=a\n")

    # 1. Converge with APP_MODE=a: plan (changes) -> apply -> plan (empty) -> apply (no call).
    _state_env_converge(stack, "files:\n  .env: {set: {APP_MODE: a}}\n")
    assert _plan_env_converge(stack)[0] == 2
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    _second_apply_changes_nothing(stack)
    before = container_ids(stack)
    assert _env_of(before["worker"])["MODE"] == "a"

    # 2. APP_MODE=b: the plan edits .env and recreates the worker, naming the variable.
    _state_env_converge(stack, "files:\n  .env: {set: {APP_MODE: b}}\n")
    code, changes = _plan_env_converge(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", ".env:APP_MODE", "edit"),
        ("services", "worker", "recreate"),
    ]
    assert "APP_MODE" in changes[1]["reason"]
    assert "environment.MODE" in changes[1]["reason"]

    # 3. ONE apply converges (exit 0), recreating the worker alone.
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stdout + done.stderr
    after = container_ids(stack)
    assert after["worker"] != before["worker"]
    assert (after["db"], after["api"]) == (before["db"], before["api"])
    assert _env_of(after["worker"])["MODE"] == "b"
    assert (stack.directory / ".env").read_text() == "APP_MODE=b\n"
    _second_apply_changes_nothing(stack)
    assert container_ids(stack) == after


@pytest.mark.docker
def test_one_apply_converges_an_image_tag_two_services_share(cv_stack: Stack) -> None:
    """The homelab shape: api builds `…-api:${IMAGE_TAG:-1}` and mcp runs the same image, the
    tag in .env.core. Pinning api to tag 2 edits .env.core once, builds tag 2 (never tag 1
    again), recreates both in one apply; then the plan is empty and an apply changes nothing."""
    stack = cv_stack
    compose = stack.compose_file.read_text()
    pinned = f'    image: "{stack.project}-api:1"   # pinned by the state\n'
    assert pinned in compose
    shared = f'    image: "{stack.project}-api:${{IMAGE_TAG:-latest}}"\n'
    mcp = (
        "  mcp:\n"
        + shared
        + "    environment: {PORT: '8081'}\n"
        + "    depends_on: {api: {condition: service_healthy}}\n"
    )
    stack.compose_file.write_text(compose.replace(pinned, shared) + "\n" + mcp)
    (stack.directory / ".env.core").write_text("# homelab core\nIMAGE_TAG=1\n")

    def state(tag: str) -> None:
        stack.state_file.write_text(
            f"name: {stack.project}\ncompose:\n  file: docker-compose.yml\n"
            f"  project: {stack.project}\n  env_files: [.env.core]\n"
            f"services:\n  db: {{image: {stack.image('db')}}}\n"
            f"  api: {{image: {stack.image('api', tag)}, health_timeout: 60}}\n"
            f"  worker: {{image: {stack.image('worker')}}}\n"
        )

    state("1")
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    _second_apply_changes_nothing(stack)
    before = container_ids(stack)

    state("2")
    code, changes = _plan_env_converge(stack)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", ".env.core:IMAGE_TAG", "edit"),
        ("images", stack.image("api", "2"), "build"),
        ("services", "api", "recreate"),
        ("services", "mcp", "recreate"),
    ]
    assert "also changes the image of mcp" in changes[0]["reason"]
    assert "IMAGE_TAG" in changes[3]["reason"]

    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stdout + done.stderr
    after = container_ids(stack)
    assert after["mcp"] != before["mcp"]
    assert after["api"] != before["api"]
    assert (after["db"], after["worker"]) == (before["db"], before["worker"])
    for service in ("api", "mcp"):
        assert _inspect(after[service], "{{.Config.Image}}") == stack.image("api", "2")
    _second_apply_changes_nothing(stack)
    assert container_ids(stack) == after
