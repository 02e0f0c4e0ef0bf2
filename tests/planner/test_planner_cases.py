"""Planner cases as data: desired state + observed facts -> expected changes (no docker).

Each file in cases/ is one case; adding a case needs no code. The format is the `Case` model in
case_schema.py (cases/README.md explains it); every file is validated against it first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    ContainerFacts,
    ImageFacts,
    ServiceConfig,
)
from reconciler.errors import InputError
from reconciler.facts import MigrationStatus, Observed
from reconciler.observe import check_compose_services, image_sources
from reconciler.plans import Action, Plan, Step
from reconciler.reconcile import diff
from reconciler.state import State
from reconciler.state.model import ComposeSpec, WheelhouseSpec
from tests.planner.case_schema import Case, CaseError, load_case, parse_case

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))
DIGEST_LABEL = "io.reconciler.context-digest"
COMPOSE_FILE = Path("docker-compose.yml")


def _state(case: Case) -> State:
    return State(
        name="case",
        compose=ComposeSpec(file=COMPOSE_FILE),
        services=dict(case.state),
        images=dict(case.images_decl),
        wheelhouses={key: WheelhouseSpec(requirements=[Path("r.txt")]) for key in case.wheelhouses},
        migrations=list(case.migrations_decl),
        checks=list(case.checks_decl),
    )


def _config(case: Case) -> ComposeConfig:
    services = {}
    for name, spec in case.services.items():
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
        )
    return ComposeConfig(project=case.project, services=services)


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


def _observed(case: Case, state: State, steps: list[Step]) -> Observed:
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
    images = {
        ref: ImageFacts(
            reference=ref,
            id=spec.id,
            labels={DIGEST_LABEL: spec.digest} if spec.digest is not None else {},
        )
        for ref, spec in case.images.items()
    }
    config = _config(case)
    pins = state.pins() if Step.COMPOSE_FILE in steps else {}
    text = _compose_text(case)
    # As observe() does before anything else: the compose file defines the state's services.
    check_compose_services(state, COMPOSE_FILE, text)
    return Observed(
        compose_file=COMPOSE_FILE,
        compose_text=text,
        config=config,
        sources=image_sources(state, config, pins),
        config_hashes=dict(case.hashes),
        containers=containers,
        images=images,
        context_digests=dict(case.digests),
        wheelhouses=dict(case.wheelhouses),
        migrations={
            name: MigrationStatus(fact.up_to_date, fact.detail)
            for name, fact in case.migrations.items()
        },
        observed_at=case.observed_at,
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
        with pytest.raises(InputError, match=case.expect_error):
            diff(state, _observed(case, state, steps), steps)
        return
    assert case.expect is not None
    plan = diff(state, _observed(case, state, steps), steps)
    shown = f"{case.description}\n{_rows(plan)}"
    got = [(c.step, c.target, c.action) for c in plan.changes]
    assert got == list(case.expect), shown
    for index, fragment in case.reasons.items():
        reason = plan.changes[index].reason
        assert fragment in reason, f"change {index}: {reason!r} lacks {fragment!r}\n{shown}"
    if case.expect_ok is not None:
        got_ok = [(row.step, row.target) for row in plan.ok]
        assert got_ok == [(step, target) for step, target, _ in case.expect_ok], shown
        for row, (_, _, fragment) in zip(plan.ok, case.expect_ok, strict=True):
            assert fragment in row.reason, (
                f"ok row {row.step} {row.target}: {row.reason!r} lacks {fragment!r}\n{shown}"
            )
    if case.expect_force is not None:
        forced = [c.target for c in plan.changes if c.force]
        assert forced == case.expect_force, shown


def test_there_are_enough_cases() -> None:
    """The data set covers at least forty planner situations."""
    assert len(CASES) >= 40


def test_cases_cover_every_step_and_action() -> None:
    """Some case expects a change of every action and an ok row of every step."""
    cases = [load_case(path) for path in CASES]
    actions = {action for case in cases for _, _, action in case.expect or []}
    assert actions == set(Action)
    ok_steps = {step for case in cases for step, _, _ in case.expect_ok or []}
    assert ok_steps == set(Step)
    with_ok = [case for case in cases if case.expect_ok is not None]
    assert len(with_ok) >= len(cases) - 2  # all but the input-error cases


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


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("expect: []", "expcet: []", "expcet: unknown key 'expcet'; did you mean 'expect'?"),
        (
            "health: healthy",
            "helth: healthy",
            "containers.0.helth: unknown key 'helth'; did you mean 'health'?",
        ),
        (
            '{image: "web:1"}',
            '{imgae: "web:1"}',
            "services.web.imgae: unknown key 'imgae'; did you mean 'image'?",
        ),
        ("up_to_date: true", "up_to_dat: true", "migrations.schema.up_to_dat: unknown key"),
        (
            "alembic: {}",
            "alembic: {comand: [a]}",
            "migrations_decl.0.alembic.comand: unknown key 'comand'; did you mean 'command'?",
        ),
        ("expect: []", "expect: [[services, web, rebuild]]", "expect.0.2: Input should be"),
        ("health: healthy", "health: sick", "containers.0.health: Input should be"),
        ("service: web,", "service: wbe,", "containers: services ['wbe'] are not in `services`"),
        ("{schema: {", "{shema: {", "migrations: ['shema'] are not declared"),
        ("expect: []", "expect: []\nreasons: {0: x}", "reasons: no change 0"),
        ("expect: []", "expect: []\nexpect_error: boom", "give exactly one of `expect` or `expect_error`"),
    ],
)
def test_misspelled_case_fails(old: str, new: str, message: str) -> None:
    """A case with a misspelled key or a wrong value fails, naming where and what."""
    assert old in MINIMAL
    with pytest.raises(CaseError) as raised:
        parse_case(MINIMAL.replace(old, new, 1), "bad.yaml")
    assert str(raised.value).startswith("bad.yaml: not a valid planner case:")
    assert message in str(raised.value)
