"""Crash safety: SIGKILL an apply at random moments; the compose file is never corrupt and the
next apply always converges."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import RECONCILER, Stack, run_cli

pytestmark = pytest.mark.docker

TRIALS = 50


def apply(state: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("apply", state)


def test_sigkill_never_corrupts_the_file_and_next_apply_converges(stack: Stack) -> None:
    """50 kills at random moments while switching api between two tags: file old or new, then converge."""
    state_a = stack.state_file
    state_b = stack.directory / "state-b.yaml"
    state_b.write_text(state_a.read_text().replace(stack.image("api"), stack.image("api", "2")))
    assert apply(state_b).returncode == 0
    bytes_b = stack.compose_file.read_bytes()
    started = time.monotonic()
    assert apply(state_a).returncode == 0
    switch_seconds = time.monotonic() - started
    bytes_a = stack.compose_file.read_bytes()
    assert bytes_a != bytes_b

    rng = random.Random(20261123)
    corrupt, old_kept, new_written = 0, 0, 0
    for trial in range(TRIALS):
        target, old, new = (
            (state_b, bytes_a, bytes_b) if trial % 2 == 0 else (state_a, bytes_b, bytes_a)
        )
        killed = subprocess.Popen(
            [*RECONCILER, "apply", str(target)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Half the kills land in the first 1.5 s, around the compose-file write; the rest
        # anywhere in a whole switch (builds, compose up, health waits).
        window = 1.5 if trial % 4 < 2 else switch_seconds
        time.sleep(rng.uniform(0.0, window))
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        content = stack.compose_file.read_bytes()
        corrupt += content not in (old, new)
        old_kept += content == old
        new_written += content == new
        done = apply(target)
        assert done.returncode == 0, (
            f"trial {trial}: next apply did not converge:\n{done.stderr[-3000:]}"
        )
        assert stack.compose_file.read_bytes() == new
    print(
        f"\n{TRIALS} kill trials: {corrupt} corrupt files, {old_kept} killed before the write, "
        f"{new_written} after; every next apply converged (switch took {switch_seconds:.1f} s)"
    )
    assert corrupt == 0
    assert not list(stack.directory.glob(".docker-compose.yml.*.tmp"))
