"""The one list of the steps, per mode: the only module outside of which no step is named.

`STEPS` are the steps in apply order; `SWARM_STEPS` the same with the stack step in place of
the services step, under the same name (`services`): `steps_for(state)` picks the list for the
state's `compose.mode`. The reconcile loop, saved plans and the CLI reach steps only through
this module and `steps.contract` (whose public types it re-exports), never a step module or a
step's facts type (`tests/steps/test_contract_boundary.py` keeps it so). Adding a step: see
docs/new-step.md.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from reconciler.plans import Step
from reconciler.state import State
from reconciler.steps import checks, compose_file, images, migrations, services, stack
from reconciler.steps.contract import (
    CaseResult,
    CheckResult,
    StepDefinition,
    StepIncomplete,
    VerifyContext,
)

__all__ = [
    "STEPS",
    "SWARM_STEPS",
    "CaseResult",
    "CheckResult",
    "StepDefinition",
    "StepIncomplete",
    "VerifyContext",
    "in_order",
    "names",
    "order",
    "select",
    "step_named",
    "steps_for",
]

# The steps, in apply order: adding one is a module with a `STEP`, and a line here (and in
# SWARM_STEPS). Each is generic over its own facts type; the loop hands a step only the facts
# its `observe` returned.
STEPS: tuple[StepDefinition[Any], ...] = (
    compose_file.STEP,
    images.STEP,
    services.STEP,
    migrations.STEP,
    checks.STEP,
)
# Swarm mode (`compose.mode: swarm`): the compose file deployed as a stack.
SWARM_STEPS: tuple[StepDefinition[Any], ...] = tuple(
    stack.STEP if definition is services.STEP else definition for definition in STEPS
)


def steps_for(state: State) -> tuple[StepDefinition[Any], ...]:
    """The step definitions for the state's mode, in apply order."""
    return SWARM_STEPS if state.compose.mode == "swarm" else STEPS


def order() -> tuple[Step, ...]:
    """The step names in apply order (the same in every mode)."""
    return tuple(definition.step for definition in STEPS)


def names() -> list[str]:
    """The step names as users write them, in apply order."""
    return [str(step) for step in order()]


def step_named(name: str) -> Step:
    """The step of that name (`KeyError` when there is none)."""
    return {str(step): step for step in order()}[name]


def select(only: Collection[str], skip: Collection[str]) -> tuple[Step, ...]:
    """The steps `only` and `skip` (step names) choose, in apply order: `only`'s (every step
    when empty), less `skip`'s. The one rule, for running a plan and for checking a saved one."""
    return tuple(step for step in order() if (not only or step in only) and step not in skip)


def in_order(steps: Iterable[Step]) -> tuple[Step, ...]:
    """`steps` in apply order."""
    chosen = set(steps)
    return tuple(step for step in order() if step in chosen)
