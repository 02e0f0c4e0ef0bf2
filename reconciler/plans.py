"""The plan: immutable, ordered data saying what differs and what to do about it.

Produced by the pure `diff` of each step module, consumed by `apply`, printed by the CLI. A
plan with no changes means "in sync"; `ok` rows say why each resource needed nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["STEP_ORDER", "Action", "Change", "InSync", "Plan", "Step", "selected"]


class Step(StrEnum):
    """The fixed step names, in apply order (DESIGN.md §2)."""

    COMPOSE_FILE = "compose-file"
    IMAGES = "images"
    SERVICES = "services"
    MIGRATIONS = "migrations"
    CHECKS = "checks"


STEP_ORDER: tuple[Step, ...] = tuple(Step)


def selected(only: Collection[str], skip: Collection[str]) -> tuple[Step, ...]:
    """The steps `only` and `skip` (step names) choose, in apply order: `only`'s (every step
    when empty), less `skip`'s. The one rule, for running a plan and for checking a saved one."""
    return tuple(step for step in STEP_ORDER if (not only or step in only) and step not in skip)


class Action(StrEnum):
    """What a change does; its value is the plan JSON's `action`."""

    EDIT = "edit"  # compose-file: replace a value
    INSERT = "insert"  # compose-file: add a key
    REMOVE = "remove"  # compose-file: remove a key (a dotenv line); swarm: prune a service
    DOWNLOAD = "download"  # images: fill a wheelhouse
    BUILD = "build"
    IMPORT = "import"  # images: a rootfs made into a base image
    TRANSFER = "transfer"  # images: copied from the local engine to the target (save | load)
    PULL = "pull"
    CREATE = "create"  # services
    RECREATE = "recreate"
    START = "start"
    WAIT = "wait"
    SCALE = "scale"  # services: compose up to the declared number of containers (0 stops all)
    UPGRADE = "upgrade"  # migrations
    DEPLOY = "deploy"  # services, swarm mode: a service the stack does not run yet
    UPDATE = "update"  # services, swarm mode: a stack service whose spec or image differs


MAKES_IMAGE = frozenset({Action.BUILD, Action.IMPORT, Action.TRANSFER, Action.PULL})


@dataclass(frozen=True)
class Change:
    """One thing apply will do: `action` on `target` in `step`, because `reason`.

    `target` and `reason` are for people; apply acts on `key`, the resource's own identifier
    (service name, image reference, wheelhouse directory, migration name; `target` when not
    given), and on the typed `action` and `force`, never on the text.
    """

    step: Step
    target: str
    action: Action
    reason: str
    before: str | None = None
    after: str | None = None
    diff: str | None = None  # unified diff, for file edits
    key: str = ""
    force: bool = False  # services: recreate even if compose sees no change (unhealthy)
    # compose-file: the absolute path of the file (other than the compose file) it writes, so
    # that services reading that file (bind mount, env_file, configs) are planned to recreate
    writes: str | None = None

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.target)

    def to_dict(self) -> dict[str, Any]:
        """The plan-JSON shape: step, target, action, reason, then optional fields."""
        data: dict[str, Any] = {
            "step": str(self.step),
            "target": self.target,
            "action": str(self.action),
            "reason": self.reason,
        }
        for key in ("before", "after", "diff"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True)
class InSync:
    """A resource that needs nothing, with the observation that says so."""

    step: Step
    target: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form: step, target, reason."""
        return {"step": str(self.step), "target": self.target, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """Ordered changes (apply order) plus the resources found in sync."""

    changes: tuple[Change, ...] = ()
    ok: tuple[InSync, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing differs: the environment is in its declared state."""
        return not self.changes

    def keys(self, step: Step, actions: frozenset[Action] | None = None) -> set[str]:
        """The keys of `step`'s changes (whose action is in `actions`, if given)."""
        return {c.key for c in self.for_step(step) if actions is None or c.action in actions}

    def for_step(self, step: Step) -> tuple[Change, ...]:
        """The changes of one step."""
        return tuple(change for change in self.changes if change.step == step)

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.changes + other.changes, self.ok + other.ok)

    def to_dict(self) -> dict[str, Any]:
        """The plan-JSON contract: {"changes": [...]} (empty means in sync), plus "ok"."""
        return {
            "changes": [change.to_dict() for change in self.changes],
            "ok": [row.to_dict() for row in self.ok],
        }
