"""`files:` and environment pins end to end through the CLI, compose-file step only (no docker):
apply writes exactly what the plan showed, sets modes, converges, and never prints a secret."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.errors import ApplyError
from reconciler.observe.snapshot import observe
from reconciler.plans import Plan, Step
from reconciler.reconcile.loop import make_adapter
from reconciler.state import load_state
from reconciler.steps import compose_file
from tests.conftest import Stack, run_cli
from tests.observe.test_env_files import _container_env, _plan
from tests.reconcile.test_loop import container_ids

COMPOSE = """\
services:
  api:
    image: api:1
    environment:
      DB_PASSWORD: old-secret-value
      LOG_LEVEL: info
"""
STATE = """\
name: files
compose: {file: compose.yml}
services:
  api:
    environment: {DB_PASSWORD: new-secret-value, LOG_LEVEL: debug}
files:
  prometheus.yml: {set: {global.scrape_interval: 30s, global.scrape_timeout: 10s}}
  conf/app.conf: {content: "workers = 2\\n", mode: "0640"}
  conf/api_token: {content: "tok-abcdef-123\\n", mode: "0600"}
  conf/copied.conf: {source: templates/copied.conf}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A state directory with a compose file, a Prometheus config and one outdated file."""
    (tmp_path / "compose.yml").write_text(COMPOSE)
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 15s  # default\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.conf").write_text("workers = 1\n")
    (tmp_path / "conf" / "app.conf").chmod(0o644)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "copied.conf").write_bytes(b"copied = yes\r\n")
    (tmp_path / "state.yaml").write_text(STATE)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI on the compose-file step; its exit code, stdout and stderr."""
    code = main([*argv, "--only", "compose-file", "--log-format", "json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plan_apply_plan_converges_and_writes_exactly(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan (changes) -> apply -> plan (in sync); files hold exactly the declared bytes and modes."""
    state = str(project / "state.yaml")
    code, out, err = run(capsys, "plan", state, "--json")
    assert code == 2, err
    plan = json.loads(out)
    targets = [(c["target"], c["action"]) for c in plan["changes"]]
    assert targets == [
        ("compose.yml:services.api.environment.DB_PASSWORD", "edit"),
        ("compose.yml:services.api.environment.LOG_LEVEL", "edit"),
        ("prometheus.yml:global.scrape_interval", "edit"),
        ("prometheus.yml:global.scrape_timeout", "insert"),
        ("conf/app.conf", "edit"),
        ("conf/app.conf:mode", "edit"),
        ("conf/api_token", "create"),
        ("conf/copied.conf", "create"),
    ]
    code, out, err = run(capsys, "apply", state, "--progress", "plain")
    assert code == 0, out + err
    assert (project / "compose.yml").read_text() == COMPOSE.replace(
        "old-secret-value", "new-secret-value"
    ).replace("info", "debug")
    assert (project / "prometheus.yml").read_text() == (
        "global:\n  scrape_interval: 30s  # default\n  scrape_timeout: 10s\n"
    )
    assert (project / "conf" / "app.conf").read_text() == "workers = 2\n"
    assert stat.S_IMODE((project / "conf" / "app.conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((project / "conf" / "api_token").stat().st_mode) == 0o600
    assert (project / "conf" / "copied.conf").read_bytes() == b"copied = yes\r\n"
    code, out, err = run(capsys, "plan", state)
    assert code == 0, out + err
    assert "In sync" in out


def test_secrets_never_printed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the old nor the new secret value, nor a secret file's content, is ever printed."""
    state = str(project / "state.yaml")
    outputs = ["".join(run(capsys, "plan", state)[1:])]
    outputs.append("".join(run(capsys, "plan", state, "--json")[1:]))
    outputs.append("".join(run(capsys, "apply", state, "--json", "-v")[1:]))
    for out in outputs:
        for secret in ("old-secret-value", "new-secret-value", "tok-abcdef-123"):
            assert secret not in out
    assert "content not shown: its name looks secret" in outputs[0]
    assert "DB_PASSWORD: ***" in outputs[0]


def test_file_changed_while_planning_is_not_overwritten(project: Path) -> None:
    """A managed file edited between observation and apply stops the apply: nothing written."""
    state = load_state(project / "state.yaml")
    adapter = make_adapter(state)
    snapshot = observe(state, adapter, (Step.COMPOSE_FILE,), state.pins())
    facts = compose_file.observe(state, snapshot, adapter)
    plan = compose_file.diff(state, facts, Plan())
    assert plan.changes
    (project / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n")
    with pytest.raises(ApplyError, match="changed while planning"):
        compose_file.apply(plan.changes, state, facts, adapter)
    assert (project / "prometheus.yml").read_text() == "global:\n  scrape_interval: 1s\n"
    assert (project / "compose.yml").read_text() == COMPOSE
    assert (project / "conf" / "app.conf").read_text() == "workers = 1\n"


# End to end on the real engine: environment pins recreate their service, and `files:` (a
# YAML value, a whole file with its mode) converge with the compose file untouched elsewhere.


@pytest.mark.docker
def test_environment_pins_and_files_converge(stack: Stack) -> None:
    """Environment pins recreate their service and `files:` converge, the compose file untouched elsewhere."""
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    before = container_ids(stack)
    (stack.directory / "conf").mkdir()
    prometheus = stack.directory / "conf" / "prometheus.yml"
    prometheus.write_text("# scrape config\nglobal:\n  scrape_interval: 15s  # default\n")
    state = stack.state_file.read_text()
    state = state.replace(
        "  api:\n", "  api:\n    environment: {LOG_LEVEL: debug, API_TOKEN: s3cr3t-t0ken}\n"
    )
    state += (
        "files:\n"
        "  conf/prometheus.yml: {set: {global.scrape_interval: 30s}}\n"
        "  conf/app.conf: {content: \"workers = 2\\n\", mode: '0600'}\n"
    )
    stack.state_file.write_text(state)

    code, changes = _plan(stack)
    assert code == 2
    targets = [(c["step"], c["target"], c["action"]) for c in changes]
    assert ("compose-file", "docker-compose.yml:services.api.environment.LOG_LEVEL", "insert") in (
        targets
    )
    assert ("compose-file", "conf/prometheus.yml:global.scrape_interval", "edit") in targets
    assert ("compose-file", "conf/app.conf", "create") in targets
    assert ("services", "api", "recreate") in targets
    assert not any(t[0] == "services" and t[1] != "api" for t in targets), targets

    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    assert "s3cr3t-t0ken" not in done.stdout + done.stderr
    after = container_ids(stack)
    assert after["api"] != before["api"]
    assert (after["db"], after["worker"]) == (before["db"], before["worker"])
    env = _container_env(stack, after["api"])
    assert (env["LOG_LEVEL"], env["API_TOKEN"]) == ("debug", "s3cr3t-t0ken")
    assert prometheus.read_text() == "# scrape config\nglobal:\n  scrape_interval: 30s  # default\n"
    app_conf = stack.directory / "conf" / "app.conf"
    assert app_conf.read_text() == "workers = 2\n"
    assert stat.S_IMODE(app_conf.stat().st_mode) == 0o600
    assert _plan(stack) == (0, [])
    done = run_cli("plan", stack.state_file, "--json")
    assert "s3cr3t-t0ken" not in done.stdout + done.stderr
    ok = json.loads(done.stdout)["ok"]
    assert any(row["target"] == "conf/app.conf:mode" for row in ok), ok
