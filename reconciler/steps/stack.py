"""The services step in swarm mode (`compose.mode: swarm`): the compose file as a Swarm stack.

`apply` runs `docker stack deploy` with the compose file plus an overlay (on stdin) that
stamps two labels on every service: `io.reconciler.config-hash`, compose's config hash of the
service (a service label), and `io.reconciler.image-id`, the ID of the image its tag points to
on the engine (a container label, so part of the task template: a tag moved to another image
changes the spec, and Swarm replaces that service's tasks alone). Drift is read back from the
services' specs (`docker service inspect`): a missing service, another image, a label that
differs; health from the tasks Swarm wants running. So a converged stack plans nothing, and a
second apply makes no docker call that changes anything.

Unless the file declares its own `deploy.update_config.failure_action`, the overlay sets it
to `rollback`: an update whose new tasks fail (exit, or never get healthy) within Swarm's
monitor window is rolled back by Swarm itself. With `failure_action: pause` declared, reconciler
runs `docker service rollback` on the paused update. Either way the apply fails (exit 1),
saying which service was rolled back, to what, and how long the rollback took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import (
    ComposeConfig,
    ImageFacts,
    SwarmService,
    SwarmTask,
    normalize_reference,
)
from reconciler.errors import ApplyError, DockerError, HealthTimeoutError
from reconciler.logs import ProgressEvent, get_logger
from reconciler.observe.config_hashes import config_hashes
from reconciler.observe.facts import Snapshot
from reconciler.observe.planned import edited_reason
from reconciler.observe.snapshot import desired_images, pulls_always
from reconciler.plans import MAKES_IMAGE, Action, Change, InSync, Plan, Step
from reconciler.runtime.poll import Poll
from reconciler.secrets.redact import Secrets
from reconciler.state import State
from reconciler.steps.contract import StepDefinition, plain
from reconciler.steps.waits import EngineSilence, Readiness, service_deadlines

__all__ = [
    "CONFIG_HASH_LABEL",
    "IMAGE_ID_LABEL",
    "STEP",
    "StackFacts",
    "SwarmRollbackError",
    "apply",
    "diff",
    "fingerprint",
    "observe",
    "overlay",
    "service_readiness",
    "wait_for_stack",
]

_log = get_logger(__name__)

CONFIG_HASH_LABEL = "io.reconciler.config-hash"
IMAGE_ID_LABEL = "io.reconciler.image-id"
_UPDATING = frozenset({"updating", "rollback_started"})
_ROLLED_BACK = frozenset({"rollback_completed", "rollback_paused"})
# Task states past which a task never runs again (Swarm starts a new one instead).
_ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})


class SwarmRollbackError(ApplyError):
    """An update failed and the service was rolled back (by Swarm, or `service rollback`)."""

    def __init__(self, message: str, rolled_back: dict[str, float]) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back  # service -> seconds the rollback took


@dataclass(frozen=True)
class StackFacts:
    """The stack step's facts (the services step's in swarm mode): compose's model and config
    hashes (what the stack must run), the stack's services and tasks as Swarm has them, and
    the images."""

    config: ComposeConfig
    config_hashes: dict[str, str] = field(default_factory=dict)
    services: dict[str, SwarmService] = field(default_factory=dict)  # by compose service name
    tasks: tuple[SwarmTask, ...] = ()
    images: dict[str, ImageFacts] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)  # image pins in force
    prune: bool = False  # `compose.prune`: services of the stack the file dropped are removed

    def current_tasks(self, service: str) -> list[SwarmTask]:
        """The tasks Swarm wants running for `service` (desired state running), newest first."""
        found = self.services.get(service)
        if found is None:
            return []
        tasks = [t for t in self.tasks if t.service_id == found.id and t.desired_state == "running"]
        return sorted(tasks, key=lambda task: task.timestamp, reverse=True)


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> StackFacts:
    """compose's model and hashes, the stack's services and tasks, images and pins."""
    config = snapshot.config
    assert config is not None, "the snapshot asks docker when services is selected"
    return StackFacts(
        config=config,
        config_hashes=snapshot.config_hashes,
        services={service.name: service for service in snapshot.swarm_services},
        tasks=snapshot.swarm_tasks,
        images=snapshot.images,
        pins=snapshot.pins,
        prune=state.compose.prune,
    )


def diff(state: State, facts: StackFacts, earlier: Plan) -> Plan:
    """One change per service whose spec differs from what the state wants, or that Swarm has
    not brought to its replicas yet; with `compose.prune`, one per service the file dropped."""
    config = facts.config
    rebuilt = {
        change.key
        for change in earlier.for_step(Step.IMAGES)
        if change.action in MAKES_IMAGE and not pulls_always(state, change)
    }
    reconfigured = earlier.keys(Step.COMPOSE_FILE) & set(config.services)
    images = desired_images(facts.pins, config)
    changes: list[Change] = []
    ok: list[InSync] = []
    stack = config.project
    for name in config.services:
        reference = images[name]
        change = _drift(name, reference, facts, rebuilt=rebuilt, reconfigured=reconfigured)
        if change is None:
            ready = service_readiness(name, facts)
            if ready.ready:
                ok.append(InSync(Step.SERVICES, name, ready.summary))
                continue
            change = Change(Step.SERVICES, name, Action.WAIT, f"stack {stack}: {ready.summary}")
        changes.append(change)
    for name in sorted(set(facts.services) - set(config.services)):
        if facts.prune:
            reason = f"stack {stack} runs it but the compose file no longer defines it (prune)"
            changes.append(Change(Step.SERVICES, name, Action.REMOVE, reason))
        else:
            reason = "not in the compose file; left running (compose.prune is off)"
            ok.append(InSync(Step.SERVICES, name, reason))
    return Plan(tuple(changes), tuple(ok))


def _drift(  # noqa: PLR0911 - a decision table: one return per kind of drift
    name: str,
    reference: str,
    facts: StackFacts,
    *,
    rebuilt: set[str],
    reconfigured: set[str],
) -> Change | None:
    """Why the service's spec must change (a deploy or an update), if it must."""

    def update(reason: str, before: str | None = None, after: str | None = None) -> Change:
        return Change(Step.SERVICES, name, Action.UPDATE, reason, before=before, after=after)

    service = facts.services.get(name)
    if service is None:
        return Change(
            Step.SERVICES, name, Action.DEPLOY, f"not deployed in stack {facts.config.project}"
        )
    running = _without_digest(service.image)
    file_image = facts.config.services[name].image
    if name in facts.pins and file_image != facts.pins[name]:
        return update(f"image pin changes to {reference}", before=running, after=reference)
    edited = facts.config.services[name].edited
    if edited:  # the compose-file step's env-file edits change values the stack interpolates
        return update(edited_reason(edited, reference), before=running, after=reference)
    if reference in rebuilt:
        return update(f"image {reference} will be (re)built or pulled")
    if name in reconfigured:
        return update("its environment pins change in the compose file")
    if normalize_reference(running) != normalize_reference(reference):
        return update(
            f"the service runs {running}, the compose file says {reference}"
            + _rolled_back_note(service),
            before=running,
            after=reference,
        )
    wanted_hash = facts.config_hashes.get(name)
    if wanted_hash and service.labels.get(CONFIG_HASH_LABEL) != wanted_hash:
        rolled = _rolled_back_note(service)
        return update(
            f"compose configuration changed (config hash label differs){rolled}",
            before=service.labels.get(CONFIG_HASH_LABEL),
            after=wanted_hash,
        )
    image = facts.images.get(reference)
    deployed_id = service.container_labels.get(IMAGE_ID_LABEL)
    if image is not None and deployed_id != image.id:
        return update(
            f"{reference} now points to another image{_rolled_back_note(service)}",
            before=deployed_id,
            after=image.id,
        )
    return None


def _rolled_back_note(service: SwarmService) -> str:
    if service.update_state in _ROLLED_BACK:
        return f" (its last update was rolled back: {service.update_message})"
    return ""


def _without_digest(image: str) -> str:
    """A spec's image without the digest Swarm may have pinned (`name:tag@sha256:...`)."""
    return image.partition("@")[0] if "@" in image and ":" in image.partition("@")[0] else image


def service_readiness(name: str, facts: StackFacts) -> Readiness:
    """Ready: no update in progress, and as many tasks running (healthy, when the service has a
    healthcheck: Swarm holds a task in `starting` until then) as its replicas, each of the
    current spec (its image-id label). Failed: an update rolled back or paused, or a task that
    Swarm rejected."""
    service = facts.services.get(name)
    if service is None:
        return Readiness(name, False, False, "not deployed")
    if service.update_state in _UPDATING:
        return Readiness(name, False, False, f"update {service.update_state.replace('_', ' ')}")
    current = facts.current_tasks(name)
    wanted = service.container_labels.get(IMAGE_ID_LABEL)
    running = [
        t
        for t in current
        if t.state == "running" and (wanted is None or t.labels.get(IMAGE_ID_LABEL) == wanted)
    ]
    replicas = service.replicas
    rejected = [t for t in current if t.state == "rejected"]
    if rejected:
        return Readiness(name, False, True, f"task rejected: {_task_error(rejected[0])}")
    if service.update_state == "paused":
        return Readiness(name, False, True, f"update paused: {service.update_message}")
    enough = bool(running) if replicas is None else len(running) >= replicas
    shown = f"{len(running)}/{'global' if replicas is None else replicas} tasks running"
    if enough:
        return Readiness(name, True, False, shown)
    failing = [t for t in facts.tasks if t.service_id == service.id and t.state in _ENDED]
    failing = [t for t in failing if t.error or (t.exit_code or 0) != 0]
    latest = max(failing, key=lambda task: task.timestamp) if failing else None
    detail = f"; last task failed: {_task_error(latest)}" if latest is not None else ""
    states = sorted({t.state for t in current if t.state != "running"})
    if states:
        shown += f" ({', '.join(states)})"
    return Readiness(name, False, False, shown + detail)


def _task_error(task: SwarmTask) -> str:
    text = task.error or task.message
    if task.exit_code:
        text += f" (exit code {task.exit_code})"
    return text


def overlay(facts: StackFacts, image_ids: Mapping[str, str], hashes: Mapping[str, str]) -> str:
    """The overlay compose file given to stack deploy after the state's own (JSON is YAML):
    the config-hash (`hashes`: compose's, of the file as this apply left it) and image-id
    labels of every service, and `failure_action: rollback` for services whose file leaves it
    unset."""
    images = desired_images(facts.pins, facts.config)
    services: dict[str, object] = {}
    for name, spec in facts.config.services.items():
        deploy: dict[str, object] = {}
        wanted_hash = hashes.get(name)
        if wanted_hash:
            deploy["labels"] = {CONFIG_HASH_LABEL: wanted_hash}
        if spec.failure_action is None:
            deploy["update_config"] = {"failure_action": "rollback"}
        entry: dict[str, object] = {"deploy": deploy}
        image_id = image_ids.get(images[name])
        if image_id:
            entry["labels"] = {IMAGE_ID_LABEL: image_id}
        if name in facts.pins:
            entry["image"] = facts.pins[name]
        services[name] = entry
    return json.dumps({"services": services}, indent=2, sort_keys=True) + "\n"


def apply(
    changes: tuple[Change, ...], state: State, facts: StackFacts, adapter: DockerAdapter
) -> tuple[Change, ...]:
    """`stack deploy` the whole file with the stamped labels (a service whose spec is
    unchanged is left alone by Swarm), then wait for every service to converge."""
    updated = {c.key for c in changes if c.action is Action.UPDATE}
    if any(c.action is not Action.WAIT for c in changes):
        images = desired_images(facts.pins, facts.config)
        present = adapter.images(set(images.values()))  # as the images step left them
        image_ids = {reference: image.id for reference, image in present.items()}
        # the compose-file step may have edited the file: its model now
        hashes = config_hashes(adapter, adapter.compose_config())
        adapter.stop.check("stack deploy")
        _log.info(
            "stack deploy", stack=adapter.project_name, services=sorted(c.key for c in changes)
        )
        adapter.stack_deploy(
            overlay(facts, image_ids, hashes),
            prune=state.compose.prune,
            with_registry_auth=bool(state.registries),
        )
    wait_for_stack(state, adapter, facts, updated=updated)
    return changes


def wait_for_stack(
    state: State,
    adapter: DockerAdapter,
    facts: StackFacts,
    *,
    updated: Collection[str] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
) -> StackFacts:
    """Poll the stack (services and tasks: four batched reads) until every service is ready.

    A service whose update Swarm rolls back is waited for until the rollback completes (its
    time measured, from the moment the rollback was first seen); a paused update is rolled
    back with `docker service rollback`. Then `SwarmRollbackError`. A service not ready by its
    deadline (`services.<name>.health_timeout`) or whose task Swarm rejects fails with
    `HealthTimeoutError`, carrying its tasks' errors and the log tail of its last container.
    """
    sleep = sleep or adapter.stop.sleep
    poll = Poll(None, delay=0.25, factor=1.5, most=1.0, clock=clock, sleep=sleep)
    started = poll.started
    deadlines = service_deadlines(state, facts.config.services, started)
    engine = EngineSilence(clock, started)
    rollback_seen: dict[str, float] = {}
    rolled_back: dict[str, float] = {}
    asked_rollback: set[str] = set()
    messages: dict[str, str] = {}
    seen: dict[str, str] = {}
    while True:
        services, tasks = engine.sample(lambda: _stack_sample(adapter))
        now = clock()
        current = StackFacts(facts.config, facts.config_hashes, services, tasks, facts.images)
        status = {name: service_readiness(name, current) for name in facts.config.services}
        for name, item in status.items():
            if seen.get(name) != item.summary:
                seen[name] = item.summary
                _log.debug(
                    ProgressEvent.SERVICE_HEALTH, service=name, state=item.summary, ready=item.ready
                )
        for name, service in services.items():
            if name not in updated or name in rolled_back:
                continue
            if service.update_state == "paused" and name not in asked_rollback:
                _log.warning(
                    "update paused: rolling back", service=name, reason=service.update_message
                )
                rollback_seen.setdefault(name, now)
                asked_rollback.add(name)
                messages[name] = service.update_message
                adapter.service_rollback(name)
            elif service.update_state == "rollback_started":
                rollback_seen.setdefault(name, now)
                messages.setdefault(name, service.update_message)
            elif service.update_state in _ROLLED_BACK:
                if service.update_state == "rollback_completed" and not status[name].ready:
                    rollback_seen.setdefault(name, now)
                    continue  # its previous tasks are not all back yet
                seconds = now - rollback_seen.get(name, now)
                rolled_back[name] = seconds
                _log.warning(
                    "swarm rolled back",
                    service=name,
                    to=service.image,
                    seconds=round(seconds, 2),
                    state=service.update_state,
                    reason=messages.get(name) or service.update_message,
                )
        pending_rollback = set(rollback_seen) - set(rolled_back)
        if rolled_back and not pending_rollback:
            raise SwarmRollbackError(
                "; ".join(
                    f"update of {name} failed ({messages.get(name) or 'its new tasks failed'}); "
                    f"rolled back by Swarm to {services[name].image} in {seconds:.1f} s"
                    for name, seconds in sorted(rolled_back.items())
                ),
                rolled_back,
            )
        pending = [item for item in status.values() if not item.ready]
        if not pending and not pending_rollback:
            _log.info("all stack services ready", seconds=round(now - started, 2))
            return current
        # A service being updated may fail for a while before Swarm rolls it back: only its
        # deadline ends that wait; a new service (nothing to roll back to) fails at once.
        failing = [
            item
            for item in pending
            if item.service not in rollback_seen
            and (now >= deadlines[item.service] or (item.failed and item.service not in updated))
        ]
        if failing and not engine.ask_again(deadlines[item.service] for item in failing):
            late = any(now >= deadlines[i.service] for i in failing)
            raise _health_error(failing, current, adapter, engine.headline(late=late))
        adapter.stop.check("stack services became ready")
        poll.wait()


def _stack_sample(adapter: DockerAdapter) -> tuple[dict[str, SwarmService], tuple[SwarmTask, ...]]:
    """One sample of the stack: its services by name, and their tasks."""
    services = {s.name: s for s in adapter.stack_services()}
    return services, tuple(adapter.stack_tasks([s.id for s in services.values()]))


def _health_error(
    failing: list[Readiness], facts: StackFacts, adapter: DockerAdapter, headline: str
) -> HealthTimeoutError:
    diagnostics: dict[str, str] = {}
    for item in failing:
        lines = [f"state: {item.summary}"]
        service = facts.services.get(item.service)
        tasks = [t for t in facts.tasks if service is not None and t.service_id == service.id]
        tasks.sort(key=lambda task: task.timestamp, reverse=True)
        for task in tasks[:3]:
            lines.append(f"task {task.id[:12]}: {task.state} {_task_error(task)}".rstrip())
        latest = next((t for t in tasks if t.container_id), None)
        if latest is not None:
            lines.append(f"log tail of task {latest.id[:12]}:")
            try:
                tail = adapter.container_logs(latest.container_id)
            except DockerError as error:  # the container may be gone already
                tail = f"(no log: {error.message})"
            lines.extend("  " + line for line in tail.splitlines())
        diagnostics[item.service] = "\n".join(lines)
    names = ", ".join(f"{item.service} ({item.summary})" for item in failing)
    return HealthTimeoutError(f"{headline}: {names}", diagnostics)


def fingerprint(state: State, facts: StackFacts, secrets: Secrets) -> dict[str, object]:
    """The whole stack as one target, `*` (as plan files have named it since version 2)."""
    return {"*": plain(facts, secrets)}


# The services step in Swarm mode: `steps.registry` lists it in place of `services.STEP`.
STEP = StepDefinition(
    step=Step.SERVICES, observe=observe, diff=diff, fingerprint=fingerprint, apply=apply
)
