"""The runtime of a run, measured for its saved result and the verdict against a baseline.

Per service: its containers' restarts, memory and CPU while the checks run (the peak of the
samples a thread takes meanwhile) and after them (`IDLE_SAMPLES` samples, which the
Mann-Whitney U test compares with the baseline's), and its time from start to ready.

Use is read with `docker stats --no-stream` (the adapter's `container_stats`): it works for a
local engine, a remote one over ssh and any cgroup layout, at about 1.5 s a sample: the engine
answers with the second reading of its once-a-second collector after the call (the CPU share is
the difference of two). Five idle samples are five distinct readings, at least 4 s; starting them
1.2 s apart in threads of their own was tried, and saved nothing measurable.
tests/benchmarks/bench_metrics.py prints what a sample costs against reading the cgroup files
directly, which only a local engine allows, and the phases of a measured apply.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ContainerFacts, ResourceUse
from reconciler.errors import ReconcilerError
from reconciler.logs import get_logger
from reconciler.observe.readiness import ready_after_seconds, ready_seconds
from reconciler.runtime.records import ReadyEntry

__all__ = ["IDLE_SAMPLES", "ResourceSampler", "ServiceMetrics"]

_log = get_logger(__name__)

# Samples after the checks: five is the fewest with which the one-sided Mann-Whitney U test can
# reach p < 0.05 (its least p-value for five against five is 1/252).
IDLE_SAMPLES = 5


@dataclass(frozen=True)
class ServiceMetrics:
    """One service's runtime: memory in bytes and CPU in percent of a core, summed over its
    containers at each sample; `ready_seconds` from its container's start to ready (None: not
    known, as for a service without a healthcheck), and `ready_after_seconds` the earliest it
    can have been ready (it was seen not ready then: healthchecks look once an interval)."""

    restarts: int = 0
    ready_seconds: float | None = None
    ready_after_seconds: float | None = None
    memory_idle: tuple[int, ...] = ()
    memory_peak: int | None = None
    cpu_idle: tuple[float, ...] = ()
    cpu_peak: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form in a saved result and `apply --json`."""
        return {
            "restarts": self.restarts,
            "ready_seconds": self.ready_seconds,
            "ready_after_seconds": self.ready_after_seconds,
            "memory_idle_bytes": list(self.memory_idle),
            "memory_peak_bytes": self.memory_peak,
            "cpu_idle_pct": list(self.cpu_idle),
            "cpu_peak_pct": self.cpu_peak,
        }


class ResourceSampler:
    """Samples the running containers' use in a thread for as long as the `with` block runs
    (the checks), then `measure` takes the idle samples and sums it all up per service.

    A sample that fails (the engine not answering, a stop request cutting it) ends the
    sampling; what was sampled stands, and the failure is logged, never raised: a measurement
    is evidence for the verdict, and a missing one makes its requirement inconclusive.
    """

    def __init__(self, adapter: DockerAdapter, containers: Sequence[ContainerFacts]) -> None:
        self._adapter = adapter
        self._services = {c.id: c.service for c in containers if _measured(c)}
        self._during: list[dict[str, ResourceUse]] = []
        self._done = threading.Event()
        # Held by each sample, and by `held_off` for as long as a latency sample runs.
        self._busy = threading.Lock()
        self._thread = threading.Thread(target=self._sample, name="resource-sampler", daemon=True)
        self.problem: str | None = None
        self._bug: Exception | None = None

    def __enter__(self) -> ResourceSampler:
        if self._services:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set() and self.problem is None:
            with self._busy:
                self._take(self._during)
            self._done.wait(0.05)  # room for `held_off` to take the lock between samples

    @contextlib.contextmanager
    def held_off(self) -> Iterator[None]:
        """No resource sample runs in the block (one under way is let finish first): `docker
        stats` keeps the engine busy for a second or so, and a latency sample taken meanwhile
        measured it, not the service (tests/benchmarks/bench_latency_jitter.py)."""
        with self._busy:
            yield

    def _take(self, into: list[dict[str, ResourceUse]]) -> None:
        """One sample into `into`: the engine failing it ends the sampling; anything else is
        a bug, kept for `measure` to raise in the caller's thread (not a thread's traceback on
        stderr, and not lost)."""
        try:
            into.append(self._adapter.container_stats(list(self._services)))
        except ReconcilerError as error:
            self.problem = str(error)
            _log.warning("resource use not sampled", reason=self.problem)
        except Exception as error:  # a bug: raised again by `measure`
            self.problem = f"{type(error).__name__}: {error}"
            self._bug = error

    def measure(
        self,
        containers: Sequence[ContainerFacts],
        ready: Mapping[str, ReadyEntry],
        samples: int = IDLE_SAMPLES,
    ) -> dict[str, ServiceMetrics]:
        """Take `samples` idle samples, then each service's metrics (every service of
        `containers`, one-off containers left out; `ready`: when containers became ready, as
        `observe.readiness` records it)."""
        idle: list[dict[str, ResourceUse]] = []
        for _ in range(samples):
            if self.problem is not None or not self._services:
                break
            self._adapter.stop.check("sampling resource use")
            self._take(idle)
        if self._bug is not None:
            raise self._bug
        by_service: dict[str, list[ContainerFacts]] = {}
        for container in containers:
            if not container.oneoff:
                by_service.setdefault(container.service, []).append(container)
        return {
            service: self._metrics(mine, idle, ready)
            for service, mine in sorted(by_service.items())
        }

    def _metrics(
        self,
        containers: list[ContainerFacts],
        idle: list[dict[str, ResourceUse]],
        ready: Mapping[str, ReadyEntry],
    ) -> ServiceMetrics:
        ids = [c.id for c in containers if c.id in self._services]
        idle_use = _summed(idle, ids)
        all_use = [*_summed(self._during, ids), *idle_use]
        return ServiceMetrics(
            restarts=sum(c.restart_count for c in containers),
            ready_seconds=ready_seconds(containers, ready),
            ready_after_seconds=ready_after_seconds(containers, ready),
            memory_idle=tuple(memory for memory, _ in idle_use),
            memory_peak=max((memory for memory, _ in all_use), default=None),
            cpu_idle=tuple(round(cpu, 2) for _, cpu in idle_use),
            cpu_peak=max((round(cpu, 2) for _, cpu in all_use), default=None),
        )


def _measured(container: ContainerFacts) -> bool:
    return container.status == "running" and not container.oneoff


def _summed(
    samples: Iterable[Mapping[str, ResourceUse]], ids: Sequence[str]
) -> list[tuple[int, float]]:
    """(memory, CPU) of the containers `ids` summed at each sample that has all of them."""
    found = []
    for sample in samples:
        if ids and all(cid in sample for cid in ids):
            found.append(
                (sum(sample[cid].memory for cid in ids), sum(sample[cid].cpu for cid in ids))
            )
    return found
