"""services step: bring up only drifted services, then wait until every service is ready.

Drift follows compose's own rules (DESIGN.md §5): no container, not running, config-hash label
differs from compose's hash of the current model, image label differs from the image the tag
points to, or unhealthy. The label is compared with both `config --hash` and compose's hash of
its resolved model (`ServicesFacts.config_current`): compose < 5.5.0 leaves `env_file` out of
the former, so a service with an env file would otherwise never converge. Beyond compose: a
bind-mounted file or directory, an `env_file` or a `configs:` file whose content changed since
the container was created (digests recorded per container, `reconciler.observe.inputs`) is drift
too, fixed by a forced recreate of that service alone; so is a service reading a file that the
compose-file step rewrites in this run (`Change.writes`). compose's model here is the one the
compose-file step's env-file edits will leave (`reconciler.observe.planned`): a service with a value
those edits change (`ServiceConfig.edited`) is recreated in the same plan, naming the
variables. `observe` projects compose's model, the hashes, containers and images from the
snapshot, and reads the inputs' digests; `diff` is pure.
`apply` runs `compose up` for just those services and polls batched inspects until each is
healthy (or running, without a healthcheck) before its deadline.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig, ContainerFacts, ImageFacts, ServiceConfig
from reconciler.errors import HealthTimeoutError, PermanentDockerError, ReconcilerError, describe
from reconciler.logs import ProgressEvent, get_logger
from reconciler.observe.facts import Snapshot
from reconciler.observe.inputs import (
    InputDigest,
    read_record,
    record_path,
    service_digests,
    write_record,
)
from reconciler.observe.planned import edited_reason
from reconciler.observe.readiness import ReadinessRecords, logged_ready_moment
from reconciler.observe.snapshot import activating, desired_images, pulls_always
from reconciler.plans import MAKES_IMAGE, Action, Change, InSync, Plan, Step
from reconciler.runtime.poll import Poll
from reconciler.runtime.records import ReadyEntry
from reconciler.secrets.redact import Secrets
from reconciler.secrets.store import SecretRecords, keyed_hash
from reconciler.state import State
from reconciler.steps.contract import StepDefinition, plain
from reconciler.steps.waits import EngineSilence, Readiness, service_deadlines

__all__ = [
    "RESTARTED_STABLE_FOR",
    "STABLE_FOR",
    "STEP",
    "Readiness",
    "ReadinessWatch",
    "ServicesFacts",
    "apply",
    "diff",
    "fingerprint",
    "observe",
    "readiness",
    "record_inputs",
    "wait_until_ready",
]

_log = get_logger(__name__)
_UP_ACTIONS = frozenset({Action.CREATE, Action.RECREATE, Action.START, Action.SCALE})
# A container in one of these states is up, or will be by itself: scaling to 0 stops it.
_LIVE = frozenset({"running", "restarting", "paused", "created"})


@dataclass(frozen=True)
class ServicesFacts:
    """The services step's facts: compose's model and hashes, the containers, the images, and
    the digests of the files compose does not hash (now, and as recorded per container)."""

    config: ComposeConfig
    config_hashes: dict[str, str] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] = ()
    images: dict[str, ImageFacts] = field(default_factory=dict)
    observed_at: float | None = None  # wall clock (epoch s) when containers were listed
    pins: dict[str, str] = field(default_factory=dict)  # image pins in force
    secret_hashes: dict[str, str] = field(default_factory=dict)  # secret name -> keyed hash now
    # container id -> secret name -> keyed hash of the value it was created with
    secret_records: dict[str, dict[str, str]] = field(default_factory=dict)
    inputs: dict[str, dict[str, InputDigest]] = field(default_factory=dict)  # service -> label
    recorded: dict[str, dict[str, str]] = field(default_factory=dict)  # container id -> label

    def config_current(self, container: ContainerFacts) -> bool:
        """The container's config-hash label is compose's hash of the current model (of its
        resolved model, env files merged: what `up` labels with on any compose version); a
        container made from another configuration has another hash."""
        wanted = self.config_hashes.get(container.service)
        return wanted is None or container.config_hash == wanted

    def changed_inputs(self, container: ContainerFacts) -> list[str]:
        """Labels of the inputs whose digest differs from the one recorded for this container
        (none when it has no record: made by someone else, it is taken as current)."""
        recorded = self.recorded.get(container.id)
        if recorded is None:
            return []
        current = self.inputs.get(container.service, {})
        return [
            label
            for label, digest in current.items()
            if label in recorded and recorded[label] != digest.digest
        ]


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> ServicesFacts:
    """compose's model, config hashes, containers, images and pins, as the snapshot has them;
    and this step's own reads: the digests of each service's inputs (bind mounts, env files,
    file configs) and those recorded for each container at the last converged apply."""
    config = snapshot.config
    assert config is not None, "the snapshot asks docker when services is selected"
    compose_file = state.compose.file
    return ServicesFacts(
        config=config,
        config_hashes=snapshot.config_hashes,
        containers=snapshot.containers,
        images=snapshot.images,
        observed_at=snapshot.observed_at,
        pins=snapshot.pins,
        secret_hashes=snapshot.secret_hashes,
        secret_records=snapshot.secret_records,
        inputs={
            name: digests
            for name, spec in config.services.items()
            if (digests := service_digests(spec.inputs, compose_file))
        },
        recorded=read_record(record_path(config.project)),
    )


def record_inputs(state: State, facts: ServicesFacts) -> None:
    """Record the current input digests of the containers `facts` saw (after a converged
    apply), so that a later change of one of those files is drift. A failure to write only
    warns (file drift then goes unseen for the containers not recorded, as for ones made by
    others)."""
    path = record_path(facts.config.project)
    try:
        if write_record(path, facts.containers, facts.inputs):
            _log.debug("input digests recorded", path=str(path))
    except (OSError, ReconcilerError) as error:  # a full disk: FileWriteError
        _log.warning(
            "cannot record input digests; file drift of these containers goes unseen",
            error=describe(error),
        )


def diff(state: State, facts: ServicesFacts, earlier: Plan) -> Plan:
    """One change per drifted service.

    A service whose pin (`facts.pins`) differs from the compose file's current image, or
    whose image the images step plans to (re)build or pull (in `earlier`; not a `pull: always`
    pull, which may change nothing), or whose environment the compose-file step edits, or
    which interpolates a variable whose value that step's env-file edits change
    (`ServiceConfig.edited`), is certain to be recreated even though its labels still match.
    """
    config = facts.config
    pins = facts.pins
    # A `pull: always` pull may bring the same image again: its users are recreated only when
    # it did not (apply plans this step again after such pulls, from a fresh observation).
    rebuilt = {
        change.key
        for change in earlier.for_step(Step.IMAGES)
        if change.action in MAKES_IMAGE and not pulls_always(state, change)
    }
    written = {Path(c.writes) for c in earlier.for_step(Step.COMPOSE_FILE) if c.writes}
    # compose-file changes keyed by a service name edit that service (its environment pins)
    reconfigured = earlier.keys(Step.COMPOSE_FILE) & set(config.services)
    pinned = {
        name: image
        for name, image in pins.items()
        if name in config.services and config.services[name].image != image
    }
    images = desired_images(pins, config)
    by_service = _containers_by_service(facts.containers)
    changes: list[Change] = []
    ok: list[InSync] = []
    leftovers = _leftovers(facts.containers)
    for service in config.services:
        reference = images[service]
        containers = by_service.get(service, [])
        scale = config.services[service].scale
        stale = [c.name for c in leftovers if c.service == service]
        if stale:
            reason = f"leftover of an interrupted recreate: {', '.join(stale)}"
            changes.append(Change(Step.SERVICES, service, Action.RECREATE, reason))
            continue
        if scale == 0:
            change, reason = _scaled_to_zero(service, containers)
        else:
            change = _drift(
                service,
                reference=reference,
                containers=containers,
                facts=facts,
                pinned=pinned,
                rebuilt=rebuilt,
                reconfigured=reconfigured,
                rewritten=_rewritten_inputs(config.services[service], written, state),
            ) or _short_of_scale(service, scale, containers)
            reason = _describe_ready(containers, scale)
        if change is None:
            ok.append(InSync(Step.SERVICES, service, reason))
        else:
            changes.append(change)
    for service, profiles in config.inactive.items():
        ok.append(InSync(Step.SERVICES, service, _inactive(service, profiles, config, by_service)))
    return Plan(tuple(changes), tuple(ok))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _scaled_to_zero(service: str, containers: list[ContainerFacts]) -> tuple[Change | None, str]:
    """A service scaled to 0 is not started nor waited for; `compose up` would stop and remove
    any container of it that is up, so that is planned as a change."""
    live = [c for c in containers if c.status in _LIVE]
    if live:
        running = sum(c.status == "running" for c in live)
        what = _plural(running, "running container") if running else _plural(len(live), "container")
        verb = "will" if len(live) == 1 else "will all"
        reason = f"scaled to 0: {what} {verb} be stopped and removed"
        return Change(Step.SERVICES, service, Action.SCALE, reason), ""
    stopped = f" ({_plural(len(containers), 'stopped container')} left)" if containers else ""
    return None, f"scaled to 0: not started{stopped}"


def _short_of_scale(service: str, scale: int, containers: list[ContainerFacts]) -> Change | None:
    """A service with fewer (or more) containers than its scale: `compose up` makes it right."""
    if len(containers) == scale:
        return None
    running = sum(c.status == "running" for c in containers)
    if len(containers) < scale:
        reason = f"scale {scale}: {running} running"
    else:
        reason = f"scale {scale}: {len(containers)} containers, {len(containers) - scale} too many"
    return Change(Step.SERVICES, service, Action.SCALE, reason)


def _inactive(
    service: str,
    profiles: tuple[str, ...],
    config: ComposeConfig,
    by_service: dict[str, list[ContainerFacts]],
) -> str:
    """Why a service the active profiles leave out needs nothing (compose ignores it)."""
    active = ", ".join(config.profiles) or "none"
    reason = f"not in the active profiles ({active}); {activating(profiles)} activates it"
    running = sum(c.status == "running" for c in by_service.get(service, []))
    if running:
        reason += f"; {_plural(running, 'container')} still running (compose leaves it as is)"
    return reason


def _drift(  # noqa: PLR0911, PLR0912 - a decision table: one return per kind of drift reads best
    service: str,
    *,
    reference: str,
    containers: list[ContainerFacts],
    facts: ServicesFacts,
    pinned: dict[str, str],
    rebuilt: set[str],
    reconfigured: set[str],
    rewritten: list[str],
) -> Change | None:
    def change(
        action: Action,
        reason: str,
        before: str | None = None,
        after: str | None = None,
        *,
        force: bool = False,
    ) -> Change:
        return Change(
            Step.SERVICES, service, action, reason, before=before, after=after, force=force
        )

    if not containers:
        return change(Action.CREATE, "no container")
    if service in pinned:
        return change(
            Action.RECREATE, f"image pin changes to {pinned[service]}", after=pinned[service]
        )
    spec = facts.config.services.get(service)
    if spec is not None and spec.edited:
        # compose notices a value its config hash covers; only a forced recreate makes it read
        # a config's or secret's new content, or a rewritten input
        force = bool(rewritten) or all(not value.hashed for value in spec.edited)
        return change(Action.RECREATE, edited_reason(spec.edited, reference), force=force)
    if reference in rebuilt:
        return change(Action.RECREATE, f"image {reference} will be (re)built or pulled")
    if service in reconfigured:
        return change(Action.RECREATE, "its environment pins change in the compose file")
    wanted_hash = facts.config_hashes.get(service)
    image = facts.images.get(reference)
    changed = _changed_inputs(service, containers, facts)
    for container in containers:
        if not facts.config_current(container):
            secrets = _changed_secrets(container, spec.secrets_hashed if spec else (), facts)
            what = f"{_secrets(secrets)} changed" if secrets else "compose configuration changed"
            return change(
                Action.RECREATE,
                f"{what} (config hash differs)"
                + (f"; {changed} since the container was created" if changed else ""),
                before=container.config_hash,
                after=wanted_hash,
            )
        if image is not None and container.image_id != image.id:
            return change(
                Action.RECREATE,
                f"{reference} now points to another image",
                before=container.image_id,
                after=image.id,
            )
        unseen = _unhashed_secret_drift(container, spec.secrets_unhashed if spec else (), facts)
        if unseen:  # compose would keep the container: only a forced recreate gives it the value
            return change(Action.RECREATE, unseen, force=True)
    if changed:
        # compose sees no change here: only a forced recreate makes it read the files again.
        return change(Action.RECREATE, f"{changed} since the container was created", force=True)
    if rewritten:
        return change(
            Action.RECREATE, f"the compose-file step edits {', '.join(rewritten)}", force=True
        )
    for container in containers:
        if container.status != "running":
            if _completed_one_shot(service, container, facts.config):
                continue
            return change(
                Action.START, f"container {container.status} (exit code {container.exit_code})"
            )
        if container.health == "unhealthy":
            detail = f": {container.last_health_output}" if container.last_health_output else ""
            return change(Action.RECREATE, f"unhealthy{detail}"[:300], force=True)
        if container.health == "starting":
            return change(Action.WAIT, "health check still starting")
        unsettled = _recently_restarted(container, facts.observed_at)
        if unsettled:
            return change(Action.WAIT, unsettled)
    return None


def _secrets(names: Iterable[str]) -> str:
    names = list(names)
    return ("secret " if len(names) == 1 else "secrets ") + ", ".join(names)


def _changed_secrets(
    container: ContainerFacts, names: Iterable[str], facts: ServicesFacts
) -> list[str]:
    """The secrets among `names` whose keyed hash now differs from the one recorded for the
    container (unknown when either is missing: not counted)."""
    recorded = facts.secret_records.get(container.id, {})
    return [
        name
        for name in names
        if recorded.get(name)
        and facts.secret_hashes.get(name)
        and recorded[name] != facts.secret_hashes[name]
    ]


def _unhashed_secret_drift(
    container: ContainerFacts, names: Iterable[str], facts: ServicesFacts
) -> str | None:
    """Why the container must be recreated for a secret its config hash does not cover: the
    secret changed, or nothing says which value the container got."""
    names = list(names)
    changed = _changed_secrets(container, names, facts)
    if changed:
        return f"{_secrets(changed)} changed (not covered by compose's config hash)"
    recorded = facts.secret_records.get(container.id, {})
    unknown = [
        name for name in names if not recorded.get(name) or not facts.secret_hashes.get(name)
    ]
    if unknown:
        return (
            f"no record of the value of {_secrets(unknown)} in {container.name} "
            "(not covered by compose's config hash)"
        )
    return None


def _rewritten_inputs(spec: ServiceConfig, written: set[Path], state: State) -> list[str]:
    """The service's inputs (bind mounts, env files, file configs) that the compose-file step
    will write, or that hold a file it will write: compose would not notice."""
    return sorted(
        state.shown(source.path)
        for source in spec.inputs
        if (source.kind != "bind" or source.read_only or source.path in written)  # as inputs
        and any(path == source.path or source.path in path.parents for path in written)
    )


def _changed_inputs(service: str, containers: list[ContainerFacts], facts: ServicesFacts) -> str:
    """What changed among the service's inputs, for a reason: "changed: app.env, conf/" ("" when
    nothing did), with what a capped digest leaves out."""
    labels = sorted({label for c in containers for label in facts.changed_inputs(c)})
    if not labels:
        return ""
    digests = facts.inputs.get(service, {})
    notes = [f"{label}: {digests[label].capped}" for label in labels if digests[label].capped]
    return f"changed: {', '.join(labels)}" + (
        f" (digest capped: {'; '.join(notes)})" if notes else ""
    )


def _recently_restarted(container: ContainerFacts, observed_at: float | None) -> str | None:
    """Why a running container that docker restarted is not yet known to stay up, if it is not."""
    started = container.started_epoch
    if not container.restart_count or started is None or observed_at is None:
        return None
    up = observed_at - started
    if up >= RESTARTED_STABLE_FOR:
        return None
    return (
        f"restarted {container.restart_count} times and up only {max(up, 0):.1f} s: "
        "waiting to see it stay up"
    )


def apply(
    changes: tuple[Change, ...],
    state: State,
    facts: ServicesFacts,
    adapter: DockerAdapter,
) -> tuple[Change, ...]:
    """`compose up` the drifted services (force-recreating unhealthy ones), then wait for all."""
    config = facts.config
    force = [c.key for c in changes if c.force]
    normal = [c.key for c in changes if c.action in _UP_ACTIONS and not c.force]
    leftovers = _leftovers(adapter.containers())
    if leftovers:
        _log.warning(
            "removing leftovers of an interrupted recreate", containers=[c.name for c in leftovers]
        )
        adapter.remove_containers([c.id for c in leftovers])
    try:
        adapter.stop.check("compose up")
        if normal:
            _log.info(ProgressEvent.COMPOSE_UP, services=normal)
            adapter.up(normal)
        if force:
            _log.info(ProgressEvent.COMPOSE_UP_FORCED, services=force)
            adapter.up(force, force_recreate=True)
    except PermanentDockerError as error:
        # compose fails `up` itself when a dependency never gets healthy; show why, as a wait would.
        containers = _containers_by_service(adapter.containers())
        status = [readiness(name, containers.get(name, []), config) for name in config.services]
        failing = [item for item in status if item.failed]
        if not failing:
            raise
        raise _health_error(failing, containers, adapter, f"compose up failed: {error}") from error
    moments: dict[str, ReadyEntry] = {}
    containers = wait_until_ready(state, adapter, config, ready=moments)
    present = [c.id for group in containers.values() for c in group]
    ReadinessRecords(adapter.project_name).update(moments, present)
    _record_secrets(changes, facts, adapter, containers)
    return changes


def _record_secrets(
    changes: tuple[Change, ...],
    facts: ServicesFacts,
    adapter: DockerAdapter,
    containers: dict[str, list[ContainerFacts]],
) -> None:
    """Record, per container, the keyed hashes of the secrets it now has (`secret_store`).

    A service brought up now got every secret's current value. One left alone was in sync: its
    config hash matched, so it has the current value of every secret the hash covers; for the
    others its earlier records stand. Records of containers gone are dropped.
    """
    users = {
        name: spec
        for name, spec in facts.config.services.items()
        if spec.secrets_hashed or spec.secrets_unhashed
    }
    if not users:
        return
    values = adapter.secret_values()
    records = SecretRecords(adapter.project_name)
    key = records.ensure_key()
    before = records.read()
    brought_up = {c.key for c in changes if c.action in _UP_ACTIONS}
    after: dict[str, dict[str, str]] = {}
    for service, spec in users.items():
        names = [*spec.secrets_hashed, *(spec.secrets_unhashed if service in brought_up else ())]
        for container in containers.get(service, []):
            record = dict(before.get(container.id, {}))
            record.update({n: keyed_hash(key, n, values[n]) for n in names if n in values})
            after[container.id] = record
    records.write(after)


# A container without a healthcheck counts as ready once it has stayed up (same start, no
# restart) across samples this far apart: a single `running` sample also catches a crash loop
# in one of its short runs.
STABLE_FOR = 1.0
# A container docker has restarted must stay up this long before it counts as ready, and a plan
# that finds one up for less waits to see it stay up: a crash loop caught mid-run is not in sync.
RESTARTED_STABLE_FOR = 5.0


@dataclass
class ReadinessWatch:
    """Judges readiness over successive samples of one wait (feed it in time order).

    Ready: every container running and healthy, or running without a healthcheck and up for
    `stable_for` seconds; or a one-shot that completed. Failed (stop waiting): unhealthy, as
    `compose up --wait` treats it; exited or dead, unless completed; restarted during the wait.
    Not ready yet: no container, created, `restarting`, health starting, up for too short.
    """

    stable_for: float = STABLE_FOR
    _restarts: dict[str, int] = field(default_factory=dict)  # container id -> count first seen
    _up_since: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (start, seen)

    def assess(
        self,
        service: str,
        containers: list[ContainerFacts],
        config: ComposeConfig,
        now: float,
    ) -> Readiness:
        """Readiness of `service` from the sample taken at `now`.

        A service scaled to 0 is ready once none of its containers is up; one scaled to N once
        it has N containers, each ready.
        """
        spec = config.services.get(service)
        scale = 1 if spec is None else spec.scale
        if scale == 0:
            live = sum(c.status in _LIVE for c in containers)
            summary = f"scaled to 0: {live} still up" if live else "scaled to 0"
            return Readiness(service, not live, False, summary)
        if not containers:
            return Readiness(service, False, False, "no container yet")
        verdicts = [self._container(service, c, config, now) for c in containers]
        for verdict in verdicts:
            if verdict is not None and verdict.failed:
                return verdict
        if len(containers) != scale:
            running = sum(c.status == "running" for c in containers)
            summary = f"scale {scale}: {_plural(len(containers), 'container')}, {running} running"
            return Readiness(service, False, False, summary)
        for verdict in verdicts:
            if verdict is not None:
                return verdict
        return Readiness(service, True, False, _describe_ready(containers, scale))

    def _container(  # noqa: PLR0911 - a decision table, one return per verdict
        self, service: str, container: ContainerFacts, config: ComposeConfig, now: float
    ) -> Readiness | None:
        first = self._restarts.setdefault(container.id, container.restart_count)
        if container.restart_count > first:
            summary = (
                f"restarted during the wait (restart count {first} -> "
                f"{container.restart_count}): crash-looping"
            )
            return Readiness(service, False, True, summary)
        if container.status != "running":
            if _completed_one_shot(service, container, config):
                return None
            failed = container.status in {"exited", "dead"}
            summary = f"{container.status} (exit code {container.exit_code})"
            return Readiness(service, False, failed, summary)
        if container.health == "unhealthy":
            return Readiness(service, False, True, "unhealthy")
        if container.health == "starting":
            return Readiness(service, False, False, "health: starting")
        window = RESTARTED_STABLE_FOR if container.restart_count else self.stable_for
        if container.health is None or container.restart_count:
            start, seen = self._up_since.setdefault(container.id, (container.started_at, now))
            if start != container.started_at:
                self._up_since[container.id] = (container.started_at, now)
                seen = now
            if now - seen < window:
                return Readiness(service, False, False, "running; checking that it stays up")
        return None


def readiness(service: str, containers: list[ContainerFacts], config: ComposeConfig) -> Readiness:
    """Readiness from a single sample (no stability window): for one-off looks, not waits."""
    return ReadinessWatch(stable_for=0.0).assess(service, containers, config, 0.0)


def wait_until_ready(
    state: State,
    adapter: DockerAdapter,
    config: ComposeConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    ready: dict[str, ReadyEntry] | None = None,
    wall: Callable[[], float] = time.time,
) -> dict[str, list[ContainerFacts]]:
    """Poll (batched inspect, backing off to 1 s) until every service is ready; return the
    containers of the last sample, by service. `ready`, when given, receives when each
    container with a healthcheck became healthy, where known (`observe.readiness`).

    Each service has its own deadline (`services.<name>.health_timeout`). On a failure or a
    missed deadline, raise `HealthTimeoutError` with the last health-check output and log tail
    of each service that is not ready. A stop request ends the wait at once.
    """
    sleep = sleep or adapter.stop.sleep
    poll = Poll(None, delay=0.2, factor=1.5, most=1.0, clock=clock, sleep=sleep)
    started = poll.started
    deadlines = service_deadlines(state, config.services, started)
    watch = ReadinessWatch()
    engine = EngineSilence(clock, started)
    seen: dict[str, str] = {}
    unhealthy: dict[str, float] = {}  # containers this wait saw not (yet) healthy: when last
    while True:
        containers = _containers_by_service(engine.sample(adapter.containers))
        now = clock()
        if ready is not None:
            _note_ready(containers, unhealthy, ready, wall())
        status = {
            name: watch.assess(name, containers.get(name, []), config, now)
            for name in config.services
        }
        for name, item in status.items():  # each service's state as it changes, for a live view
            if seen.get(name) != item.summary:
                seen[name] = item.summary
                _log.debug(
                    ProgressEvent.SERVICE_HEALTH,
                    service=name,
                    state=item.summary,
                    ready=item.ready,
                    failed=item.failed,
                )
        pending = [r for r in status.values() if not r.ready]
        if not pending:
            _log.info(ProgressEvent.ALL_SERVICES_READY, seconds=round(now - started, 2))
            return containers
        failing = [r for r in pending if r.failed or now >= deadlines[r.service]]
        if failing and not engine.ask_again(deadlines[r.service] for r in failing):
            late = any(now >= deadlines[r.service] for r in failing)
            raise _health_error(failing, containers, adapter, engine.headline(late=late))
        _log.debug(
            ProgressEvent.WAITING_FOR_SERVICES, pending={r.service: r.summary for r in pending}
        )
        adapter.stop.check("services became ready")
        poll.wait()


def _note_ready(
    containers: dict[str, list[ContainerFacts]],
    unhealthy: dict[str, float],
    ready: dict[str, ReadyEntry],
    now: float,
) -> None:
    """Note when each container with a healthcheck became healthy: from its health log where
    that shows it, else now when this wait saw it unhealthy before, after that last look
    (`observe.readiness`)."""
    for container in (c for group in containers.values() for c in group):
        if container.health is None or container.id in ready:
            continue
        if container.health != "healthy":
            unhealthy[container.id] = now
            continue
        entry = logged_ready_moment(container)
        if entry is None and container.id in unhealthy:
            entry = ReadyEntry(
                started_at=container.started_at, ready_at=now, ready_after=unhealthy[container.id]
            )
        if entry is not None:
            ready[container.id] = entry


def _health_error(
    failing: list[Readiness],
    containers: dict[str, list[ContainerFacts]],
    adapter: DockerAdapter,
    headline: str,
) -> HealthTimeoutError:
    diagnostics: dict[str, str] = {}
    for item in failing:
        lines = [f"state: {item.summary}"]
        for container in containers.get(item.service, []):
            if container.last_health_output:
                lines.append(f"last health check output: {container.last_health_output}")
            lines.append(f"log tail of {container.name}:")
            lines.extend("  " + line for line in adapter.container_logs(container.id).splitlines())
        diagnostics[item.service] = "\n".join(lines)
    names = ", ".join(f"{item.service} ({item.summary})" for item in failing)
    return HealthTimeoutError(f"{headline}: {names}", diagnostics)


def _containers_by_service(containers: Iterable[ContainerFacts]) -> dict[str, list[ContainerFacts]]:
    grouped: dict[str, list[ContainerFacts]] = {}
    for container in containers:
        if not container.oneoff and not _LEFTOVER.match(container.name):
            grouped.setdefault(container.service, []).append(container)
    return grouped


# compose recreates by renaming the old container to "<12 hex of its id>_<name>", creating the
# new one, then removing the old; a kill in between leaves the renamed one, which blocks the next
# recreate with a name conflict.
_LEFTOVER = re.compile(r"^[0-9a-f]{12}_")


def _leftovers(containers: Iterable[ContainerFacts]) -> list[ContainerFacts]:
    return [c for c in containers if not c.oneoff and _LEFTOVER.match(c.name)]


def _completed_one_shot(service: str, container: ContainerFacts, config: ComposeConfig) -> bool:
    """Exited 0 and meant to: a service others wait on to complete, or one with no restart
    policy and no healthcheck (a long-running service declares one, so one that exited 0 was
    stopped, not completed)."""
    if container.status != "exited" or container.exit_code != 0:
        return False
    spec = config.services.get(service)
    if container.completed and (spec is None or not spec.has_healthcheck):
        return True
    return any(
        spec.depends_on.get(service) == "service_completed_successfully"
        for spec in config.services.values()
    )


def _describe_ready(containers: list[ContainerFacts], scale: int = 1) -> str:
    states = "; ".join(sorted({_describe(c) for c in containers}))
    return states if scale == 1 else f"scale {scale}: {states}"


def _describe(container: ContainerFacts) -> str:
    if container.status == "exited" and container.exit_code == 0:
        return "exited 0: a completed one-shot"
    return f"{container.status}, {container.health}" if container.health else container.status


def fingerprint(state: State, facts: ServicesFacts, secrets: Secrets) -> dict[str, object]:
    """By service: its model, pin and image, whether compose has a config hash for it, its
    inputs' keyed digests, and its containers (state, health, image, restarts; whether the
    config hash and inputs match, not the digests: they may cover secrets)."""
    config = facts.config
    by_service: dict[str, list[ContainerFacts]] = {}
    for container in facts.containers:
        by_service.setdefault(container.service, []).append(container)
    targets: dict[str, object] = {}
    for service in sorted({*config.services, *by_service}):
        spec = config.services.get(service)
        reference = facts.pins.get(service) or (config.image_of(service) if spec else None)
        image = facts.images.get(reference) if reference else None
        wanted_hash = facts.config_hashes.get(service)
        targets[service] = {
            "config": plain(spec, secrets),
            "pin": plain(facts.pins.get(service), secrets),  # a tag may hold a secret
            "image": plain(reference, secrets),
            "image_id": image.id if image is not None else None,
            "has_config_hash": wanted_hash is not None,
            # plain sha256 of files that may hold secrets (an env file): kept keyed only
            "inputs": {
                label: secrets.mask_value(digest.digest)
                for label, digest in facts.inputs.get(service, {}).items()
            },
            "containers": sorted(
                (_fingerprint_container(c, facts) for c in by_service.get(service, [])),
                key=lambda item: json.dumps(item, sort_keys=True),
            ),
        }
    return targets


def _fingerprint_container(container: ContainerFacts, facts: ServicesFacts) -> object:
    return {
        "id": container.id,
        "name": container.name,
        "status": container.status,
        "health": container.health,
        "exit_code": container.exit_code,
        "image_id": container.image_id,
        "oneoff": container.oneoff,
        "restart_count": container.restart_count,
        "started_at": container.started_at,
        "restart_policy": container.restart_policy,
        # compose's config hash covers the environment (maybe secret): only the match is kept.
        "config_current": facts.config_current(container),
        "inputs_changed": facts.changed_inputs(container),
        "inputs_recorded": container.id in facts.recorded,
    }


STEP = StepDefinition(
    step=Step.SERVICES,
    observe=observe,
    diff=diff,
    fingerprint=fingerprint,
    apply=apply,
    converged=record_inputs,
)
