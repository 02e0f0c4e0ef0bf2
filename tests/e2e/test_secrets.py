"""Secrets never appear in logs, plans, diffs, reports or JSON: every channel is searched."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.conftest import Stack, run_cli

pytestmark = pytest.mark.docker


def test_secret_values_never_printed(stack: Stack) -> None:
    """Env secrets, build-arg tokens, DSN passwords and sensitive_env values stay masked everywhere."""
    token, npm, password, from_env = (
        f"{kind}-{uuid.uuid4().hex[:12]}" for kind in ("tok", "npm", "pw", "env")
    )
    text = stack.compose_file.read_text()
    # The token sits right above the api image line, so the pin's diff context includes it.
    text = text.replace(
        f'    image: "{stack.image("api")}"   # pinned by the state\n',
        "    environment:\n"
        f"      DATABASE_URL: postgres://app:{password}@db:5432/app\n"
        "      SETTING: ${RTEST_SECRET}\n"
        f"      API_TOKEN: {token}\n"
        f'    image: "{stack.image("api")}"   # pinned by the state\n',
    )
    text = text.replace("        ROLE: api\n", f"        ROLE: api\n        NPM_TOKEN: {npm}\n")
    stack.compose_file.write_text(text)
    state = stack.state_file.read_text().replace(stack.image("api"), stack.image("api", "2"))
    state += (
        "sensitive_env: [RTEST_SECRET]\nchecks:\n"
        '  - name: token is set\n    exec: {service: api, command: [sh, -c, "echo \\"$API_TOKEN\\""]}\n'
        '  - name: setting is set\n    exec: {service: api, command: [sh, -c, "echo \\"$SETTING\\""]}\n'
        '  - name: dsn is set\n    exec: {service: api, command: [sh, -c, "echo \\"$DATABASE_URL\\""]}\n'
    )
    stack.state_file.write_text(state)
    env = {**os.environ, "RTEST_SECRET": from_env}

    outputs = []
    for args in (
        ["plan", "-v", "--json"],
        ["plan", "--log-format", "console"],
        ["apply", "-v", "--json", "--report", "r.md", "--junit", "j.xml"],
        ["apply", "--log-format", "console"],
    ):
        done = run_cli(args[0], stack.state_file, *args[1:], env=env, cwd=stack.directory)
        assert done.returncode in {0, 2}, done.stderr[-2000:]
        outputs += [done.stdout, done.stderr]
    outputs += [(stack.directory / "r.md").read_text(), (stack.directory / "j.xml").read_text()]
    everything = "\n".join(outputs)
    for secret in (token, npm, password, from_env):
        assert secret not in everything, f"{secret} leaked"
    assert "API_TOKEN: ***" in everything, "the diff keeps the line, masked"
    assert "postgres://app:***@" in everything
    assert "exit 0: ***" in everything, "check details are masked too"
