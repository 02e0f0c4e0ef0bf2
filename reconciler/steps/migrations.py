"""migrations step: bring a service's database schema up to date, only when it is behind.

Observed inside the running service: for alembic, the revisions of `alembic current` against
`alembic heads`; for any other tool, the exit code of the state's `check` argv. `apply` runs
`alembic upgrade head` (or the `apply` argv) and observes again. All commands are argv lists run
with `compose exec`, never through a shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ContainerFacts
from reconciler.errors import ApplyError
from reconciler.plan import Change, InSync, Plan, Step
from reconciler.state import State
from reconciler.state.model import MigrationSpec

__all__ = ["MigrationStatus", "apply", "diff", "observe"]

_log = structlog.get_logger(__name__)
_REVISION = re.compile(r"^([0-9A-Za-z_]+)(?:\s|$)")


@dataclass(frozen=True)
class MigrationStatus:
    """Whether one migration set is at head; `None` when its service is not running yet."""

    up_to_date: bool | None
    detail: str


def observe(
    state: State, adapter: DockerAdapter, containers: Iterable[ContainerFacts]
) -> dict[str, MigrationStatus]:
    """The status of every declared migration set (read-only exec calls)."""
    running = {c.service for c in containers if c.status == "running" and not c.oneoff}
    statuses: dict[str, MigrationStatus] = {}
    for spec in state.migrations:
        if spec.service not in running:
            statuses[spec.name] = MigrationStatus(None, f"service {spec.service} is not running")
        else:
            statuses[spec.name] = _status(spec, adapter)
    return statuses


def diff(state: State, statuses: dict[str, MigrationStatus]) -> Plan:
    """An upgrade per migration set that is behind (or cannot be observed before `up`)."""
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
            changes.append(Change(Step.MIGRATIONS, spec.name, "upgrade", reason))
    return Plan(tuple(changes), tuple(ok))


def apply(changes: tuple[Change, ...], state: State, adapter: DockerAdapter) -> tuple[Change, ...]:
    """Upgrade each planned migration set that is still behind; return those upgraded."""
    specs = {spec.name: spec for spec in state.migrations}
    done: list[Change] = []
    for change in changes:
        spec = specs[change.target]
        adapter.stop.check(f"migration {spec.name}")
        before = _status(spec, adapter)
        if before.up_to_date:
            _log.info("migrations already at head", migration=spec.name, detail=before.detail)
            continue
        _log.info("upgrading", migration=spec.name, service=spec.service, detail=before.detail)
        argv = [*spec.alembic.command, "upgrade", "head"] if spec.alembic else spec.apply
        assert argv is not None, "validated: apply is set when alembic is not"
        result = adapter.exec(spec.service, argv, mutating=True, timeout=spec.timeout)
        if result.exit_code != 0:
            raise ApplyError(
                f"migration {spec.name} failed (exit {result.exit_code}):\n{_tail(result.output)}"
            )
        after = _status(spec, adapter)
        if not after.up_to_date:
            raise ApplyError(f"migration {spec.name} ran but is still behind: {after.detail}")
        done.append(
            Change(Step.MIGRATIONS, spec.name, "upgrade", f"{before.detail} -> {after.detail}")
        )
    return tuple(done)


def _status(spec: MigrationSpec, adapter: DockerAdapter) -> MigrationStatus:
    if spec.alembic is None:
        assert spec.check is not None, "validated: check is set when alembic is not"
        result = adapter.exec(spec.service, spec.check, mutating=False, timeout=spec.timeout)
        if result.exit_code == 0:
            return MigrationStatus(True, "check passed")
        return MigrationStatus(False, f"check exited {result.exit_code}: {_tail(result.output, 1)}")
    current = _revisions(spec, "current", adapter)
    heads = _revisions(spec, "heads", adapter)
    if not heads:
        raise ApplyError(f"migration {spec.name}: `alembic heads` lists no revision")
    shown = ", ".join(sorted(current)) or "empty database"
    if current == heads:
        return MigrationStatus(True, f"at head {shown}")
    return MigrationStatus(False, f"current {shown}, head {', '.join(sorted(heads))}")


def _revisions(spec: MigrationSpec, verb: str, adapter: DockerAdapter) -> set[str]:
    assert spec.alembic is not None
    result = adapter.exec(spec.service, [*spec.alembic.command, verb], mutating=False)
    if result.exit_code != 0:
        raise ApplyError(
            f"migration {spec.name}: alembic {verb} failed (exit {result.exit_code}):\n"
            f"{_tail(result.output)}"
        )
    revisions = set()
    for line in result.stdout.splitlines():
        match = _REVISION.match(line.strip())
        if match and not line.startswith(("INFO", "WARN", "ERROR")):
            revisions.add(match.group(1))
    return revisions


def _tail(text: str, lines: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
