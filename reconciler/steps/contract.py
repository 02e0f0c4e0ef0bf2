"""The one shape every step has, and how the reconcile loop sees it.

A step module holds `diff(state, observed, earlier) -> Plan`, pure (the same inputs give the
same plan, whatever ran before; `earlier` is the plan of the steps before it, e.g. the images
the services step will see rebuilt), and `apply(changes, state, observed, adapter)`, which
makes its planned changes and returns those it really made. It exports both as
`STEP = StepDefinition(Step.X, diff, apply)`; `reconcile.STEPS` lists them in apply order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.docker.adapter import DockerAdapter
from reconciler.facts import Observed
from reconciler.plans import Change, Plan, Step
from reconciler.state import State

__all__ = ["ApplyStep", "DiffStep", "StepDefinition"]

DiffStep = Callable[[State, Observed, Plan], Plan]
ApplyStep = Callable[[tuple[Change, ...], State, Observed, DockerAdapter], tuple[Change, ...]]


@dataclass(frozen=True)
class StepDefinition:
    """A step's name and its two functions."""

    step: Step
    diff: DiffStep
    apply: ApplyStep
