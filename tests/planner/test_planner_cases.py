"""Planner cases as data: desired state + observed facts -> expected changes (no docker).

Each file in cases/ is one case; adding a case needs no code. The format is the `Case` model in
case_schema.py (cases/README.md explains it); every file is validated against it first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    ContainerFacts,
    ImageFacts,
    InputSource,
    RemoteDigest,
    ServiceConfig,
    SwarmService,
    SwarmTask,
)
from reconciler.errors import InputError, RegistryError
from reconciler.observe.facts import MigrationStatus
from reconciler.observe.inputs import InputDigest
from reconciler.observe.managed_files import ObservedFile
from reconciler.observe.planned import planned_model
from reconciler.observe.snapshot import (
    DOCKER_STEPS,
    check_active_services,
    check_compose_services,
    image_sources,
)
from reconciler.plans import Action, Plan, Step
from reconciler.reconcile.loop import diff
from reconciler.state import State
from reconciler.state.model import ComposeSpec, WheelhouseSpec
from reconciler.steps.checks import ChecksFacts
from reconciler.steps.compose_file import ComposeFileFacts
from reconciler.steps.images import ImagesFacts
from reconciler.steps.migrations import MigrationsFacts
from reconciler.steps.services import ServicesFacts
from reconciler.steps.stack import CONFIG_HASH_LABEL, IMAGE_ID_LABEL, StackFacts
from tests.planner.case_schema import Case, CaseError, load_case, parse_case

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))
DIGEST_LABEL = "io.reconciler.context-digest"
COMPOSE_FILE = Path("docker-compose.yml")


def _state(case: Case) -> State:
    return State(
        name="case",
        compose=ComposeSpec(
            file=COMPOSE_FILE,
            env_files=[Path(name) for name in case.env_files],
            profiles=list(case.profiles),
            mode=case.mode,
            prune=case.prune,
        ),
        services=dict(case.state),
        files=dict(case.files_decl),
        images=dict(case.images_decl),
        wheelhouses={key: WheelhouseSpec(requirements=[Path("r.txt")]) for key in case.wheelhouses},
        migrations=list(case.migrations_decl),
        checks=list(case.checks_decl),
    )


def _config(case: Case) -> ComposeConfig:
    """compose's model of the case's services: those the active profiles leave out are not in
    it (as `docker compose config` omits them), only listed with their profiles."""
    services = {}
    inactive = {}
    for name, spec in case.services.items():
        if spec.profiles and not set(spec.profiles) & set(case.profiles):
            inactive[name] = tuple(spec.profiles)
            continue
        build = None
        if spec.build:
            context = Path("/ctx") / (spec.build if isinstance(spec.build, str) else name)
            build = BuildConfig(context, context / "Dockerfile")
        services[name] = ServiceConfig(
            name=name,
            image=spec.image,
            build=build,
            has_healthcheck=spec.healthcheck,
            depends_on=dict(spec.depends_on),
            secrets_hashed=tuple(spec.secrets_hashed),
            secrets_unhashed=tuple(spec.secrets_unhashed),
            scale=spec.scale,
            profiles=tuple(spec.profiles),
            # the case's input labels are paths as the state names them (read-only inputs)
            inputs=tuple(
                InputSource("env_file" if label.endswith(".env") else "bind", Path(label))
                for label in case.inputs.get(name, {})
            ),
        )
    return ComposeConfig(
        project=case.project,
        services=services,
        profiles=tuple(case.profiles),
        inactive=inactive,
    )


def _compose_text(case: Case) -> str:
    if case.compose is not None:
        return case.compose
    lines = ["services:"]
    for name, spec in case.services.items():
        lines.append(f"  {name}:")
        if spec.image:
            lines.append(f"    image: {spec.image}")
        if spec.build:
            lines.append("    build: .")
    return "\n".join(lines) + "\n"


def _observed(case: Case, state: State, steps: list[Step]) -> dict[Step, object]:
    """Each step's facts, as its `observe` would project them, from the case's data."""
    containers = tuple(
        ContainerFacts(
            id=f"id-{index}",
            name=item.name or f"{case.project}-{item.service}-1",
            service=item.service,
            status=item.status,
            health=item.health,
            exit_code=item.exit_code,
            config_hash=item.hash,
            image_id=item.image,
            oneoff=item.oneoff,
            last_health_output=item.health_output,
            restart_count=item.restart_count,
            started_at=item.started_at,
            restart_policy=item.restart_policy,
        )
        for index, item in enumerate(case.containers)
    )
    images, local_images = (
        {
            ref: ImageFacts(
                reference=ref,
                id=spec.id,
                labels={DIGEST_LABEL: spec.digest} if spec.digest is not None else {},
                repo_digests=tuple(spec.repo_digests),
                size=spec.size,
            )
            for ref, spec in found.items()
        }
        for found in (case.images, case.local_images)
    )
    config = _config(case)
    pins = state.pins() if Step.COMPOSE_FILE in steps else {}
    text = _compose_text(case)
    env_texts: dict[Path, str | None] = {Path(n): text for n, text in case.dotenv.items()}
    # As observe() does before anything else: the compose file defines the state's services,
    # and, once compose's model is read, the active profiles enable them; later steps then
    # plan from the model as the compose-file step's edits leave it.
    check_compose_services(state, COMPOSE_FILE, text)
    if any(step in DOCKER_STEPS for step in steps):
        check_active_services(state, config)
    if Step.COMPOSE_FILE in steps:
        config = planned_model(state, config, text, env_texts, environment=case.environment)
    return {
        Step.COMPOSE_FILE: ComposeFileFacts(
            COMPOSE_FILE,
            text,
            env_texts=env_texts,
            environment=dict(case.environment),
            files={
                name: ObservedFile(
                    Path(name),
                    None if fact.text is None else fact.text.encode("utf-8"),
                    None if fact.mode is None else int(fact.mode, 8),
                )
                for name, fact in case.files.items()
            },
        ),
        Step.IMAGES: ImagesFacts(
            compose_file=COMPOSE_FILE,
            sources=image_sources(state, config, pins),
            images=images,
            context_digests=dict(case.digests),
            wheelhouses=dict(case.wheelhouses),
            remote={
                ref: RemoteDigest(digest=fact.digest, error=fact.error)
                for ref, fact in case.remote.items()
            },
            local=local_images,
        ),
        Step.SERVICES: _stack_facts(case, config, images, pins)
        if case.mode == "swarm"
        else ServicesFacts(
            config=config,
            config_hashes=dict(case.hashes),
            inputs={
                service: {
                    label: InputDigest(digest, case.capped.get(service, {}).get(label, ""))
                    for label, digest in digests.items()
                }
                for service, digests in case.inputs.items()
            },
            recorded={
                container.id: dict(item.recorded)
                for container, item in zip(containers, case.containers, strict=True)
                if item.recorded is not None
            },
            containers=containers,
            images=images,
            observed_at=case.observed_at,
            pins=pins,
            secret_hashes=dict(case.secret_hashes),
            secret_records={
                container.id: dict(item.secrets)
                for container, item in zip(containers, case.containers, strict=True)
                if item.secrets
            },
        ),
        Step.MIGRATIONS: MigrationsFacts(
            {
                name: MigrationStatus(fact.up_to_date, fact.detail)
                for name, fact in case.migrations.items()
            }
        ),
        Step.CHECKS: ChecksFacts(images),
    }


def _stack_facts(
    case: Case, config: ComposeConfig, images: dict[str, ImageFacts], pins: dict[str, str]
) -> StackFacts:
    """swarm mode: the stack's services and tasks, as `steps.stack.observe` projects them."""
    services = {
        name: SwarmService(
            id=f"svc-{name}",
            name=name,
            image=spec.image,
            replicas=spec.replicas,
            labels={CONFIG_HASH_LABEL: spec.hash} if spec.hash else {},
            container_labels={IMAGE_ID_LABEL: spec.image_id} if spec.image_id else {},
            update_state=spec.update_state,
            update_message=spec.update_message,
        )
        for name, spec in case.swarm_services.items()
    }
    tasks = tuple(
        SwarmTask(
            id=f"task-{index}",
            service_id=f"svc-{task.service}",
            slot=index + 1,
            desired_state=task.desired,
            state=task.state,
            error=task.error,
            exit_code=task.exit_code,
            labels=dict(services[task.service].container_labels)
            if task.image_id is None
            else {IMAGE_ID_LABEL: task.image_id},
            timestamp=task.timestamp,
        )
        for index, task in enumerate(case.tasks)
    )
    return StackFacts(
        config=config,
        config_hashes=dict(case.hashes),
        services=services,
        tasks=tasks,
        images=images,
        pins=pins,
        prune=case.prune,
    )


def _rows(plan: Plan) -> str:
    """The plan as a case would spell it, for assertion messages."""
    changes = [f"  - [{c.step}, {c.target}, {c.action}]  # {c.reason}" for c in plan.changes]
    ok = [f"  - [{r.step}, {r.target}, {r.reason!r}]" for r in plan.ok]
    return "\n".join(["changes:", *changes, "ok:", *ok])


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_planner_case(path: Path) -> None:
    """The planner turns the case's facts into exactly its expected changes, reasons and ok rows."""
    case = load_case(path)
    state = _state(case)
    steps = list(case.steps)
    if case.expect_error is not None:
        kind = {"InputError": InputError, "RegistryError": RegistryError}[case.error_kind]
        with pytest.raises(kind, match=case.expect_error):
            diff(state, _observed(case, state, steps), steps)
        return
    assert case.expect is not None
    plan = diff(state, _observed(case, state, steps), steps)
    shown = f"{case.description}\n{_rows(plan)}"
    got = [(c.step, c.target, c.action) for c in plan.changes]
    assert got == list(case.expect), f"changes differ: {shown}"
    for index, fragment in case.reasons.items():
        reason = plan.changes[index].reason
        assert fragment in reason, f"change {index}: {reason!r} lacks {fragment!r}\n{shown}"
    if case.expect_ok is not None:
        got_ok = [(row.step, row.target) for row in plan.ok]
        assert got_ok == [(step, target) for step, target, _ in case.expect_ok], (
            f"ok rows differ: {shown}"
        )
        for row, (_, _, fragment) in zip(plan.ok, case.expect_ok, strict=True):
            assert fragment in row.reason, (
                f"ok row {row.step} {row.target}: {row.reason!r} lacks {fragment!r}\n{shown}"
            )
    if case.expect_force is not None:
        forced = [c.target for c in plan.changes if c.force]
        assert forced == case.expect_force, f"forced changes differ: {shown}"


def test_there_are_enough_cases() -> None:
    """The data set covers at least forty planner situations."""
    assert len(CASES) >= 40


def test_cases_cover_every_step_and_action() -> None:
    """Cases expect a change of every action and ok rows of every step; most assert ok rows."""
    cases = [load_case(path) for path in CASES]
    actions = {action for case in cases for _, _, action in case.expect or []}
    assert actions == set(Action)
    ok_steps = {step for case in cases for step, _, _ in case.expect_ok or []}
    assert ok_steps == set(Step)
    assert sum(case.expect_ok is not None for case in cases) >= 35


MINIMAL = """\
description: d
services: {web: {image: "web:1"}}
containers:
  - {service: web, health: healthy}
migrations_decl: [{name: schema, service: web, alembic: {}}]
migrations: {schema: {up_to_date: true, detail: at head}}
expect: []
"""


def test_minimal_case_is_valid() -> None:
    """The base of the misspelling tests below is itself a valid case."""
    case = parse_case(MINIMAL)
    assert case.containers[0].health == "healthy"
    assert case.steps == list(Step)


MISSPELLINGS = [
    ("expcet", "expect: []", "expcet: []", "expcet: unknown key 'expcet'; did you mean 'expect'?"),
    (
        "helth",
        "health: healthy",
        "helth: healthy",
        "containers.0.helth: unknown key 'helth'; did you mean 'health'?",
    ),
    (
        "imgae",
        '{image: "web:1"}',
        '{imgae: "web:1"}',
        "services.web.imgae: unknown key 'imgae'; did you mean 'image'?",
    ),
    (
        "up_to_dat",
        "up_to_date: true",
        "up_to_dat: true",
        "migrations.schema.up_to_dat: unknown key",
    ),
    (
        "comand",
        "alembic: {}",
        "alembic: {comand: [a]}",
        "migrations_decl.0.alembic.comand: unknown key 'comand'; did you mean 'command'?",
    ),
    (
        "bad-action",
        "expect: []",
        "expect: [[services, web, rebuild]]",
        "expect.0.2: Input should be",
    ),
    ("bad-health", "health: healthy", "health: sick", "containers.0.health: Input should be"),
    (
        "unknown-service",
        "service: web,",
        "service: wbe,",
        "containers: services ['wbe'] are not in `services`",
    ),
    ("undeclared-migration", "{schema: {", "{shema: {", "migrations: ['shema'] are not declared"),
    ("reason-index", "expect: []", "expect: []\nreasons: {0: x}", "reasons: no change 0"),
    (
        "expect-and-error",
        "expect: []",
        "expect: []\nexpect_error: boom",
        "give exactly one of `expect` or `expect_error`",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [pytest.param(*rest, id=name) for name, *rest in MISSPELLINGS],
)
def test_misspelled_case_fails(old: str, new: str, message: str) -> None:
    """A case with a misspelled key or a wrong value fails, naming where and what."""
    assert old in MINIMAL
    with pytest.raises(CaseError) as raised:
        parse_case(MINIMAL.replace(old, new, 1), "bad.yaml")
    assert str(raised.value).startswith("bad.yaml: not a valid planner case:")
    assert message in str(raised.value)


def _copy_case(tmp_path: Path, stem: str, old: str, new: str) -> Path:
    """A copy of a case file with `old` replaced once by `new`."""
    text = (CASES[0].parent / f"{stem}.yaml").read_text(encoding="utf-8")
    assert old in text
    copy = tmp_path / f"{stem}.yaml"
    copy.write_text(text.replace(old, new, 1), encoding="utf-8")
    return copy


def test_misspelled_key_in_a_case_file_fails_its_case(tmp_path: Path) -> None:
    """A real case file with a misspelled key fails its own test, naming the key."""
    copy = _copy_case(tmp_path, "01-in-sync", "health: healthy", "helth: healthy")
    with pytest.raises(CaseError, match=r"containers\.0\.helth: unknown key 'helth'"):
        test_planner_case(copy)


@pytest.mark.parametrize(
    ("stem", "old", "new", "message"),
    [
        pytest.param(
            "27-all-steps-in-sync",
            '"at head 0002"]',
            '"at head 0003"]',
            "lacks 'at head 0003'",
            id="ok-reason",
        ),
        pytest.param(
            "27-all-steps-in-sync",
            '  - [checks, api health, "runs after apply converges"]\n',
            "",
            "ok rows differ",
            id="ok-row-missing",
        ),
        pytest.param(
            "27-all-steps-in-sync",
            "expect: []",
            "expect: [[checks, api health, wait]]",
            "changes differ",
            id="change",
        ),
        pytest.param(
            "38-unhealthy-forced",
            "expect_force: [api]",
            "expect_force: [api, worker]",
            "forced changes differ",
            id="force",
        ),
        pytest.param(
            "26-migration-behind",
            '0: "current 0001, head 0002"',
            '0: "current 0002"',
            "lacks 'current 0002'",
            id="reason",
        ),
    ],
)
def test_broken_expectation_fails(
    tmp_path: Path, stem: str, old: str, new: str, message: str
) -> None:
    """Changing one expectation of a passing case (ok row, reason, change, force) fails it."""
    test_planner_case(_copy_case(tmp_path, stem, "", ""))  # the unchanged copy passes
    broken = _copy_case(tmp_path, stem, old, new)
    with pytest.raises(AssertionError, match=re.escape(message)):
        test_planner_case(broken)
