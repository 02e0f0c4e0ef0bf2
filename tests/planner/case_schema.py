"""The planner case format, as pydantic models: the source of truth for `cases/*.yaml`.

Every model forbids unknown keys, so a misspelled key (`expcet:`, a container's `helth:`) fails
the case with a message naming it, instead of being silently ignored. The state parts of a case
(`state`, `images_decl`, `migrations_decl`, `checks_decl`) are validated by reconciler's own
state models. `load_case` reads one file and raises `CaseError` saying what is wrong with it.
"""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML

from reconciler.plans import Action, Step
from reconciler.state.model import (
    CheckSpec,
    FileSpec,
    ImageSpec,
    MigrationSpec,
    ServiceSpec,
    file_format,
)

__all__ = [
    "ALL_STEPS",
    "Case",
    "CaseError",
    "ComposeService",
    "ContainerFact",
    "FileFact",
    "ImageFact",
    "MigrationFact",
    "RemoteFact",
    "SwarmServiceFact",
    "TaskFact",
    "load_case",
    "parse_case",
]

ALL_STEPS: tuple[Step, ...] = tuple(Step)
Text = Annotated[str, Field(min_length=1)]


class CaseError(ValueError):
    """A case file that does not follow the format."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComposeService(_Model):
    """compose's normalised model of one service (what `docker compose config` says)."""

    image: str | None = None
    build: bool | str = Field(
        default=False, description="true, or a context name shared by services (/ctx/NAME)."
    )
    healthcheck: bool = False
    depends_on: dict[
        str, Literal["service_started", "service_healthy", "service_completed_successfully"]
    ] = Field(default_factory=dict)
    secrets_hashed: list[str] = Field(
        default_factory=list, description="State secrets interpolated into the service."
    )
    secrets_unhashed: list[str] = Field(
        default_factory=list,
        description="State secrets it reaches through compose secrets/configs (not hashed).",
    )
    scale: int = Field(default=1, ge=0, description="`scale` / `deploy.replicas`.")
    profiles: list[str] = Field(
        default_factory=list, description="The profiles that activate it (none: always)."
    )


class ContainerFact(_Model):
    """One container as docker inspect reports it (`ContainerFacts`)."""

    service: str
    name: str | None = Field(default=None, description="Default: PROJECT-SERVICE-1.")
    status: Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"] = (
        "running"
    )
    health: Literal["starting", "healthy", "unhealthy"] | None = None
    exit_code: int = 0
    hash: str | None = Field(default=None, description="The config-hash label.")
    image: str = Field(default="", description="The id of the image the container runs.")
    health_output: str | None = None
    restart_count: int = Field(default=0, ge=0)
    started_at: str = Field(default="", description="Docker's StartedAt (RFC 3339).")
    restart_policy: Literal["", "no", "on-failure", "always", "unless-stopped"] = ""
    oneoff: bool = False
    secrets: dict[str, str] = Field(
        default_factory=dict, description="Recorded keyed hashes of the secrets it got."
    )
    recorded: dict[str, str] | None = Field(
        default=None,
        description="Input digests recorded for it at the last apply (label -> digest); "
        "null: no record (made by someone else).",
    )


class ImageFact(_Model):
    """A local image found for a reference."""

    id: str
    digest: str | None = Field(default=None, description="The context-digest label.")
    repo_digests: list[str] = Field(
        default_factory=list, description="RepoDigests: repository@sha256:... it is known by."
    )
    size: int = Field(default=0, description="Its size in bytes.")


class RemoteFact(_Model):
    """What the registry said a `pull: digest` image's tag points to, or why it could not."""

    digest: str | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _one(self) -> RemoteFact:
        if (self.digest is None) == (self.error is None):
            raise ValueError("give exactly one of `digest` or `error`")
        return self


class SwarmServiceFact(_Model):
    """swarm mode: one service of the stack as `docker service inspect` reports it."""

    image: str = Field(description="The spec's image.")
    replicas: int | None = Field(default=1, ge=0, description="null: a global service.")
    hash: str | None = Field(default=None, description="The io.reconciler.config-hash label.")
    image_id: str | None = Field(
        default=None, description="The io.reconciler.image-id container label."
    )
    update_state: str | None = None
    update_message: str = ""


class TaskFact(_Model):
    """swarm mode: one task of a stack service."""

    service: str
    state: str = "running"
    desired: str = Field(default="running", description="Its desired state.")
    error: str = ""
    exit_code: int | None = None
    image_id: str | None = Field(
        default=None, description="Its spec's image-id label (default: its service's)."
    )
    timestamp: str = "2026-01-01T00:00:00Z"


class MigrationFact(_Model):
    """What observing one migration set found (`MigrationStatus`)."""

    up_to_date: bool | None = Field(description="null: its service is not running yet.")
    detail: Text


class FileFact(_Model):
    """A managed file as observed (`ObservedFile`): its text, or null when it does not exist."""

    text: str | None
    mode: str | None = Field(default="0644", description="Octal mode; null when missing.")


ChangeRow = tuple[Step, Text, Action]
OkRow = tuple[Step, Text, Text]


class Case(_Model):
    """One planner case: desired state + observed facts -> expected changes (and ok rows)."""

    description: Text
    steps: list[Step] = Field(default_factory=lambda: list(ALL_STEPS), min_length=1)
    project: str = "p"

    # Desired state, validated by reconciler's own models.
    state: dict[str, ServiceSpec] = Field(default_factory=dict)
    images_decl: dict[str, ImageSpec] = Field(default_factory=dict)
    migrations_decl: list[MigrationSpec] = Field(default_factory=list)
    checks_decl: list[CheckSpec] = Field(default_factory=list)
    files_decl: dict[str, FileSpec] = Field(
        default_factory=dict, description="The state's `files:` (path -> spec)."
    )
    env_files: list[str] = Field(
        default_factory=list, description="The state's `compose.env_files` (default: .env)."
    )
    profiles: list[str] = Field(
        default_factory=list,
        description="The state's `compose.profiles`: services whose profiles are not among "
        "them are left out of compose's model, as compose does.",
    )

    mode: Literal["compose", "swarm"] = Field(
        default="compose", description="The state's `compose.mode`."
    )
    prune: bool = Field(default=False, description="The state's `compose.prune` (swarm).")

    # Observed facts.
    services: dict[str, ComposeService] = Field(min_length=1)
    swarm_services: dict[str, SwarmServiceFact] = Field(
        default_factory=dict, description="swarm mode: the stack's services, by compose name."
    )
    tasks: list[TaskFact] = Field(default_factory=list, description="swarm mode: their tasks.")
    compose: str | None = None
    hashes: dict[str, str] = Field(
        default_factory=dict,
        description="compose's config hash of its resolved model (env files merged), per "
        "service: what `up` writes in the container's label.",
    )
    inputs: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Current input digests: service -> label -> digest."
    )
    capped: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Why an input's digest is capped: service -> label."
    )
    containers: list[ContainerFact] = Field(default_factory=list)
    images: dict[str, ImageFact] = Field(default_factory=dict)
    digests: dict[str, str] = Field(default_factory=dict)
    wheelhouses: dict[str, tuple[str, str | None]] = Field(default_factory=dict)
    migrations: dict[str, MigrationFact] = Field(default_factory=dict)
    observed_at: float | None = None
    dotenv: dict[str, str] = Field(
        default_factory=dict,
        description="Texts of env files and dotenv `files:`; others are missing.",
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="Process variables the compose file refers to."
    )
    files: dict[str, FileFact] = Field(
        default_factory=dict, description="YAML and whole `files:` as found."
    )
    secret_hashes: dict[str, str] = Field(
        default_factory=dict,
        description="The state secrets' keyed hashes now (empty: the project has no key yet).",
    )
    remote: dict[str, RemoteFact] = Field(
        default_factory=dict,
        description="`pull: digest` images: the registry's manifest digest for the tag.",
    )
    local_images: dict[str, ImageFact] = Field(
        default_factory=dict,
        description="On another engine: the local engine's copies of the base images the "
        "target lacks or has stale.",
    )

    # Expectations.
    expect: list[ChangeRow] | None = None
    expect_error: Text | None = None
    error_kind: Literal["InputError", "RegistryError"] = Field(
        default="InputError", description="The class of the error `expect_error` matches."
    )
    reasons: dict[int, Text] = Field(default_factory=dict)
    expect_ok: list[OkRow] | None = None
    expect_force: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        if (self.expect is None) == (self.expect_error is None):
            raise ValueError("give exactly one of `expect` or `expect_error`")
        if self.expect_error is not None and (
            self.reasons or self.expect_ok is not None or self.expect_force is not None
        ):
            raise ValueError("`reasons`, `expect_ok` and `expect_force` go with `expect`")
        changes = self.expect or []
        for index in self.reasons:
            if not 0 <= index < len(changes):
                raise ValueError(f"reasons: no change {index} in `expect`")
        targets = {target for _, target, _ in changes}
        for target in self.expect_force or []:
            if target not in targets:
                raise ValueError(f"expect_force: {target!r} is not a target in `expect`")
        for label, names in (
            ("containers", {c.service for c in self.containers}),
            ("hashes", set(self.hashes)),
            ("inputs", set(self.inputs)),
            ("migrations_decl", {m.service for m in self.migrations_decl}),
            ("tasks", {t.service for t in self.tasks} - set(self.swarm_services)),
        ):
            unknown = sorted(names - set(self.services))
            if unknown:
                raise ValueError(f"{label}: services {unknown} are not in `services`")
        unobserved = sorted(
            name
            for name, spec in self.files_decl.items()
            if name not in self.files and file_format(name, spec) != "dotenv"
        )
        if unobserved:
            raise ValueError(f"files: {unobserved} are declared but not observed in `files`")
        undeclared = sorted(set(self.migrations) - {m.name for m in self.migrations_decl})
        if undeclared:
            raise ValueError(f"migrations: {undeclared} are not declared in `migrations_decl`")
        return self


def load_case(path: Path) -> Case:
    """The case in `path`, validated; `CaseError` names every key that is wrong."""
    return parse_case(path.read_text(encoding="utf-8"), path.name)


def parse_case(text: str, source: str = "<case>") -> Case:
    """Validate a case's YAML text (`source` names it in errors)."""
    data = YAML(typ="safe", pure=True).load(text)
    try:
        return Case.model_validate(data)
    except ValidationError as error:
        problems = "\n".join(f"  {_describe(item)}" for item in error.errors())
        raise CaseError(f"{source}: not a valid planner case:\n{problems}") from None


def _describe(item: Any) -> str:
    loc = tuple(item["loc"])
    where = ".".join(str(part) for part in loc) or "(top level)"
    if item["type"] != "extra_forbidden":
        return f"{where}: {item['msg']}"
    known = _keys_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}: unknown key {loc[-1]!r}{hint} (known: {', '.join(sorted(known))})"


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` (a pydantic error location within `Case`) accepts."""
    node: Any = Case
    for part in loc:
        node = _inner(_unwrap(node), part)
    model = _unwrap(node)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    fields = model.model_fields.items()
    return [info.alias or name for name, info in fields]


def _unwrap(node: Any) -> Any:
    """`node` without Annotated and an optional `None`."""
    while True:
        origin = get_origin(node)
        if origin is Annotated:
            node = get_args(node)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(node) if arg is not type(None)]
            if len(members) != 1:
                return node
            node = members[0]
        else:
            return node


def _inner(node: Any, part: Any) -> Any:
    """The type found under `part` of `node`: a model's field, a list's item, a dict's value."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        for name, info in node.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin, args = get_origin(node), get_args(node)
    if origin is list and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None
