"""reconciler: keep a Docker Compose environment in its declared state, idempotently.

Library use::

    import reconciler
    state = reconciler.load_state("states/canary.yaml")
    plan = reconciler.plan(state)          # observe + diff, changes nothing
    result = reconciler.apply(state)       # apply, then verify convergence

The library never prints and never configures logging; configure structlog in your program.
"""

from reconciler.errors import (
    ApplyError,
    ConvergenceError,
    DockerError,
    HealthTimeoutError,
    InputError,
    Location,
    PermanentDockerError,
    ReconcilerError,
    TransientDockerError,
)
from reconciler.plan import STEP_ORDER, Change, InSync, Plan, Step
from reconciler.reconcile import ApplyResult, apply, down, plan, select_steps
from reconciler.state import State, load_state

__all__ = [
    "STEP_ORDER",
    "ApplyError",
    "ApplyResult",
    "Change",
    "ConvergenceError",
    "DockerError",
    "HealthTimeoutError",
    "InSync",
    "InputError",
    "Location",
    "PermanentDockerError",
    "Plan",
    "ReconcilerError",
    "State",
    "Step",
    "TransientDockerError",
    "apply",
    "down",
    "load_state",
    "plan",
    "select_steps",
]
