"""The plan: immutable, ordered data saying what differs and what to do about it.

Produced by the pure `diff` of each step module, consumed by `apply`, printed by the CLI. A
plan with no changes means "in sync"; `ok` rows say why each resource needed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["STEP_ORDER", "Change", "InSync", "Plan", "Step"]


class Step(StrEnum):
    """The fixed step names, in apply order (DESIGN.md §2)."""

    COMPOSE_FILE = "compose-file"
    IMAGES = "images"
    SERVICES = "services"
    MIGRATIONS = "migrations"
    CHECKS = "checks"


STEP_ORDER: tuple[Step, ...] = tuple(Step)


@dataclass(frozen=True)
class Change:
    """One thing apply will do: `action` on `target` in `step`, because `reason`."""

    step: Step
    target: str
    action: str
    reason: str
    before: str | None = None
    after: str | None = None
    diff: str | None = None  # unified diff, for file edits

    def to_dict(self) -> dict[str, Any]:
        """The plan-JSON shape: step, target, action, reason, then optional fields."""
        data: dict[str, Any] = {
            "step": str(self.step),
            "target": self.target,
            "action": self.action,
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
