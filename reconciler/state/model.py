"""pydantic v2 models of a state file (DESIGN.md §2 core keys).

`load.py` feeds them plain data from YAML and turns their validation errors into `InputError`s
that point at file:line:column; path rules needing the file's location live there too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from reconciler.errors import Location

__all__ = [
    "AlembicSpec",
    "BuildSpec",
    "CheckSpec",
    "CommandSpec",
    "CompareSpec",
    "ComposeSpec",
    "ExecSpec",
    "FileSpec",
    "HttpRequestSpec",
    "ImageSpec",
    "ItemsExpectation",
    "LogsSpec",
    "MigrationSpec",
    "PollSpec",
    "RootfsSpec",
    "ServiceSpec",
    "State",
    "WheelhouseSpec",
    "valid_image_reference",
]

# distribution/reference's grammar: [host[:port]/]path[:tag][@digest], path lower-case.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
_MAX_REFERENCE = 255


def valid_image_reference(value: str) -> str:
    """Accept an image reference docker would accept, else raise ValueError saying why."""
    if len(value) > _MAX_REFERENCE:
        raise ValueError(f"image reference longer than {_MAX_REFERENCE} characters")
    if not _REFERENCE.match(value):
        raise ValueError(
            f"invalid image reference {value!r}: expected [registry/]name[:tag][@digest], "
            "name in lower case"
        )
    return value


ImageReference = Annotated[str, AfterValidator(valid_image_reference)]
_SERVICE_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$"
_PROFILE_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"  # compose-spec's pattern for a profile name


def _distinct(names: list[str]) -> list[str]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} is listed more than once")
    return names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ComposeSpec(_Strict):
    """Which compose file and project the state governs."""

    file: Path = Field(
        strict=False,  # YAML gives a str; strict mode would only take a Path object
        description="Compose file; relative to the state file's directory.",
    )
    project: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Compose project name; compose's own default when absent.",
    )
    env_files: list[Annotated[Path, Field(strict=False)]] = Field(
        default_factory=list,
        description="Env files passed to every compose call as --env-file, in order (later "
        "ones win); relative to the state file. Without them compose reads the .env next to "
        "the compose file.",
    )
    profiles: Annotated[
        list[Annotated[str, Field(pattern=_PROFILE_NAME)]], AfterValidator(_distinct)
    ] = Field(
        default_factory=list,
        description="Compose profiles to activate, passed to every compose call as --profile. "
        "Services outside them are neither started nor expected to run; pinning one is an "
        "error.",
    )


DotenvKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]
_DOTENV_NAME = re.compile(r"^(\.env(\..+)?|.+\.env)$")


class FileSpec(_Strict):
    """A file whose content the compose-file step keeps: for a dotenv file, keys set or absent.

    The format follows the file name (`.env`, `.env.*`, `*.env`) unless `format` names it.
    """

    format: Literal["dotenv"] | None = Field(
        default=None, description="The file's format; by default told from its name."
    )
    values: dict[DotenvKey, str] = Field(
        default_factory=dict,
        alias="set",
        description="KEY -> value each must have (a byte-minimal edit; appended when missing).",
    )
    absent: list[DotenvKey] = Field(
        default_factory=list, description="Keys that must not be defined (their line is removed)."
    )

    @model_validator(mode="after")
    def _something_to_keep(self) -> FileSpec:
        if not self.values and not self.absent:
            raise ValueError("give `set` or `absent` (or both)")
        both = sorted(set(self.values) & set(self.absent))
        if both:
            raise ValueError(f"{', '.join(both)} cannot be both set and absent")
        return self

    def kind(self, path: Path) -> str | None:
        """The file's format: `format`, else told from the name; None when neither says."""
        if self.format is not None:
            return self.format
        return "dotenv" if _DOTENV_NAME.match(path.name) else None


class ServiceSpec(_Strict):
    """Desired facts of one compose service."""

    image: ImageReference | None = Field(
        default=None, description="Pins services.<name>.image in the compose file."
    )
    health_timeout: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Seconds to wait for the service to become healthy (or running).",
    )


Argv = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
Seconds = Annotated[float, Field(gt=0, le=3600)]


class BuildSpec(_Strict):
    """How to build an image; overrides the compose file's build section for that tag."""

    context: Path = Field(strict=False, description="Build context directory.")
    dockerfile: Path | None = Field(
        default=None, strict=False, description="Dockerfile (default: context/Dockerfile)."
    )
    args: dict[str, str] = Field(default_factory=dict)
    target: str | None = None


class RootfsSpec(_Strict):
    """A Debian base image made with debootstrap and `docker import` (no registry needed)."""

    suite: str = Field(default="bookworm", pattern=r"^[a-z]+$")
    variant: str = Field(default="minbase", pattern=r"^[a-z]+$")
    include: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]*$")]] = Field(
        default_factory=list
    )
    mirror: str | None = Field(
        default=None, description="Debian mirror URI; the machine's own apt mirror when absent."
    )


class ImageSpec(_Strict):
    """A declared image: how it is made (build or rootfs, or neither) and its size budget."""

    build: BuildSpec | None = None
    rootfs: RootfsSpec | None = None
    size_budget_mb: float | None = Field(default=None, gt=0, le=1_000_000)

    @model_validator(mode="after")
    def _one_way_to_make(self) -> ImageSpec:
        if self.build is not None and self.rootfs is not None:
            raise ValueError("give either `build` or `rootfs`, not both")
        return self


class WheelhouseSpec(_Strict):
    """A directory of wheels downloaded on the host, for offline `pip install --no-index`."""

    requirements: list[Annotated[Path, Field(strict=False)]] = Field(min_length=1)


class AlembicSpec(_Strict):
    """Alembic in the service: `current` vs `heads` decides; `upgrade head` applies."""

    command: Argv = Field(default_factory=lambda: ["python", "-m", "alembic"])


class MigrationSpec(_Strict):
    """Migrations run inside a running service: alembic, or any tool via check/apply argv."""

    name: str = Field(min_length=1)
    service: str = Field(pattern=_SERVICE_NAME)
    alembic: AlembicSpec | None = None
    check: Argv | None = Field(default=None, description="Exit 0 when up to date.")
    apply: Argv | None = Field(default=None, description="Brings the schema up to date.")
    timeout: Seconds = 300.0

    @model_validator(mode="after")
    def _alembic_or_commands(self) -> MigrationSpec:
        if self.alembic is None and (self.check is None or self.apply is None):
            raise ValueError("give `alembic: {}` or both `check` and `apply` argv lists")
        if self.alembic is not None and (self.check is not None or self.apply is not None):
            raise ValueError("give `alembic` or `check`/`apply`, not both")
        return self


class HttpRequestSpec(_Strict):
    """One HTTP request and what its answer must be."""

    url: str = Field(pattern=r"^https?://")
    method: str = Field(default="GET", pattern=r"^(GET|POST|PUT|PATCH|DELETE|HEAD)$")
    json_body: dict[str, object] | None = Field(default=None, alias="json")
    expect_status: int | None = Field(default=200, ge=100, le=599)
    expect_json: dict[str, object] | None = Field(
        default=None, description="Subset the JSON answer must contain."
    )
    expect_items: ItemsExpectation | None = None
    capture: dict[str, str] = Field(
        default_factory=dict,
        description="name -> dotted path in the JSON answer, for {name} in later URLs.",
    )


class ItemsExpectation(_Strict):
    """For a JSON list answer: how many items, and items that must be among them."""

    min: int = Field(default=0, ge=0)
    having: list[dict[str, object]] = Field(default_factory=list)


class PollSpec(_Strict):
    """Poll a URL until a field reaches a value; fail early on others."""

    url: str = Field(pattern=r"^https?://")
    until: dict[str, object] = Field(min_length=1, description="dotted path -> wanted value")
    fail_if: dict[str, list[object]] = Field(default_factory=dict)


class ExecSpec(_Strict):
    """A command run in a running service; its exit code (and output) decide."""

    service: str = Field(pattern=_SERVICE_NAME)
    command: Argv
    expect_exit: int | Literal["nonzero"] = 0
    expect_output: str | None = Field(default=None, description="Substring of stdout+stderr.")


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression {pattern!r}: {error}") from None
    return pattern


Regex = Annotated[str, Field(min_length=1), AfterValidator(_valid_regex)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class LogsSpec(_Strict):
    """A service's log, read from docker: lines that must not appear, and lines that must."""

    service: str = Field(pattern=_SERVICE_NAME)
    must_not_match: list[Regex] = Field(
        default_factory=list, description="Fails at the first line matching any of these."
    )
    must_match: list[Regex] = Field(
        default_factory=list,
        description="Each must match some line; waited for until the check's deadline.",
    )
    since: Literal["start", "apply"] = Field(
        default="start",
        description="Read from the container's start, or from the moment this apply began.",
    )
    ignore_case: bool = Field(default=True, description="Match without regard to case.")

    @model_validator(mode="after")
    def _something_to_match(self) -> LogsSpec:
        if not self.must_match and not self.must_not_match:
            raise ValueError("give `must_match` or `must_not_match` (or both)")
        return self


class CommandSpec(_Strict):
    """A program run on the host (never through a shell); exit 0 passes.

    Its environment is reconciler's own, plus RECONCILER_PROJECT, RECONCILER_STATE and one
    RECONCILER_URL_<SERVICE> per service publishing a port, plus `env`.
    """

    argv: Argv
    cwd: Path | None = Field(
        default=None,
        strict=False,
        description="Working directory, relative to the state file (default: its directory).",
    )
    env: dict[EnvName, str] = Field(default_factory=dict)
    timeout: Seconds | None = Field(
        default=None, description="Seconds the program may run (default: the check's deadline)."
    )
    junit: Path | None = Field(
        default=None,
        strict=False,
        description="JUnit XML file the program writes, relative to `cwd`; its test cases "
        "become rows of this run's report and JUnit output.",
    )


class CheckSpec(_Strict):
    """A functional check with a deadline: an HTTP request (optionally polled), an exec in a
    service, a service's log, or a command run on the host."""

    name: str = Field(min_length=1)
    deadline: Seconds = 60.0
    http: HttpRequestSpec | None = None
    poll: PollSpec | None = None
    exec: ExecSpec | None = None
    logs: LogsSpec | None = None
    command: CommandSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CheckSpec:
        kinds = [self.http, self.exec, self.logs, self.command]
        if sum(kind is not None for kind in kinds) != 1:
            raise ValueError("a check needs exactly one of `http`, `exec`, `logs` or `command`")
        if self.poll is not None and self.http is None:
            raise ValueError("`poll` follows an `http` request")
        return self


class CompareSpec(_Strict):
    """What a comparison with a baseline result (`--baseline`) must show, or the apply fails."""

    size_reduction_pct: dict[
        Annotated[str, AfterValidator(valid_image_reference)],
        Annotated[float, Field(ge=-1000, le=100)],
    ] = Field(
        default_factory=dict,
        description="image -> minimum size reduction against the baseline, in percent. The "
        "baseline's image is the one the same service ran (or the same reference).",
    )
    no_regressions: bool = Field(
        default=False, description="Fail when a check that passed in the baseline fails now."
    )


class State(_Strict):
    """A declared state: the root model of a state file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    compose: ComposeSpec
    services: dict[Annotated[str, Field(pattern=_SERVICE_NAME)], ServiceSpec] = Field(
        default_factory=dict
    )
    images: dict[Annotated[str, AfterValidator(valid_image_reference)], ImageSpec] = Field(
        default_factory=dict, description="Images reconciler makes, by reference."
    )
    wheelhouses: dict[str, WheelhouseSpec] = Field(
        default_factory=dict,
        description="Wheel directories (relative paths) to fill with pip download.",
    )
    files: dict[str, FileSpec] = Field(
        default_factory=dict,
        description="Files (relative paths) the compose-file step keeps: dotenv keys set or "
        "absent.",
    )
    migrations: list[MigrationSpec] = Field(default_factory=list)
    checks: list[CheckSpec] = Field(default_factory=list)
    compare: CompareSpec | None = Field(
        default=None, description="Requirements on the comparison with a baseline result."
    )
    sensitive_env: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="Environment variables whose values are secret: never printed anywhere.",
    )
    allow_outside_root: bool = Field(
        default=False,
        description="Allow paths outside the state's root (git work tree or state directory).",
    )

    # Set by the loader, never by the file: where the state came from and its root.
    _source: Path = PrivateAttr(default=Path("<memory>"))
    _root: Path = PrivateAttr(default=Path())
    _positions: dict[str, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> Path:
        """The state file this state was loaded from."""
        return self._source

    @property
    def root(self) -> Path:
        """The directory every path of this state must stay inside (unless allowed out)."""
        return self._root

    def located(self, source: Path, root: Path, positions: dict[str, tuple[int, int]]) -> State:
        """A copy that knows its file, root and key positions (the loader's job)."""
        copy = self.model_copy()
        copy._source, copy._root, copy._positions = source, root, positions
        return copy

    def shown(self, path: Path) -> str:
        """`path` as reports show it: relative to the state's root when inside it."""
        return str(path.relative_to(self._root)) if path.is_relative_to(self._root) else str(path)

    def location(self, key: str) -> Location:
        """Where `key` (a dotted path such as `services.web.image`) sits in the state file."""
        line, column = self._positions.get(key, (None, None))
        return Location(self._source, line, column, key)

    def pins(self) -> dict[str, str]:
        """services.<name>.image values the compose file must carry."""
        return {name: spec.image for name, spec in self.services.items() if spec.image}
