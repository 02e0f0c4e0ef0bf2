"""The verdict's new checks on the real engine (the e2e stack, not the canary): a log line planted
in a service fails its log check, quoted with its timestamp; a host command that exits 1 fails
with its output tail; both land in the Markdown report and JUnit, with the service's log tail."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from ruamel.yaml import YAML

from tests.conftest import Stack, run_cli

pytestmark = pytest.mark.docker

PLANTED = "ERROR planted by the test: connection pool exhausted"


def add_checks(stack: Stack, checks: list[dict[str, object]]) -> None:
    yaml = YAML()
    state = yaml.load(stack.state_file)
    state["checks"] = checks
    yaml.dump(state, stack.state_file)


def plant(stack: Stack, service: str, line: str) -> None:
    """Write `line` to the service's log: the stdout of its PID 1, as the app itself would."""
    subprocess.run(
        [*stack.compose_argv("exec", "-T", service, "sh", "-c", 'echo "$0" > /proc/1/fd/1', line)],
        check=True,
        capture_output=True,
    )


def test_planted_log_line_fails_its_check_and_a_failing_command_shows_its_tail(
    stack: Stack,
) -> None:
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr[-2000:]
    (stack.directory / "fail.py").write_text(
        "import os, sys\n"
        "print('checking', os.environ['RECONCILER_URL_API'])\n"
        "print('assertion failed: expected 2 workers, saw 1', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    add_checks(
        stack,
        [
            {"name": "api log clean", "logs": {"service": "api", "must_not_match": ["error"]}},
            {"name": "db log clean", "logs": {"service": "db", "must_not_match": ["error"]}},
            {
                "name": "team script",
                "deadline": 60,
                "command": {"argv": [sys.executable, "fail.py"]},
            },
        ],
    )
    clean = run_cli("apply", stack.state_file)
    assert clean.returncode == 1, clean.stdout + clean.stderr[-2000:]
    assert "check  PASS  api log clean" in clean.stdout, "nothing planted yet"

    plant(stack, "api", PLANTED)
    done = run_cli(
        "apply",
        stack.state_file,
        "--report",
        stack.directory / "report.md",
        "--junit",
        stack.directory / "junit.xml",
        "--json",
    )
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    result = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    api = result["api log clean"]
    assert not api["passed"]
    assert api["detail"].startswith("log line matches 'error': 20"), api["detail"]
    assert api["detail"].endswith(f"{stack.project}-api-1: {PLANTED}")
    assert result["db log clean"]["passed"], "only the api's log holds the line"
    script = result["team script"]
    assert not script["passed"]
    assert script["detail"].startswith("exit 1; output tail:\n")
    assert f"checking http://127.0.0.1:{stack.port}" in script["detail"]
    assert "assertion failed: expected 2 workers, saw 1" in script["detail"]

    report = (stack.directory / "report.md").read_text()
    assert "### Log tail of api (check 'api log clean' failed)" in report
    assert PLANTED in report.split("### Log tail of api")[1]
    suite = ET.parse(stack.directory / "junit.xml").getroot()
    failed = [case.get("name") for case in suite if case.find("failure") is not None]
    assert failed == ["api log clean", "team script"]


def test_log_check_since_apply_ignores_lines_from_before(stack: Stack) -> None:
    """`since: apply` reads only what was logged after this apply began."""
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr[-2000:]
    plant(stack, "api", PLANTED)
    add_checks(
        stack,
        [
            {
                "name": "no new errors",
                "logs": {"service": "api", "must_not_match": ["error"], "since": "apply"},
            },
            {"name": "no errors at all", "logs": {"service": "api", "must_not_match": ["error"]}},
        ],
    )
    done = run_cli("apply", stack.state_file, "--json")
    checks = {check["name"]: check["passed"] for check in json.loads(done.stdout)["checks"]}
    assert checks == {"no new errors": True, "no errors at all": False}
