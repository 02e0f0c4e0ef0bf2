"""End to end against a second engine reached over SSH (deploy/engine/ensure-remote-engine.sh).

The e2e stack's state gets `engine: ssh://root@127.0.0.1:PORT`: images are built ON that engine
(the docker CLI sends the build context over ssh; the images are FROM scratch, so no base image
is needed there), its containers run there and never show in the local engine, and the
idempotence sequence holds as it does locally. A check reaches the api through
`{engine_host}`. The same stack applied to the local engine gives the plan time and the docker
calls per plan of both, printed for the report.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.reconcile.loop import make_adapter
from tests.conftest import Stack, all_target, make_stack, remove_stack, run_cli

pytestmark = pytest.mark.docker

CHECK = """checks:
  - name: api answers on the engine's host
    deadline: 30
    http: {{url: "http://{{engine_host}}:{port}/health", expect_json: {{role: api}}}}
"""


def _port(offset: int) -> int:
    return int(os.environ.get("RTEST_API_PORT", "18080")) + offset


def on_engine(url: str | None, *args: str) -> str:
    """`docker [-H url] ARGS`: its stdout (the engine the test asks, not the adapter's)."""
    argv = ["docker", *(["-H", url] if url else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def container_ids(url: str | None, project: str) -> dict[str, str]:
    """service -> container id of `project` on the engine at `url` (None: the local one)."""
    label = f"label=com.docker.compose.project={project}"
    ids = on_engine(url, "container", "ls", "-aq", "--no-trunc", "--filter", label).split()
    if not ids:
        return {}
    fmt = '{{index .Config.Labels "com.docker.compose.service"}} {{.Id}}'
    out = on_engine(url, "container", "inspect", "--format", fmt, *ids)
    return dict(line.split() for line in out.splitlines())


def images(url: str | None, project: str) -> list[str]:
    out = on_engine(url, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    return sorted(ref for ref in out.split() if ref.startswith(f"{project}-"))


def plan_json(state_file: Path) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli("plan", state_file, "--json")
    assert done.returncode in {0, 2}, done.stderr
    changes: list[dict[str, Any]] = json.loads(done.stdout)["changes"]
    return done.returncode, changes


def plan_cost(state_file: Path, runs: int = 3) -> tuple[float, int]:
    """Median seconds of a library plan, and its docker calls (the same each run)."""
    times, calls = [], 0
    for _ in range(runs):
        state = reconciler.load_state(state_file)
        adapter = make_adapter(state)
        started = time.monotonic()
        the_plan = reconciler.plan(state, adapter=adapter)
        times.append(time.monotonic() - started)
        assert not the_plan.changes
        calls = len(adapter.calls)
    return statistics.median(times), calls


@pytest.fixture
def remote_stack(remote_engine: str, tmp_path: Path) -> Any:
    created = make_stack(tmp_path / "remote", port=_port(0), engine=remote_engine)
    text = created.state_file.read_text()
    created.state_file.write_text(text + CHECK.format(port=created.port))
    try:
        yield created
    finally:
        # The engine's whole state goes with `--stop`; the stack is removed first all the same.
        remove_stack(created, remote_engine)


def test_idempotence_on_a_remote_engine(
    remote_engine: str, remote_stack: Stack, tmp_path: Path
) -> None:
    """plan -> apply -> plan (empty) -> apply (no mutating call) -> retag -> only that service."""
    stack, url = remote_stack, remote_engine
    local_info = json.loads(on_engine(None, "info", "--format", "{{json .}}"))
    remote_info = json.loads(on_engine(url, "info", "--format", "{{json .}}"))
    assert remote_info["ID"] != local_info["ID"]
    assert remote_info["DockerRootDir"] != local_info["DockerRootDir"]

    # 1. plan: builds and creates pending.
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert {(c["step"], c["action"]) for c in changes} == {
        ("images", "build"),
        ("services", "create"),
    }

    # 2. apply converges on the remote engine only: images built there, containers there.
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert "api answers on the engine's host" in done.stdout
    remote = container_ids(url, stack.project)
    assert sorted(remote) == ["api", "db", "worker"]
    assert images(url, stack.project) == sorted(stack.image(n) for n in ("api", "db", "worker"))
    assert container_ids(None, stack.project) == {}
    assert images(None, stack.project) == []

    # 3. plan: in sync.
    assert plan_json(stack.state_file) == (0, [])

    # 4. apply again: not one mutating docker call, and every call went to the remote engine.
    state = reconciler.load_state(stack.state_file)
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.calls
    assert adapter.mutating_calls == []
    assert all_target(adapter.calls, url)
    assert container_ids(url, stack.project) == remote

    # 5. one tag change: exactly that service recreated, on the remote engine.
    text = stack.state_file.read_text()
    stack.state_file.write_text(text.replace(stack.image("api"), stack.image("api", "2")))
    code, changes = plan_json(stack.state_file)
    assert code == 2
    assert [(c["step"], c["target"], c["action"]) for c in changes] == [
        ("compose-file", "docker-compose.yml:services.api.image", "edit"),
        ("images", stack.image("api", "2"), "build"),
        ("services", "api", "recreate"),
    ]
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    after = container_ids(url, stack.project)
    assert after["db"] == remote["db"]
    assert after["worker"] == remote["worker"]
    assert after["api"] != remote["api"]
    assert plan_json(stack.state_file) == (0, [])

    # 6. the cost of a plan, remote vs local (the same stack converged on the local engine).
    remote_seconds, remote_calls = plan_cost(stack.state_file)
    local = make_stack(tmp_path / "local", port=_port(1))
    try:
        done = run_cli("apply", local.state_file)
        assert done.returncode == 0, done.stderr
        local_seconds, local_calls = plan_cost(local.state_file)
    finally:
        remove_stack(local)
    print(
        f"\nplan, converged stack: remote (ssh) {remote_seconds:.2f} s, {remote_calls} docker "
        f"calls; local {local_seconds:.2f} s, {local_calls} docker calls"
    )
    assert remote_calls == local_calls
