"""migrations step on recorded `alembic current`/`heads` output, replayed by a fake docker CLI.

The outputs in tests/facts/alembic/ are alembic 1.20.1's own, run on the canary's migrations
against PostgreSQL 15; the fake docker answers `compose exec -T backend python -m alembic ...`
with them, so the real adapter and the real parsing run with no engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ContainerFacts
from reconciler.errors import ApplyError
from reconciler.observe.facts import MigrationStatus, Snapshot
from reconciler.observe.snapshot import observe_migrations
from reconciler.plans import Action, Change, Plan, Step
from reconciler.state import State
from reconciler.steps import migrations
from reconciler.steps.migrations import MigrationsFacts
from tests.facts import fake_docker

NAME = "ktrdr-schema"
UPGRADE = "compose exec -T backend python -m alembic upgrade head"


def state(tmp_path: Path) -> State:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  backend:\n    image: ktrdr-backend:test\n")
    return State.model_validate(
        {
            "name": "canary",
            "compose": {"file": str(compose), "project": "ktrdr-canary"},
            "migrations": [{"name": NAME, "service": "backend", "alembic": {}}],
        }
    )


def backend(status: str = "running") -> ContainerFacts:
    return ContainerFacts(
        id="c0ffee",
        name="ktrdr-canary-backend-1",
        service="backend",
        status=status,
        health="healthy" if status == "running" else None,
        exit_code=0,
        config_hash="h",
        image_id="sha256:backend",
    )


def facts(statuses: dict[str, MigrationStatus]) -> MigrationsFacts:
    """The migrations step's facts holding just these statuses."""
    return MigrationsFacts(statuses)


def observed(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[State, dict[str, MigrationStatus]]:
    fake_docker.on_path(scenario, tmp_path, monkeypatch)
    declared = state(tmp_path)
    adapter = DockerAdapter(declared.compose.file, declared.compose.project)
    return declared, observe_migrations(declared, adapter, [backend()])


def test_behind_database_is_observed_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alembic current` at 0001 against head 0002 reads as behind, naming both revisions."""
    _, statuses = observed("migrations-behind", tmp_path, monkeypatch)
    assert statuses == {NAME: MigrationStatus(False, "current 0001, head 0002")}


def test_database_at_head_is_observed_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`0002 (head)` from both commands reads as up to date; alembic's INFO lines are not revisions."""
    _, statuses = observed("migrations-at-head", tmp_path, monkeypatch)
    assert statuses == {NAME: MigrationStatus(True, "at head 0002")}


def test_empty_database_is_observed_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh database (`alembic current` prints no revision) is behind head."""
    _, statuses = observed("migrations-empty", tmp_path, monkeypatch)
    assert statuses == {NAME: MigrationStatus(False, "current empty database, head 0002")}


def test_step_observes_its_statuses_in_the_snapshot_containers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's `observe` asks alembic in the snapshot's running service: its own two execs."""
    log = fake_docker.on_path("migrations-behind", tmp_path, monkeypatch)
    declared = state(tmp_path)
    adapter = DockerAdapter(declared.compose.file, declared.compose.project)
    snapshot = Snapshot(declared.compose.file, "", containers=(backend(),))
    found = migrations.observe(declared, snapshot, adapter)
    assert found == MigrationsFacts({NAME: MigrationStatus(False, "current 0001, head 0002")})
    assert len(fake_docker.calls(log)) == 2


def test_diff_plans_an_upgrade_when_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration set behind head is planned as one upgrade, and not listed as in sync."""
    declared, statuses = observed("migrations-behind", tmp_path, monkeypatch)
    plan = migrations.diff(declared, facts(statuses), Plan())
    assert [(c.step, c.target, c.action) for c in plan.changes] == [
        (Step.MIGRATIONS, NAME, "upgrade")
    ]
    assert plan.changes[0].reason == "current 0001, head 0002"
    assert plan.ok == ()


def test_diff_plans_nothing_at_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration set at head is in sync: no change, one ok row saying so."""
    declared, statuses = observed("migrations-at-head", tmp_path, monkeypatch)
    plan = migrations.diff(declared, facts(statuses), Plan())
    assert plan.changes == ()
    assert [(row.target, row.reason) for row in plan.ok] == [(NAME, "at head 0002")]


def test_diff_plans_an_upgrade_for_an_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh canary's empty database is planned as an upgrade."""
    declared, statuses = observed("migrations-empty", tmp_path, monkeypatch)
    assert [c.action for c in migrations.diff(declared, facts(statuses), Plan()).changes] == [
        "upgrade"
    ]


def test_service_not_running_is_upgraded_after_services_come_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the service down, docker is not asked, and an upgrade is planned to be checked later."""
    log = fake_docker.on_path("migrations-behind", tmp_path, monkeypatch)
    declared = state(tmp_path)
    adapter = DockerAdapter(declared.compose.file, declared.compose.project)
    statuses = observe_migrations(declared, adapter, [backend("exited")])
    assert fake_docker.calls(log) == []
    assert statuses[NAME].up_to_date is None
    (change,) = migrations.diff(declared, facts(statuses), Plan()).changes
    assert change.action == "upgrade"
    assert change.reason.endswith("; checked again after services are up")


def test_diff_of_an_unobserved_set_plans_an_upgrade(tmp_path: Path) -> None:
    """A declared migration set missing from the observation is planned, never assumed in sync."""
    plan = migrations.diff(state(tmp_path), facts({}), Plan())
    assert [c.target for c in plan.changes] == [NAME]
    assert plan.ok == ()


def test_apply_upgrades_a_behind_database_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apply runs `alembic upgrade head` once and reports the revisions before and after."""
    log = fake_docker.on_path("migrations-behind", tmp_path, monkeypatch)
    declared = state(tmp_path)
    adapter = DockerAdapter(declared.compose.file, declared.compose.project)
    change = Change(Step.MIGRATIONS, NAME, Action.UPGRADE, "current 0001, head 0002")
    (done,) = migrations.apply((change,), declared, facts({}), adapter)
    assert done.reason == "current 0001, head 0002 -> at head 0002"
    assert fake_docker.calls(log).count(UPGRADE) == 1
    assert [call.argv[-2:] for call in adapter.mutating_calls] == [("upgrade", "head")]


def test_apply_skips_a_set_already_at_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planned upgrade found at head when applying runs nothing and reports nothing."""
    log = fake_docker.on_path("migrations-at-head", tmp_path, monkeypatch)
    declared = state(tmp_path)
    adapter = DockerAdapter(declared.compose.file, declared.compose.project)
    change = Change(Step.MIGRATIONS, NAME, Action.UPGRADE, "checked again after services are up")
    assert migrations.apply((change,), declared, facts({}), adapter) == ()
    assert UPGRADE not in fake_docker.calls(log)
    assert adapter.mutating_calls == []


def test_alembic_failure_is_an_apply_error_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alembic current` failing (database down) raises ApplyError with alembic's last lines."""
    with pytest.raises(ApplyError, match=r"alembic current failed \(exit 1\)") as caught:
        observed("migrations-db-down", tmp_path, monkeypatch)
    assert "Connection refused" in str(caught.value)
