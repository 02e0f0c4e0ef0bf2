"""The runtime measurement: resource use sampled while the checks run and after them, summed
per service, with restarts and time to ready; a failed sample ends sampling without failing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from reconciler.docker.facts import ContainerFacts, ResourceUse
from reconciler.docker.parse import byte_size, container_stats
from reconciler.errors import TransientDockerError
from reconciler.reconcile.metrics import IDLE_SAMPLES, ResourceSampler
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.records import ReadyEntry

MB = 1_000_000
STARTED = "2026-12-07T12:00:00Z"


class Stats:
    """An adapter whose `container_stats` answers from a script, one answer a call (the last
    one repeated); `fail_after` calls, it raises."""

    def __init__(self, script: list[dict[str, ResourceUse]], fail_after: int | None = None):
        self.script, self.fail_after = script, fail_after
        self.calls: list[list[str]] = []
        self.stop = StopToken()
        self.during = threading.Event()

    def container_stats(self, ids: Sequence[str]) -> dict[str, ResourceUse]:
        self.calls.append(list(ids))
        self.during.set()
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise TransientDockerError("Cannot connect to the Docker daemon")
        return self.script[min(len(self.calls) - 1, len(self.script) - 1)]


def container(cid: str, service: str, *, restarts: int = 0, **extra: Any) -> ContainerFacts:
    return ContainerFacts(
        cid,
        f"{service}-{cid}",
        service,
        "running",
        "healthy",
        0,
        "h",
        "i",
        restart_count=restarts,
        started_at=STARTED,
        **extra,
    )


CONTAINERS = [
    container("w1", "worker", restarts=1),
    container("w2", "worker", restarts=2),
    container("a1", "api"),
    ContainerFacts("x1", "api-run", "api", "running", None, 0, "h", "i", oneoff=True),
]


def use(worker: tuple[int, int], api: int, cpu: float = 1.0) -> dict[str, ResourceUse]:
    return {
        "w1": ResourceUse(worker[0] * MB, cpu),
        "w2": ResourceUse(worker[1] * MB, cpu),
        "a1": ResourceUse(api * MB, cpu),
    }


def test_peak_while_the_block_runs_then_idle_samples_summed_per_service() -> None:
    """A sample taken during the block (the peak: 900 MB of workers) and five after it, each
    service's containers summed; one-off containers are neither sampled nor reported."""
    adapter = Stats([use((400, 500), 50, cpu=80.0), *[use((100, 110), 20)] * 5])
    sampler = ResourceSampler(adapter, CONTAINERS)  # type: ignore[arg-type]
    with sampler:
        assert adapter.during.wait(10), "the thread samples while the block runs"
    during = len(adapter.calls)
    started = 1796644800.0
    ready = {"a1": ReadyEntry(started_at=STARTED, ready_at=started + 3.25)}
    metrics = sampler.measure(CONTAINERS, ready)
    assert adapter.calls[0] == ["w1", "w2", "a1"], "running, not one-off"
    assert len(adapter.calls) == during + IDLE_SAMPLES
    worker, api = metrics["worker"], metrics["api"]
    assert worker.memory_peak == 900 * MB
    assert worker.memory_idle == (210 * MB,) * IDLE_SAMPLES
    assert (worker.cpu_peak, worker.cpu_idle) == (160.0, (2.0,) * IDLE_SAMPLES)
    assert (worker.restarts, worker.ready_seconds) == (3, None)
    assert api.memory_idle == (20 * MB,) * IDLE_SAMPLES
    assert api.ready_seconds == 3.25
    assert set(metrics) == {"api", "worker"}
    assert api.to_dict()["memory_idle_bytes"] == [20 * MB] * IDLE_SAMPLES


def test_a_failed_sample_ends_sampling_and_keeps_what_was_had() -> None:
    """The engine failing a sample ends the sampling (no retry loop), and the metrics hold the
    samples taken before; nothing is raised."""
    adapter = Stats([use((100, 100), 10)], fail_after=2)
    sampler = ResourceSampler(adapter, CONTAINERS)  # type: ignore[arg-type]
    with sampler:
        assert adapter.during.wait(10)
    metrics = sampler.measure(CONTAINERS, {})
    assert sampler.problem is not None
    assert "Cannot connect" in sampler.problem
    assert len(adapter.calls) == 3, "the failed call ends it"
    taken = len(metrics["worker"].memory_idle)
    assert taken <= 2
    assert metrics["worker"].memory_peak == 200 * MB


def test_a_bug_in_a_sample_is_raised_by_measure() -> None:
    """A sample failing with something other than the engine's error is a bug: the thread
    keeps it, and `measure` raises it in the caller's thread (where the apply's failure
    boundary reports it), not as a thread's traceback on stderr."""

    class Buggy(Stats):
        def container_stats(self, ids: Sequence[str]) -> dict[str, ResourceUse]:
            self.during.set()
            raise ZeroDivisionError("a bug")

    adapter = Buggy([])
    sampler = ResourceSampler(adapter, CONTAINERS)  # type: ignore[arg-type]
    with sampler:
        assert adapter.during.wait(10)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        sampler.measure(CONTAINERS, {})
    assert sampler.problem == "ZeroDivisionError: a bug"


def test_docker_stats_output_is_read() -> None:
    """`docker stats --no-stream --no-trunc --format '{{json .}}'` lines: memory in docker's
    units, CPU share; a container docker could not read (`--`) is left out."""
    out = (
        '{"CPUPerc":"12.50%","ID":"abc","MemUsage":"312KiB / 23.54GiB"}\n'
        '{"CPUPerc":"0.00%","ID":"def","MemUsage":"1.5GiB / 23.54GiB"}\n'
        '{"CPUPerc":"--","ID":"ghi","MemUsage":"-- / --"}\n'
        "\n"
    )
    assert container_stats(out) == {
        "abc": ResourceUse(312 * 1024, 12.5),
        "def": ResourceUse(round(1.5 * 1024**3), 0.0),
    }
    assert byte_size("0B") == 0
    assert byte_size("25.6MB") == 25_600_000
