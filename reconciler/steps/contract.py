"""The one shape every step has, and how the reconcile loop sees it.

A step module holds its own facts type `F` (a frozen dataclass defined in the step's module:
nothing outside `reconciler.steps` names it) and exports `STEP = StepDefinition(...)` with:

- `observe(state, snapshot, adapter) -> F`: projects the step's facts from the shared
  `Snapshot`, adding only the step's own reads (the migrations step's alembic execs, the images
  step's input digests);
- `diff(state, facts, earlier) -> Plan`, pure: the same inputs give the same plan, whatever ran
  before; `earlier` is the plan of the steps before it (e.g. the images the services step will
  see rebuilt);
- `fingerprint(state, facts, secrets) -> {target: material}`: the step's facts split by the
  targets its plan rows name, as plain JSON-able data with every string masked by `secrets`
  (`plain`, `masked_text`), keeping only what its `diff` depends on. A saved plan stores the
  sha256 of each target's material and refuses to apply when one moved. Required: a step
  without it cannot be constructed (a `TypeError`, and a type error for mypy);
- `apply(changes, state, facts, adapter)` (None for a step that plans no change): makes its
  planned changes and returns those it really made. A step that can fail part-way (after some
  of its changes are made) raises `StepIncomplete`, saying which it made and which it was
  making, so that the run reports them truly and a rollback undoes exactly those;
- `verify(state, facts, adapter, context) -> CheckResults` (optional): the verify phase.
  **Checks are a verify phase of the contract, not changes**: after every step applied and a
  fresh observation found nothing left to change, the loop runs each selected step's
  `verify`, in apply order, on its facts from that observation; a failing result fails the
  apply. The checks step is the step that has one (its `diff` lists the checks as `ok` rows
  and it has no `apply`). Its step name stays `checks` in plan JSON and on the command line;
- `converged(state, facts)` (optional): called with the final facts after an apply converged
  (the services step records its containers' input digests);
- `roll_back(state, before, changes) -> lines` (optional): undoes `changes` (those this step
  made) as the facts `before` the apply found things; each line says what was put back.

The steps are listed in ONE place, `reconciler.steps.registry`, per mode (Swarm mode runs the
stack step in place of the services step, under the same name `services`); the reconcile loop,
saved plans and the CLI reach steps only through it and this module.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import ReconcilerError
from reconciler.observe.facts import Snapshot
from reconciler.plans import Change, Plan, Step
from reconciler.secrets.redact import Secrets, TextFormat, looks_secret
from reconciler.state import State

__all__ = [
    "ApplyStep",
    "CaseResult",
    "CheckResult",
    "ConvergedStep",
    "DiffStep",
    "FingerprintStep",
    "ObserveStep",
    "RollBackStep",
    "StepDefinition",
    "StepIncomplete",
    "VerifyContext",
    "VerifyStep",
    "masked_text",
    "plain",
]

F = TypeVar("F")


@dataclass(frozen=True)
class CaseResult:
    """One test case of a command's JUnit file: passed, failed or skipped, with why."""

    classname: str
    name: str
    outcome: str  # "passed", "failure", "error" or "skipped"
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True unless the case failed or errored (a skipped case does not fail the check)."""
        return self.outcome in {"passed", "skipped"}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome (a result of a step's verify phase), for the summary and reports.

    `kind` is http, exec, logs, command or size; `service` the service it is about, if any
    (the reports show its log tail when the check fails); `cases` a command's JUnit cases.
    """

    name: str
    passed: bool
    detail: str
    seconds: float
    kind: str = ""
    service: str | None = None
    cases: tuple[CaseResult, ...] = ()
    log_tail: str = ""  # the service's last log lines, when the check failed
    # An HTTP check's sample (`http.sample`): each answered request's latency (seconds), and
    # how many failed or answered another status than the check wants.
    latencies: tuple[float, ...] = ()
    errors: int = 0
    value: float | None = None  # a Prometheus check's reading


@dataclass(frozen=True)
class VerifyContext:
    """What a verify phase is given beside its facts: when the apply started (epoch s; where
    `logs: {since: apply}` reads from) and the run's secrets (masked in every detail)."""

    apply_started: float | None = None
    secrets: Secrets | None = None
    # Held around a latency sample: what else measures the run (resource use) holds off.
    quiet: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext


ObserveStep = Callable[[State, Snapshot, DockerAdapter], F]
DiffStep = Callable[[State, F, Plan], Plan]
FingerprintStep = Callable[[State, F, Secrets], Mapping[str, object]]
ApplyStep = Callable[[tuple[Change, ...], State, F, DockerAdapter], tuple[Change, ...]]
VerifyStep = Callable[[State, F, DockerAdapter, VerifyContext], tuple[CheckResult, ...]]
ConvergedStep = Callable[[State, F], None]
RollBackStep = Callable[[State, F, tuple[Change, ...]], list[str]]


@dataclass(frozen=True, kw_only=True)
class StepDefinition(Generic[F]):
    """A step's name and its functions, over the step's own facts type `F` (see the module)."""

    step: Step
    observe: ObserveStep[F]
    diff: DiffStep[F]
    fingerprint: FingerprintStep[F]
    apply: ApplyStep[F] | None
    verify: VerifyStep[F] | None = None
    converged: ConvergedStep[F] | None = None
    roll_back: RollBackStep[F] | None = None


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


# --- fingerprint material -------------------------------------------------------------------

# Fields that change with no change to the environment (the wall clock, health-check output)
# or that hold secrets: never part of a fingerprint.
_VOLATILE = frozenset({"observed_at", "last_health_output", "health_log", "secrets"})


def plain(value: Any, secrets: Secrets) -> Any:  # noqa: PLR0911 - one return per kind
    """JSON-able form of facts, every string masked, volatile fields left out."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name), secrets)
            for f in fields(value)
            if f.name not in _VOLATILE
        }
    if isinstance(value, BaseModel):
        return plain(value.model_dump(mode="json"), secrets)
    if isinstance(value, Mapping):
        return {
            secrets.redact(str(key)): secrets.mask_value(item)
            if isinstance(item, str) and looks_secret(str(key))
            else plain(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [plain(item, secrets) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(plain(item, secrets), sort_keys=True) for item in value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return secrets.redact(str(value))


def masked_text(raw: bytes, secrets: Secrets, fmt: TextFormat | None) -> str:
    """A file's text with secret values masked by meaning in its format `fmt`, and every
    registered one (any bytes, decoded losslessly)."""
    return secrets.mask_text(raw.decode("utf-8", "surrogateescape"), fmt)
