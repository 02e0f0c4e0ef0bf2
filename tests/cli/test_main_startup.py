"""The CLI's start-up path: what it imports, and the `.dockerignore` matcher's light imports.

A plan and a no-op apply import neither python-on-whales (its component tree, about 0.08 s)
nor the verdict's baseline module: the adapter builds python-on-whales' argv and reads the
container fields its model names itself, which the parity tests here hold equal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from python_on_whales import ClientNotFoundError, DockerClient
from python_on_whales.components.container.models import ContainerInspectResult

from reconciler.docker.adapter import DockerAdapter, _container_facts
from reconciler.docker.facts import ContainerFacts, HealthProbe
from reconciler.state.engine import Engine
from tests.facts import fake_docker

# docker-py's HTTP client, which the CLI never uses: importing it cost about 0.1 s per run.
_NOT_AT_START = ("docker", "requests", "urllib3", "charset_normalizer", "rich")
# Imported only by the commands that need them (modules by their full names).
_NOT_ON_PLAN_PATH = ("python_on_whales", "reconciler.reconcile.baseline")
_HIDE_RICH = "sys.modules['rich'] = None\nimport reconciler.cli.main\ndel sys.modules['rich']"


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def _imported_after(code: str) -> set[str]:
    return {name.partition(".")[0] for name in _modules_after(code)}


def _on_plan_path(modules: set[str]) -> set[str]:
    """Those of `modules` that should not be imported on a plan's path."""
    return {
        name
        for name in modules
        if any(name == top or name.startswith(f"{top}.") for top in _NOT_ON_PLAN_PATH)
    }


def test_cli_start_up_imports_no_http_client() -> None:
    # What `python -m reconciler` imports before it runs a command (rich hidden as __main__ does).
    """Importing the CLI loads no HTTP client or other module kept off the start-up path."""
    modules = _imported_after(_HIDE_RICH)
    assert "pydantic" in modules  # the probe does see the start-up imports
    assert not modules.intersection(_NOT_AT_START)


def test_cli_start_up_imports_neither_python_on_whales_nor_baseline() -> None:
    """Starting the CLI imports no python-on-whales module and not the verdict's baseline."""
    modules = _modules_after(_HIDE_RICH)
    assert "reconciler.docker.adapter" in modules  # the probe does see the start-up imports
    assert _on_plan_path(modules) == set()


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_converged_plan_and_apply_import_neither(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan` and a no-op `apply` of a converged stack (fake docker) import neither, end to end."""
    stack = tmp_path / "stack"
    shutil.copytree(Path(fake_docker.__file__).parent / "mutfx_stack", stack)
    log = fake_docker.on_path("converged", tmp_path, monkeypatch, root=stack)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reconciler", command, "state.yaml"],
        cwd=stack,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    modules = {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "container inspect" in " ".join(fake_docker.calls(log))  # containers were read
    assert "reconciler.docker.adapter" in modules
    assert _on_plan_path(modules) == set()


_ARGV_CASES: list[tuple[Engine | None, str | None, tuple[str, ...], tuple[str, ...]]] = [
    (None, None, (), ()),
    (Engine(host="ssh://deploy@example.org"), "shop", (), ()),
    (Engine(context="remote-1"), "shop", ("a.env", "b.env"), ("debug", "tools")),
    (Engine(host="tcp://10.0.0.5:2376"), None, ("x.env",), ("one",)),
]


@pytest.mark.parametrize("case", _ARGV_CASES)
def test_docker_argv_is_python_on_whales_own(
    case: tuple[Engine | None, str | None, tuple[str, ...], tuple[str, ...]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The adapter's docker and compose argv are what python-on-whales' ClientConfig builds."""
    engine, project, env_files, profiles = case
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    compose_file = tmp_path / "docker-compose.yml"
    env_paths = tuple(tmp_path / name for name in env_files)
    adapter = DockerAdapter(
        compose_file, project=project, env_files=env_paths, profiles=profiles, engine=engine
    )
    config = DockerClient(
        host=engine.host if engine else None,
        context=engine.context if engine else None,
        compose_files=[compose_file],
        compose_project_name=project,
        compose_env_files=list(env_paths),
        compose_profiles=list(profiles),
    ).client_config
    assert adapter._docker_cmd() == [str(part) for part in config.docker_cmd]
    assert adapter._compose_cmd() == [str(part) for part in config.docker_compose_cmd]
    assert adapter._local_docker_cmd() == [str(bin_dir / "docker")]


def test_no_docker_on_path_is_python_on_whales_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no docker on PATH, the first call's argv raises python-on-whales' error, as before."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClientNotFoundError):
        DockerAdapter(tmp_path / "docker-compose.yml")._docker_cmd()


def _facts_by_model(item: dict[str, Any]) -> ContainerFacts:
    """A container's facts read through python-on-whales' model, as the adapter did before."""
    parsed = ContainerInspectResult.model_validate(item)
    labels = (parsed.config.labels if parsed.config else None) or {}
    state = parsed.state
    health = state.health if state else None
    last_output = None
    if health and health.log:
        last_output = (health.log[-1].output or "").strip()
    return ContainerFacts(
        id=parsed.id or "",
        name=(parsed.name or "").lstrip("/"),
        service=labels.get("com.docker.compose.service", ""),
        status=(state.status if state else None) or "unknown",
        health=(health.status if health else None) or None,
        exit_code=(state.exit_code if state else None) or 0,
        config_hash=labels.get("com.docker.compose.config-hash"),
        image_id=labels.get("com.docker.compose.image") or parsed.image or "",
        oneoff=labels.get("com.docker.compose.oneoff", "False") == "True",
        last_health_output=last_output,
        restart_count=parsed.restart_count or 0,
        started_at=str(item.get("State", {}).get("StartedAt") or ""),
        finished_at=str(item.get("State", {}).get("FinishedAt") or ""),
        # New since the adapter read through the model: docker's own text of the times.
        health_log=tuple(
            HealthProbe(str(p.get("Start") or ""), str(p.get("End") or ""), p.get("ExitCode") or 0)
            for p in (((item.get("State") or {}).get("Health") or {}).get("Log") or [])
        ),
        restart_policy=str(
            ((item.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or ""
        ),
    )


_RECORDED = sorted(
    [
        *(Path(fake_docker.__file__).parent / "inspect").glob("*.json"),
        *fake_docker.SCENARIOS.glob("*/*container-inspect*.stdout"),
    ]
)
_RECORDED.remove(Path(fake_docker.__file__).parent / "inspect" / "compose-config.json")


@pytest.mark.parametrize("path", _RECORDED, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_container_facts_are_python_on_whales_models(path: Path) -> None:
    """Recorded `docker container inspect` output gives the facts python-on-whales' model gave."""
    items = json.loads(path.read_text())
    assert items  # a recording with no container would prove nothing
    for item in items:
        assert _container_facts(item) == _facts_by_model(item)


def test_container_facts_of_sparse_inspect_are_python_on_whales_models() -> None:
    """Missing or null fields default as they did through python-on-whales' model."""
    items: list[dict[str, Any]] = [
        {},
        {"Id": "x", "Config": None, "HostConfig": None},
        {"State": {"Status": "", "Health": {"Status": "", "Log": []}}, "Config": {"Labels": None}},
        {"State": {"Health": {"Log": [{"Output": None}]}}, "Name": "/web-1", "RestartCount": 3},
    ]
    for item in items:
        assert _container_facts(item) == _facts_by_model(item)


def test_matcher_loads_without_docker_py_package(tmp_path: Path) -> None:
    """The `.dockerignore` matcher imports no HTTP client (nor docker-py)."""
    (tmp_path / "a.txt").write_text("a")
    code = (
        "import sys\nfrom pathlib import Path\nfrom reconciler.images.dockerignore import exclude_paths\n"
        f"print(sorted(exclude_paths({str(tmp_path)!r}, [])))\n"
    )
    modules = _imported_after(code)
    assert "reconciler" in modules  # the probe does see the matcher's imports
    assert not modules.intersection(_NOT_AT_START)
