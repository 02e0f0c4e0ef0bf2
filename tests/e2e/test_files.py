"""End to end on the real engine: environment pins recreate their service, and `files:` (a
YAML value, a whole file with its mode) converge with the compose file untouched elsewhere."""

from __future__ import annotations

import json
import stat

import pytest

from tests.conftest import Stack, run_cli
from tests.e2e.test_env_files import _container_env, _plan
from tests.e2e.test_idempotence import container_ids

pytestmark = pytest.mark.docker


def test_environment_pins_and_files_converge(stack: Stack) -> None:
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
