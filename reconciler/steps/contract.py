"""The one shape every step has, and how the reconcile loop sees it.

A step module holds its own facts type `F` (a frozen dataclass in `reconciler.observe.facts`) and
three functions:

- `observe(state, snapshot, adapter) -> F`: projects the step's facts from the shared
  `Snapshot`, adding only the step's own reads (the migrations step's alembic execs, the images
  step's input digests);
- `diff(state, facts, earlier) -> Plan`, pure: the same inputs give the same plan, whatever ran
  before; `earlier` is the plan of the steps before it (e.g. the images the services step will
  see rebuilt);
- `apply(changes, state, facts, adapter)`: makes its planned changes and returns those it
  really made. A step that can fail part-way (after some of its changes are made) raises
  `StepIncomplete`, saying which it made and which it was making, so that the run reports
  them truly and a rollback undoes exactly those.

It exports them as `STEP = StepDefinition(Step.X, observe, diff, apply)`; `reconcile.STEPS`
lists the steps in apply order and loops over them with no step-specific code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import ReconcilerError
from reconciler.observe.facts import Snapshot
from reconciler.plans import Change, Plan, Step
from reconciler.state import State

__all__ = ["ApplyStep", "DiffStep", "ObserveStep", "StepDefinition", "StepIncomplete"]

F = TypeVar("F")

ObserveStep = Callable[[State, Snapshot, DockerAdapter], F]
DiffStep = Callable[[State, F, Plan], Plan]
ApplyStep = Callable[[tuple[Change, ...], State, F, DockerAdapter], tuple[Change, ...]]


@dataclass(frozen=True)
class StepDefinition(Generic[F]):
    """A step's name and its three functions, over the step's own facts type `F`."""

    step: Step
    observe: ObserveStep[F]
    diff: DiffStep[F]
    apply: ApplyStep[F]


class StepIncomplete(ReconcilerError):
    """A step's apply stopped part-way: `cause` (any exception) stopped it after it made `done`
    and while it was making `attempted` (which may or may not have taken effect: a rollback
    checks). The reconcile loop unwraps it: `cause` is the run's error, `done` are applied, the
    step's other changes failed."""

    def __init__(
        self, cause: Exception, done: tuple[Change, ...], attempted: tuple[Change, ...]
    ) -> None:
        self.cause = cause
        self.done = done
        self.attempted = attempted
        super().__init__(str(cause))
