"""Check a state, fleet or plan file with no Docker engine, like `terraform validate`.

`validate(path)` makes every check a run makes of its inputs before it changes anything, and
nothing that needs an engine: the state (each target's of a fleet, or the one a plan file
names, after the plan file's own structure), the compose file through compose's own `config`
(and `docker stack config` in swarm mode; neither talks to an engine), env files and the
implicit `.env`, the edits of `files:` and of the pins, and where each secret comes from,
without reading a secret's value or running its command. It takes no lock and writes nothing.
A problem is an `InputError` naming file:line:column and the key (exit 3), as a run would
raise it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import InputError, StalePlanError
from reconciler.observe.snapshot import (
    check_build_files,
    check_compose_services,
    check_model,
    check_stack_file,
    image_sources,
    read_compose_config,
    read_compose_text,
)
from reconciler.plans import Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.saved_plan import is_plan_file, load_plan
from reconciler.runtime.interrupt import StopToken
from reconciler.secrets.redact import Secrets
from reconciler.secrets.store import check_sources
from reconciler.state import State, load_state
from reconciler.state.fleet import is_fleet_file, load_fleet

__all__ = ["StateSummary", "ValidationResult", "validate", "validate_state"]

# compose interpolates the state's secrets; validation reads none, so each stands in as this
# (a `${NAME:?}` the secrets satisfy must not fail the check).
_PLACEHOLDER = "reconciler-validate-placeholder"


@dataclass(frozen=True)
class StateSummary:
    """One state found valid, in numbers (for the "Valid: ..." line)."""

    name: str
    source: Path
    compose_file: Path
    services: int  # services of compose's model in the active profiles
    pins: int
    files: int
    secrets: int
    checks: int
    target: str | None = None  # the fleet target it belongs to

    def describe(self) -> str:
        """`state NAME: 3 services in compose.yml, 2 pinned, ...` (zero counts left out)."""
        counts = [
            f"{self.services} service{_s(self.services)} in {self.compose_file.name}",
            *(
                f"{count} {word}"
                for count, word in (
                    (self.pins, "pinned"),
                    (self.files, "managed file" + _s(self.files)),
                    (self.secrets, "secret" + _s(self.secrets)),
                    (self.checks, "check" + _s(self.checks)),
                )
                if count
            ),
        ]
        head = f"target {self.target}: " if self.target is not None else ""
        return f"{head}state {self.name}: {', '.join(counts)}"

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON data."""
        return {
            "name": self.name,
            "source": str(self.source),
            "compose_file": str(self.compose_file),
            "services": self.services,
            "pins": self.pins,
            "files": self.files,
            "secrets": self.secrets,
            "checks": self.checks,
            **({"target": self.target} if self.target is not None else {}),
        }


@dataclass(frozen=True)
class ValidationResult:
    """A file found valid: what kind it is, its name, the states it holds, and notes (such as
    a plan whose state file changed since: valid, but `apply` would refuse it)."""

    path: Path
    kind: Literal["state", "fleet", "plan"]
    name: str
    states: tuple[StateSummary, ...]
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """`Valid: PATH (...)`, then a line per state of a fleet or plan, then the notes."""
        if self.kind == "state":
            lines = [f"Valid: {self.path} ({self.states[0].describe()})"]
        else:
            what = (
                f"fleet {self.name}, {len(self.states)} target{_s(len(self.states))}"
                if self.kind == "fleet"
                else f"plan file for state {self.name}"
            )
            lines = [f"Valid: {self.path} ({what})"]
            lines += [f"  {state.describe()}" for state in self.states]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The `validate --json` shape."""
        return {
            "valid": True,
            "path": str(self.path),
            "kind": self.kind,
            "name": self.name,
            "states": [state.to_dict() for state in self.states],
            "notes": list(self.notes),
        }


def validate(
    path: str | Path, *, secrets: Secrets | None = None, stop: StopToken | None = None
) -> ValidationResult:
    """Check the state, fleet or plan file at `path` and everything it names, with no engine.

    Raises `InputError` (exit 3) for the first problem, as `plan` or `apply` would before
    changing anything. `secrets`, when given, receives the values observation registers as
    secret (from env files and `files:`), for redacting output; `stop` cuts compose's `config`.
    """
    source = Path(path)
    stop = stop or StopToken()
    if is_plan_file(source):
        return _validate_plan(source, secrets, stop)
    if is_fleet_file(source):
        return _validate_fleet(source, secrets, stop)
    state = load_state(source)
    summary = validate_state(state, secrets=secrets, stop=stop)
    return ValidationResult(source, "state", state.name, (summary,))


def validate_state(
    state: State, *, secrets: Secrets | None = None, stop: StopToken | None = None
) -> StateSummary:
    """Check a loaded state's inputs as a run would, with no engine (see the module's doc)."""
    adapter = _config_adapter(state, stop or StopToken())
    # The observation's own early checks and the compose-file step's plan (pins, env files,
    # `files:` edits): all local, no docker call.
    reconcile.plan(state, steps=(Step.COMPOSE_FILE,), adapter=adapter, secrets=secrets)
    check_sources(state)  # where a run reads the secrets: before its first compose call
    path, pins = state.compose.file, state.pins()
    text = read_compose_text(path, state.confine)
    defined = check_compose_services(state, path, text)
    config = check_model(state, read_compose_config(adapter, path, text), defined, pins, adapter)
    if adapter.swarm:
        check_stack_file(state, adapter)
    check_build_files(image_sources(state, config, pins).values())
    return StateSummary(
        name=state.name,
        source=state.source,
        compose_file=path,
        services=len(config.services),
        pins=len(pins),
        files=len(state.files),
        secrets=len(state.secrets),
        checks=len(state.checks),
    )


def _config_adapter(state: State, stop: StopToken) -> DockerAdapter:
    """An adapter for compose's `config` alone: the state's file, project, env files and
    profiles, no engine named (`config` reads none), the secrets as placeholders."""
    placeholders: Mapping[str, str] = dict.fromkeys(state.secrets, _PLACEHOLDER)
    return DockerAdapter(
        state.compose.file,
        state.compose.project,
        stop=stop,
        env_files=tuple(state.compose.env_files),
        secrets=(lambda: placeholders) if state.secrets else None,
        profiles=tuple(state.compose.profiles),
        swarm=state.compose.mode == "swarm",
    )


def _validate_fleet(source: Path, secrets: Secrets | None, stop: StopToken) -> ValidationResult:
    fleet = load_fleet(source)
    summaries = []
    for name, target in fleet.targets.items():
        try:
            summary = validate_state(target.state, secrets=secrets, stop=stop)
        except InputError as error:
            raise InputError(
                f"{error.message} (the state of target {name!r} of {source})", error.location
            ) from None
        summaries.append(dataclasses.replace(summary, target=name))
    return ValidationResult(source, "fleet", fleet.name, tuple(summaries))


def _validate_plan(source: Path, secrets: Secrets | None, stop: StopToken) -> ValidationResult:
    saved = load_plan(source)
    notes: list[str] = []
    try:
        saved.check_state_file()
    except StalePlanError as error:
        notes.append(f"{'; '.join(error.changed)}: `apply {source}` would refuse it as stale")
    state = load_state(saved.state_path)
    saved.check_target(state, saved.steps)
    summary = validate_state(state, secrets=secrets, stop=stop)
    return ValidationResult(source, "plan", saved.state_name, (summary,), tuple(notes))


def _s(count: int) -> str:
    return "" if count == 1 else "s"
