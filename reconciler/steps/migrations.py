"""migrations step: bring a service's database schema up to date, only when it is behind.

`observe` asks inside each running service (`observe.observe_migrations`, read-only execs): for
alembic, the revisions of `alembic current` against `alembic heads`; for any other tool, the
exit code of the state's `check` argv. `apply` runs `alembic upgrade head` (or the `apply`
argv) and observes again. All commands are argv lists run with `compose exec`, never through a
shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import ApplyError
from reconciler.logs import ProgressEvent, get_logger
from reconciler.observe.facts import MigrationStatus, Snapshot
from reconciler.observe.snapshot import migration_status, observe_migrations, tail
from reconciler.plans import Action, Change, InSync, Plan, Step
from reconciler.secrets.redact import Secrets
from reconciler.state import State
from reconciler.steps.contract import StepDefinition, plain

__all__ = ["STEP", "MigrationsFacts", "apply", "diff", "fingerprint", "observe"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class MigrationsFacts:
    """The migrations step's facts: each declared migration set's status, by name."""

    statuses: dict[str, MigrationStatus] = field(default_factory=dict)


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> MigrationsFacts:
    """The status of each declared migration set, asked in its service if that is running."""
    return MigrationsFacts(observe_migrations(state, adapter, snapshot.containers))


def diff(state: State, facts: MigrationsFacts, earlier: Plan) -> Plan:
    """An upgrade per migration set that is behind (or cannot be observed before `up`)."""
    statuses = facts.statuses
    changes: list[Change] = []
    ok: list[InSync] = []
    for spec in state.migrations:
        status = statuses.get(spec.name) or MigrationStatus(None, "not observed")
        if status.up_to_date:
            ok.append(InSync(Step.MIGRATIONS, spec.name, status.detail))
        else:
            reason = status.detail
            if status.up_to_date is None:
                reason += "; checked again after services are up"
            changes.append(Change(Step.MIGRATIONS, spec.name, Action.UPGRADE, reason))
    return Plan(tuple(changes), tuple(ok))


def apply(
    changes: tuple[Change, ...], state: State, facts: MigrationsFacts, adapter: DockerAdapter
) -> tuple[Change, ...]:
    """Upgrade each planned migration set that is still behind; return those upgraded."""
    specs = {spec.name: spec for spec in state.migrations}
    done: list[Change] = []
    for change in changes:
        spec = specs[change.key]
        adapter.stop.check(f"migration {spec.name}")
        before = migration_status(spec, adapter)
        if before.up_to_date:
            _log.info("migrations already at head", migration=spec.name, detail=before.detail)
            continue
        _log.info(
            ProgressEvent.UPGRADING, migration=spec.name, service=spec.service, detail=before.detail
        )
        argv = [*spec.alembic.command, "upgrade", "head"] if spec.alembic else spec.apply
        assert argv is not None, "validated: apply is set when alembic is not"
        result = adapter.exec(spec.service, argv, mutating=True, timeout=spec.timeout)
        if result.exit_code != 0:
            raise ApplyError(
                f"migration {spec.name} failed (exit {result.exit_code}):\n  {tail(result.output)}"
            )
        after = migration_status(spec, adapter)
        if not after.up_to_date:
            raise ApplyError(f"migration {spec.name} ran but is still behind: {after.detail}")
        done.append(
            Change(Step.MIGRATIONS, spec.name, Action.UPGRADE, f"{before.detail} -> {after.detail}")
        )
    return tuple(done)


def fingerprint(state: State, facts: MigrationsFacts, secrets: Secrets) -> dict[str, object]:
    """By migration set: its status (at head or not, and what was observed)."""
    return {name: plain(status, secrets) for name, status in facts.statuses.items()}


STEP = StepDefinition(
    step=Step.MIGRATIONS, observe=observe, diff=diff, fingerprint=fingerprint, apply=apply
)
