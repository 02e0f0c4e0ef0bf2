"""End to end in swarm mode (`compose.mode: swarm`) on a single-node Swarm: a third engine
on this machine (deploy/engine/ensure-swarm-engine.sh), never the main one.

The e2e stack's images (FROM scratch) are built ON the swarm engine (the state's `engine:`)
and deployed by name with `docker stack deploy`, no registry. The compose file is the e2e
stack's in the form stack deploy reads (`depends_on` as a list, no host-bound port). Checked:
the idempotence sequence (plan, apply, plan empty, apply with zero mutating calls, one tag
change updating one service and leaving the others' tasks alone), and an update whose new
tasks fail, rolled back by Swarm (its time printed for the note).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.reconcile.loop import make_adapter
from tests.conftest import Stack, make_stack, run_cli

pytestmark = pytest.mark.docker

COMPOSE = """\
# The e2e stack as a Swarm stack: three busybox services with healthchecks.
x-health: &health
  interval: 250ms
  timeout: 2s
  retries: 120

services:
  db:
    build: {{context: ., args: {{ROLE: db}}}}
    image: {p}-db:1
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
  api:
    build: {{context: ., args: {{ROLE: api}}}}
    image: "{p}-api:1"   # pinned by the state
    depends_on: [db]
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
  worker:
    build: {{context: ., args: {{ROLE: worker}}}}
    image: {p}-worker:1
    depends_on: [api]
    deploy:
      replicas: 2
    healthcheck:
      <<: *health
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
"""

STATE = """\
name: {p}
engine: "{engine}"
compose:
  file: docker-compose.yml
  project: {p}
  mode: swarm
services:
  db: {{image: {p}-db:1}}
  api: {{image: {p}-api:1, health_timeout: 90}}
  worker: {{image: {p}-worker:1, health_timeout: 90}}
{images}checks:
  - name: the worker reaches the api over the stack's network
    deadline: 30
    exec:
      service: worker
      command: [wget, -q, -O, "-", "http://tasks.api:8080/health"]  # DNS round robin: no VIP without iptables
      expect_output: '"role": "api"'
"""

BAD_DOCKERFILE = """\
# An api whose task exits at once: its update must fail and be rolled back.
FROM scratch
COPY busybox /bin/busybox
CMD ["/bin/busybox", "false"]
"""


def on_swarm(url: str, *args: str, check: bool = True) -> str:
    """`docker -H url ARGS`: its stdout (the test's own look at the swarm engine)."""
    done = subprocess.run(["docker", "-H", url, *args], capture_output=True, text=True, check=check)
    return done.stdout


def write_state(stack: Stack, engine: str, *, pins: dict[str, str], images: str = "") -> None:
    text = STATE.format(p=stack.project, engine=engine, images=images)
    for service, tag in pins.items():
        pinned = f"{service}: {{image: {stack.project}-{service}:"
        text = text.replace(f"{pinned}1", f"{pinned}{tag}")
    stack.state_file.write_text(text)


def running_tasks(url: str, project: str) -> dict[str, set[str]]:
    """service -> ids of its running tasks."""
    out = on_swarm(
        url,
        "stack",
        "ps",
        project,
        "--no-trunc",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Name}} {{.ID}} {{.CurrentState}}",
    )
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        name, task, state = line.split(" ", 2)
        if state.startswith("Running"):
            service = name.removeprefix(f"{project}_").rpartition(".")[0]
            found.setdefault(service, set()).add(task)
    return found


def plan_json(state_file: Path) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("plan", state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr[-3000:]
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def rows(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(c["step"], c["target"], c["action"]) for c in changes]


@pytest.fixture
def swarm_stack(swarm_engine: str, tmp_path: Path) -> Iterator[Stack]:
    """The e2e stack as a Swarm stack on the swarm engine; the stack and its images are
    removed afterwards."""
    stack = make_stack(tmp_path, port=int(os.environ.get("RTEST_API_PORT", "18700")))
    stack.compose_file.write_text(COMPOSE.format(p=stack.project))
    (stack.directory / "Dockerfile.bad").write_text(BAD_DOCKERFILE)
    write_state(stack, swarm_engine, pins={})
    try:
        yield stack
    finally:
        on_swarm(swarm_engine, "stack", "rm", stack.project, check=False)
        for _ in range(60):  # stack rm returns before the tasks' containers are gone
            if not on_swarm(swarm_engine, "ps", "-aq", "--filter", f"name={stack.project}_"):
                break
            time.sleep(0.5)
        refs = [
            ref
            for ref in on_swarm(
                swarm_engine, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"
            ).split()
            if ref.startswith(f"{stack.project}-")
        ]
        if refs:
            on_swarm(swarm_engine, "image", "rm", "-f", *refs, check=False)


def test_stack_idempotence_sequence(swarm_stack: Stack, swarm_engine: str) -> None:
    stack, p = swarm_stack, swarm_stack.project
    # 1. plan: three images to build on the swarm engine, three services to deploy.
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert [r for r in rows(changes) if r[0] == "services"] == [
        ("services", name, "deploy") for name in ("api", "db", "worker")
    ]
    assert {r for r in rows(changes) if r[0] == "images"} == {
        ("images", f"{p}-{name}:1", "build") for name in ("db", "api", "worker")
    }
    # Nothing of it on the main engine.
    assert (
        f"{p}-api"
        not in subprocess.run(
            ["docker", "image", "ls"], capture_output=True, text=True, check=True
        ).stdout
    )

    # 2. apply: converged, the check passes through the stack's overlay network.
    started = time.monotonic()
    done = run_cli("apply", stack.state_file, "--json")
    first_apply = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert [c["passed"] for c in result["checks"]] == [True]
    tasks = running_tasks(swarm_engine, p)
    assert {name: len(ids) for name, ids in tasks.items()} == {"db": 1, "api": 1, "worker": 2}

    # 3. plan again: in sync.
    started = time.monotonic()
    code, changes = plan_json(stack.state_file)
    plan_seconds = time.monotonic() - started
    assert (code, changes) == (0, [])

    # 4. apply again: no change, no mutating docker call, the same tasks.
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    again = reconciler.apply(state, adapter=adapter)
    assert again.succeeded, again.error
    assert again.applied == ()
    assert adapter.mutating_calls == []
    assert running_tasks(swarm_engine, p) == tasks
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0
    assert "No changes" in done.stdout + done.stderr

    # 5. one tag change: the worker alone is updated (the file edited, the tag built).
    write_state(stack, swarm_engine, pins={"worker": "2"})
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert [r for r in rows(changes) if r[0] == "services"] == [("services", "worker", "update")]
    started = time.monotonic()
    done = run_cli("apply", stack.state_file, "--json")
    update_seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    after = running_tasks(swarm_engine, p)
    assert after["db"] == tasks["db"]
    assert after["api"] == tasks["api"]
    assert len(after["worker"]) == 2
    assert not after["worker"] & tasks["worker"]
    image = on_swarm(
        swarm_engine,
        "service",
        "inspect",
        f"{p}_worker",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    )
    assert image.strip() == f"{p}-worker:2"
    assert plan_json(stack.state_file) == (0, [])
    print(
        f"\nswarm: first apply {first_apply:.1f} s, plan in sync {plan_seconds:.2f} s, "
        f"one-service update {update_seconds:.1f} s"
    )


def test_failed_update_is_rolled_back_by_swarm(swarm_stack: Stack, swarm_engine: str) -> None:
    stack, p = swarm_stack, swarm_stack.project
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr[-4000:]
    before = running_tasks(swarm_engine, p)

    # A new api image whose task exits at once.
    bad = f'images:\n  "{p}-api:2":\n    build: {{context: ., dockerfile: Dockerfile.bad}}\n'
    write_state(stack, swarm_engine, pins={"api": "2"}, images=bad)
    started = time.monotonic()
    done = run_cli("apply", stack.state_file, "--json")
    apply_seconds = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert "rolled back by Swarm" in result["error"], result["error"]
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    rolled = [e for e in events if e.get("event") == "swarm rolled back"]
    assert [e["service"] for e in rolled] == ["api"], rolled
    assert rolled[0]["to"] == f"{p}-api:1"

    # Swarm runs the previous spec again; the other services were not touched.
    spec = on_swarm(
        swarm_engine,
        "service",
        "inspect",
        f"{p}_api",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.UpdateStatus.State}}",
    ).split()
    assert spec == [f"{p}-api:1", "rollback_completed"]
    after = running_tasks(swarm_engine, p)
    assert len(after["api"]) == 1
    assert after["db"] == before["db"]
    assert after["worker"] == before["worker"]
    # The next plan says the update is still to make, and why the last one is not there.
    code, changes = plan_json(stack.state_file)
    assert code == 2
    api = [c for c in changes if c["step"] == "services"]
    assert [c["target"] for c in api] == ["api"]
    assert "rolled back" in api[0]["reason"]
    print(
        f"\nswarm rollback: {rolled[0]['seconds']:.1f} s from the rollback's start to the old "
        f"task running again; the failing apply took {apply_seconds:.1f} s"
    )
