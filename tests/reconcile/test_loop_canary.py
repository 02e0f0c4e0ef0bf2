"""The split-image canary end to end: baseline -> split -> no-op, rollback, on the real engine.

Runs on a copy of states/ and deploy/ in a temporary git work tree, so the repository's own
compose file is never edited; the wheelhouse is hard-linked, not copied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler.images import wheelhouse
from reconciler.reconcile.loop import make_adapter
from reconciler.runtime.interrupt import StopToken
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.docker

API = "http://127.0.0.1:18000/api/v1"
COMPOSE = Path("deploy/environments/canary/docker-compose.yml")


def ensure_wheelhouse() -> None:
    """Fill the repository's wheelhouse once (it is a cache, gitignored)."""
    state = reconciler.load_state(REPO / "states" / "canary.yaml")
    for directory, spec in state.wheelhouses.items():
        if wheelhouse.observed_digest(Path(directory)) != wheelhouse.wanted_digest(spec):
            wheelhouse.download(Path(directory), spec, StopToken())


def copy_tree(target: Path) -> Path:
    """states/, deploy/ and the rollback fixtures in a fresh git work tree at `target`."""
    ignore = shutil.ignore_patterns("wheelhouse", "__pycache__", "busybox")
    shutil.copytree(REPO / "states", target / "states")
    shutil.copytree(REPO / "deploy", target / "deploy", ignore=ignore)
    shutil.copytree(
        REPO / "deploy" / "wheelhouse", target / "deploy" / "wheelhouse", copy_function=os.link
    )
    shutil.copytree(
        REPO / "tests" / "fixtures" / "canary", target / "tests" / "fixtures" / "canary"
    )
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    return target


def down(tree: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "down",
            str(tree / "states" / "canary.yaml"),
            "--volumes",
        ],
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private copy of the canary, brought down (volumes too) before and after."""
    ensure_wheelhouse()
    copied = copy_tree(tmp_path_factory.mktemp("canary") / "repo")
    down(copied)
    try:
        yield copied
    finally:
        down(copied)


def cli(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m reconciler` in the copied tree, with JSON logs."""
    return run_cli(*args, cwd=tree, timeout=3000)


def api(path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(API + path, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def container_ids() -> dict[str, str]:
    names = [
        "ktrdr-db-canary",
        "ktrdr-backend-canary",
        "ktrdr-backtest-worker-canary",
        "ktrdr-training-worker-canary",
    ]
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.Name}} {{.Id}} {{.Image}}", *names],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        line.split()[0].lstrip("/"): line.split()[1] + " " + line.split()[2]
        for line in out.splitlines()
    }


def test_baseline_then_split_then_noop(tree: Path) -> None:
    """Baseline converges; one split apply edits only the worker lines, keeps the DB, passes all checks; again = no-op."""
    started = time.monotonic()
    done = cli(tree, "apply", "states/canary-baseline.yaml", "--save-result", "baseline.json")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    baseline_seconds = time.monotonic() - started
    saved = json.loads((tree / "baseline.json").read_text())
    assert saved["format"] == "reconciler-result"
    assert saved["services"]["backend"] == "ktrdr-backend:test"
    assert saved["images"]["ktrdr-backend:test"]["size"] > 1_000_000_000, "the monolith has torch"
    baseline_bytes = (tree / COMPOSE).read_bytes()
    # Data written before the split must survive it (named volume kept, db not recreated).
    operation = api(
        "/backtests/start",
        {
            "strategy_name": "v3_minimal",
            "symbol": "GBPUSD",
            "timeframe": "1h",
            "start_date": "2024-01-01",
            "end_date": "2024-02-01",
            "initial_capital": 1000,
        },
    )["operation_id"]
    before = container_ids()

    started = time.monotonic()
    done = cli(
        tree,
        "apply",
        "states/canary.yaml",
        "--baseline",
        "baseline.json",
        "--report",
        "report.md",
        "--junit",
        "junit.xml",
    )
    split_seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]

    after_bytes = (tree / COMPOSE).read_bytes()
    changed = [
        (old, new)
        for old, new in zip(baseline_bytes.splitlines(), after_bytes.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        (b"    image: ktrdr-backend:test", b"    image: ktrdr-worker-cpu:test"),
        (b"    image: ktrdr-backend:test", b"    image: ktrdr-worker-cpu:test"),
    ], changed
    after = container_ids()
    assert after["ktrdr-db-canary"] == before["ktrdr-db-canary"], "db must not be recreated"
    for name in (
        "ktrdr-backend-canary",
        "ktrdr-backtest-worker-canary",
        "ktrdr-training-worker-canary",
    ):
        assert after[name] != before[name], f"{name} runs a changed image and must be recreated"
    assert api(f"/operations/{operation}")["data"]["operation_id"] == operation

    report = (tree / "report.md").read_text()
    assert "| check | result | detail | duration |" in report
    assert "FAIL" not in report
    assert "ktrdr-worker-cpu:test" in report.split("## Image sizes")[1]
    # The milestone's verdict: the backend's size reduction against the image the backend ran
    # in the baseline, no regressions, the log checks and the host test script's own cases.
    comparison = report.split("## Comparison with the baseline")[1]
    backend_row = next(
        line for line in comparison.splitlines() if line.startswith("| ktrdr-backend")
    )
    reduction = float(backend_row.rstrip(" |").rsplit("|", 1)[1].strip().rstrip("%"))
    assert reduction >= 20, backend_row
    assert "Regressions (passed in the baseline, fail now):\n- none" in comparison
    # The runtime against the monolith: the backend's memory, its time to ready and the
    # latency of backtest starts, each judged (a regression would have failed the apply).
    assert "## Runtime" in report
    judged = {
        line.split(" | ")[0].lstrip("| "): line
        for line in comparison.splitlines()
        if line.startswith(("| latency_", "| memory_", "| ready_time_", "| error_rate_"))
    }
    for requirement in (
        "latency_p95_increase_pct",
        "memory_increase_pct",
        "ready_time_increase_pct",
        "error_rate_max",
    ):
        assert "| PASS |" in judged[requirement], judged[requirement]
        print(f"\n{judged[requirement]}")
    assert "| backend log has no errors and no torch import errors | PASS |" in report
    assert "| workers log their registration | PASS |" in report
    assert "| ↳ canary.backtest completed | PASS |" in report
    assert "Time: observe " in report
    suite = ET.parse(tree / "junit.xml").getroot()
    names = [case.get("name") for case in suite]
    assert "backtest completed" in names, "the script's own JUnit cases are merged"
    assert "upgrade ktrdr-schema" not in names or suite.get("failures") == "0"
    assert int(suite.get("tests", "0")) >= 20
    assert suite.get("failures") == "0"
    print(f"\nbackend size reduction against the baseline: {reduction:.1f}%")

    # Converged: plan is empty (exit 0) and a second apply issues no mutating docker command.
    planned = cli(tree, "plan", "states/canary.yaml", "--baseline", "baseline.json", "--json")
    assert planned.returncode == 0, planned.stderr[-2000:]
    sizes = {row["image"]: row for row in json.loads(planned.stdout)["comparison"]["sizes"]}
    assert sizes["ktrdr-backend:test"]["reduction_pct"] == round(reduction, 1)
    state = reconciler.load_state(tree / "states" / "canary.yaml")
    adapter = make_adapter(state)
    result = reconciler.apply(state, adapter=adapter)
    assert result.succeeded, result.error
    assert not result.changed
    assert adapter.mutating_calls == []
    assert all(check.passed for check in result.checks)
    print(f"\nbaseline apply {baseline_seconds:.1f} s, baseline -> split {split_seconds:.1f} s")


def test_rollback_restores_previous_file_and_services(tree: Path) -> None:
    """A split worker that never gets healthy: apply fails, the file bytes and running images come back."""
    done = cli(tree, "apply", "states/canary-baseline.yaml")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    baseline_bytes = (tree / COMPOSE).read_bytes()
    baseline_images = {name: ids.split()[1] for name, ids in container_ids().items()}

    done = cli(
        tree,
        "apply",
        "tests/fixtures/canary/broken-split.yaml",
        "--rollback-on-failure",
        "--report",
        "rollback.md",
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert (tree / COMPOSE).read_bytes() == baseline_bytes
    report = (tree / "rollback.md").read_text()
    assert "## Rolled back" in report
    assert "restored deploy/environments/canary/docker-compose.yml" in report
    now_images = {name: ids.split()[1] for name, ids in container_ids().items()}
    assert now_images == baseline_images
    assert cli(tree, "plan", "states/canary-baseline.yaml", "--skip", "checks").returncode == 0
