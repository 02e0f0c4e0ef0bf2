"""Planner cases as data: desired state + observed facts -> expected changes (no docker).

Each file in cases/ is one case; adding a case needs no code. See cases/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    ContainerFacts,
    ImageFacts,
    ServiceConfig,
)
from reconciler.errors import InputError
from reconciler.facts import Observed
from reconciler.observe import check_compose_services, image_sources
from reconciler.plans import Step
from reconciler.reconcile import diff
from reconciler.state import State

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))
DIGEST_LABEL = "io.reconciler.context-digest"


def _config(case: dict[str, Any]) -> ComposeConfig:
    services = {}
    for name, spec in case["services"].items():
        build = None
        if spec.get("build"):
            context = Path("/ctx") / str(spec["build"] if isinstance(spec["build"], str) else name)
            build = BuildConfig(context, context / "Dockerfile")
        services[name] = ServiceConfig(
            name=name,
            image=spec.get("image"),
            build=build,
            has_healthcheck=bool(spec.get("healthcheck")),
            depends_on=dict(spec.get("depends_on") or {}),
        )
    return ComposeConfig(project=case.get("project", "p"), services=services)


def _compose_text(case: dict[str, Any]) -> str:
    if "compose" in case:
        return str(case["compose"])
    lines = ["services:"]
    for name, spec in case["services"].items():
        lines.append(f"  {name}:")
        if spec.get("image"):
            lines.append(f"    image: {spec['image']}")
        if spec.get("build"):
            lines.append("    build: .")
    return "\n".join(lines) + "\n"


def _observed(case: dict[str, Any], state: State, steps: list[Step]) -> Observed:
    containers = tuple(
        ContainerFacts(
            id=f"id-{index}",
            name=item.get("name", f"p-{item['service']}-1"),
            service=item["service"],
            status=item.get("status", "running"),
            health=item.get("health"),
            exit_code=item.get("exit_code", 0),
            config_hash=item.get("hash"),
            image_id=item.get("image", ""),
            last_health_output=item.get("health_output"),
        )
        for index, item in enumerate(case.get("containers") or [])
    )
    images = {
        ref: ImageFacts(
            reference=ref,
            id=spec["id"],
            labels={DIGEST_LABEL: spec["digest"]} if "digest" in spec else {},
        )
        for ref, spec in (case.get("images") or {}).items()
    }
    config = _config(case)
    pins = state.pins() if Step.COMPOSE_FILE in steps else {}
    # As observe() does before anything else: the compose file defines the state's services.
    check_compose_services(state, Path("docker-compose.yml"), _compose_text(case))
    return Observed(
        compose_file=Path("docker-compose.yml"),
        compose_text=_compose_text(case),
        config=config,
        sources=image_sources(state, config, pins),
        config_hashes=dict(case.get("hashes") or {}),
        containers=containers,
        images=images,
        context_digests=dict(case.get("digests") or {}),
        wheelhouses={
            key: (value[0], value[1]) for key, value in (case.get("wheelhouses") or {}).items()
        },
    )


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = YAML(typ="safe", pure=True).load(path.read_text())
    return case


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_planner_case(path: Path) -> None:
    """The planner turns the case's observed facts into exactly the expected changes."""
    case = _load(path)
    state = State.model_validate(
        {
            "name": "case",
            "compose": {"file": "docker-compose.yml"},
            "services": case.get("state") or {},
            "images": case.get("images_decl") or {},
            "wheelhouses": {
                key: {"requirements": ["r.txt"]} for key in case.get("wheelhouses") or {}
            },
        }
    )
    steps = [Step(name) for name in case.get("steps", ["compose-file", "images", "services"])]
    if "expect_error" in case:
        with pytest.raises(InputError, match=case["expect_error"]):
            diff(state, _observed(case, state, steps), steps)
        return
    plan = diff(state, _observed(case, state, steps), steps)
    got = [[str(c.step), c.target, c.action] for c in plan.changes]
    want = [[step, target, action] for step, target, action in case["expect"]]
    assert got == want, case["description"]
    for index, fragment in (case.get("reasons") or {}).items():
        assert fragment in plan.changes[index].reason
    assert len(plan.changes) + len(plan.ok) >= len(want)


def test_there_are_enough_cases() -> None:
    """The data set covers at least fifteen planner situations."""
    assert len(CASES) >= 15
