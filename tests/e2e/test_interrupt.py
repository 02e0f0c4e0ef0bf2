"""SIGTERM and SIGINT stop an apply between actions, consistently, with exit 143 and 130."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import Stack, run_cli, start_apply_until

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_between_actions_and_next_apply_converges(
    stack: Stack, signum: signal.Signals, code: int
) -> None:
    """A signal during the first build stops before the next action; the next apply converges."""
    before = stack.compose_file.read_bytes()
    apply = start_apply_until(stack.state_file, "building image")
    apply.send_signal(signum)
    out, err = apply.communicate(timeout=300)
    assert apply.returncode == code, out + err
    assert f"stopped by {signum.name}" in err
    assert stack.compose_file.read_bytes() == before
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr
    again = run_cli("plan", stack.state_file)
    assert again.returncode == 0, again.stdout
