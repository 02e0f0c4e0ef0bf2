"""Log checks read a container's current run whole: its first lines (which docker can stamp
before the run's StartedAt) and none of an earlier run's, on a real engine."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from reconciler.docker.adapter import DockerAdapter, _container_facts
from reconciler.docker.facts import ContainerFacts
from reconciler.steps.probes.logs import LogLine, read_lines
from tests.conftest import Stack, run_cli

pytestmark = pytest.mark.docker

# Prints a line naming this run at once, then idles; `docker restart` starts a new run.
FIRST_LINE = 'echo "first line of run $(cat /proc/sys/kernel/random/uuid)"; exec sleep 600'
CONTAINERS = 10  # docker stamped the first line before StartedAt in 2 of 6 runs measured here


def inspect(container_id: str) -> ContainerFacts:
    """The container's facts as the adapter reads them."""
    done = subprocess.run(
        ["docker", "inspect", container_id], check=True, capture_output=True, text=True
    )
    return _container_facts(json.loads(done.stdout)[0])


def test_first_lines_are_read_and_an_earlier_runs_are_not(stack: Stack) -> None:
    """Each of 10 fresh containers has its first line read (the old `--since StartedAt` lost
    those docker stamped early); after `docker restart` only the new run's line is read."""
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr[-2000:]
    adapter = DockerAdapter(stack.compose_file, stack.project)
    started: list[str] = []
    try:
        for _ in range(CONTAINERS):
            run = subprocess.run(
                [
                    "docker",
                    "run",
                    "-d",
                    "--entrypoint",
                    "/bin/sh",
                    stack.image("api"),
                    "-c",
                    FIRST_LINE,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            started.append(run.stdout.strip())
        for container_id in started:
            lines = _wait_for_lines(adapter, container_id, 1)
            assert [line.text[:18] for line in lines] == ["first line of run "], lines

        first = started[0]
        before = _wait_for_lines(adapter, first, 1)[0].text
        subprocess.run(["docker", "restart", "-t", "0", first], check=True, capture_output=True)
        after = _wait_for_lines(adapter, first, 1)
        assert len(after) == 1, f"an earlier run's line was read: {after}"
        assert after[0].text.startswith("first line of run ")
        assert after[0].text != before, "the line read is the new run's"
        logged = subprocess.run(
            ["docker", "logs", first], check=True, capture_output=True, text=True
        ).stdout
        assert logged.count("first line of run") == 2, "docker holds both runs' lines"
    finally:
        if started:
            subprocess.run(["docker", "rm", "-f", *started], capture_output=True, check=False)


def _wait_for_lines(adapter: DockerAdapter, container_id: str, count: int) -> list[LogLine]:
    """The container's current run's log lines, once `count` have been written (10 s at most)."""
    lines: list[LogLine] = []
    for _ in range(100):
        lines = read_lines(adapter, [inspect(container_id)], "start", None)
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    return lines
