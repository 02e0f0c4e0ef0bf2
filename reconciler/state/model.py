"""pydantic v2 models of a state file (DESIGN.md §2 core keys).

`load.py` feeds them plain data from YAML and turns their validation errors into `InputError`s
that point at file:line:column; path rules needing the file's location live there too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic.config import JsonDict

from reconciler.errors import Location
from reconciler.state.engine import parse_engine

__all__ = [
    "EXTENSIONS_SCHEMA",
    "EXTENSION_PREFIX",
    "AlembicSpec",
    "BuildSpec",
    "CheckSpec",
    "CommandSpec",
    "CompareSpec",
    "ComposeSpec",
    "ExecSpec",
    "FileFormat",
    "FileSpec",
    "HttpRequestSpec",
    "ImageSpec",
    "ItemsExpectation",
    "LogsSpec",
    "MigrationSpec",
    "Percent",
    "PollSpec",
    "PrometheusSpec",
    "PullPolicy",
    "RegistrySpec",
    "RootfsSpec",
    "SampleSpec",
    "SecretSpec",
    "ServiceSpec",
    "State",
    "WheelhouseSpec",
    "file_format",
    "valid_image_reference",
]

# distribution/reference's grammar: [host[:port]/]path[:tag][@digest], path lower-case.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
# Matched whole (`fullmatch`): `$` would also match before a final newline ("web:2\n").
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)
_MAX_REFERENCE = 255


def valid_image_reference(value: str) -> str:
    """Accept an image reference docker would accept, else raise ValueError saying why."""
    if len(value) > _MAX_REFERENCE:
        raise ValueError(f"image reference longer than {_MAX_REFERENCE} characters")
    if not _REFERENCE.fullmatch(value):
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


# Top-level keys the loader leaves out before validation (compose's extension fields): a place
# for anchors. The schema says so, for editors.
EXTENSION_PREFIX = "x-"
EXTENSIONS_SCHEMA: JsonDict = {"patternProperties": {f"^{EXTENSION_PREFIX}": {}}}


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
    mode: Literal["compose", "swarm"] = Field(
        default="compose",
        description="`compose`: the project runs with docker compose. `swarm`: the compose "
        "file is deployed as a stack (`docker stack deploy`) on the engine, a Swarm manager; "
        "images are built there first (stack deploy ignores `build:`), drift comes from the "
        "services' specs and the images they run, health from their tasks, and a failed update "
        "is rolled back by Swarm.",
    )
    prune: bool = Field(
        default=False,
        description="swarm mode only: deploy with `--prune`, removing the stack's services "
        "that the compose file no longer defines.",
    )


DotenvKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ServiceSpec(_Strict):
    """Desired facts of one compose service."""

    image: ImageReference | None = Field(
        default=None, description="Pins services.<name>.image in the compose file."
    )
    environment: dict[EnvName, str] = Field(
        default_factory=dict,
        description="Pins services.<name>.environment entries in the compose file (mapping "
        "or list form, as the file has it); values are written as compose reads them.",
    )
    health_timeout: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds to wait for the service to become healthy (or running).",
    )


Argv = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
# Every number of a state file is finite and in range: YAML reads `.nan` and `.inf` as floats,
# and NaN fails no comparison (a `nan` deadline would never pass).
Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]


class BuildSpec(_Strict):
    """How to build an image; overrides the compose file's build section for that tag."""

    context: Path = Field(strict=False, description="Build context directory.")
    dockerfile: Path | None = Field(
        default=None, strict=False, description="Dockerfile (default: context/Dockerfile)."
    )
    args: dict[str, str] = Field(
        default_factory=dict,
        description="Build args (name -> value), part of the image's input digest; a secret's "
        "value is passed as `--build-arg NAME` with the value in buildx's environment.",
    )
    target: str | None = Field(
        default=None, description="The Dockerfile stage to build (`--target`)."
    )


class RootfsSpec(_Strict):
    """A Debian base image made with debootstrap and `docker import` (no registry needed)."""

    suite: str = Field(
        default="bookworm", pattern=r"^[a-z]+$", description="The Debian release to bootstrap."
    )
    variant: str = Field(
        default="minbase", pattern=r"^[a-z]+$", description="debootstrap's `--variant`."
    )
    include: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]*$")]] = Field(
        default_factory=list,
        description="Debian packages installed into the base image (debootstrap's `--include`).",
    )
    mirror: str | None = Field(
        default=None, description="Debian mirror URI; the machine's own apt mirror when absent."
    )


PullPolicy = Literal["missing", "always", "digest"]


class ImageSpec(_Strict):
    """A declared image: how it is made (build or rootfs, or pulled), its pull policy and its
    size budget."""

    build: BuildSpec | None = Field(
        default=None,
        description="Build the image; rebuilt when the digest of its inputs (the context "
        "filtered by .dockerignore, the Dockerfile, build args, target and any declared base "
        "image it builds FROM) differs from its `io.reconciler.context-digest` label.",
    )
    rootfs: RootfsSpec | None = Field(
        default=None,
        description="Make the image with debootstrap and `docker import`; remade only when "
        "its spec changes.",
    )
    size_budget_mb: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="The image's size budget in MB, checked after every apply like a check.",
    )
    pull: PullPolicy = Field(
        default="missing",
        description="For an image nothing builds: `missing` pulls it only when absent; "
        "`digest` also pulls when its tag moved in the registry (the registry's manifest "
        "digest is not among the local image's RepoDigests), recreating its users; `always` "
        "pulls at every apply (not idempotent, like compose's pull_policy: always).",
    )

    @model_validator(mode="after")
    def _one_way_to_make(self) -> ImageSpec:
        if self.build is not None and self.rootfs is not None:
            raise ValueError("give either `build` or `rootfs`, not both")
        if self.pull != "missing" and (self.build is not None or self.rootfs is not None):
            made = "build" if self.build is not None else "rootfs"
            raise ValueError(
                f"`pull: {self.pull}` is for images pulled from a registry; this one is made "
                f"from its `{made}`"
            )
        return self


_REGISTRY_HOST = rf"^{_DOMAIN}$"


class RegistrySpec(_Strict):
    """Credentials for one registry: `docker login` before its first pull or digest read."""

    username: str = Field(
        min_length=1, pattern=r"^\S+$", description="The user `docker login` logs in as."
    )
    password_secret: EnvName = Field(
        description="The name of an entry of the state's `secrets:` holding the password "
        "(passed to `docker login --password-stdin`, never in argv)."
    )


class WheelhouseSpec(_Strict):
    """A directory of wheels downloaded on the host, for offline `pip install --no-index`."""

    requirements: list[Annotated[Path, Field(strict=False)]] = Field(
        min_length=1,
        description="Requirement files (relative to the state file) whose wheels `pip "
        "download` fetches; downloaded again only when they change.",
    )


class AlembicSpec(_Strict):
    """Alembic in the service: `current` vs `heads` decides; `upgrade head` applies."""

    command: Argv = Field(
        default_factory=lambda: ["python", "-m", "alembic"],
        description="How alembic is run inside the service (argv).",
    )


class MigrationSpec(_Strict):
    """Migrations run inside a running service: alembic, or any tool via check/apply argv."""

    name: str = Field(min_length=1, description="The migration set's name, in plans and reports.")
    service: str = Field(
        pattern=_SERVICE_NAME, description="The compose service the migrations run in."
    )
    alembic: AlembicSpec | None = Field(
        default=None,
        description="Use alembic: `current` against `heads` decides, `upgrade head` applies.",
    )
    check: Argv | None = Field(default=None, description="Exit 0 when up to date.")
    apply: Argv | None = Field(default=None, description="Brings the schema up to date.")
    timeout: Seconds = Field(default=300.0, description="Seconds each command may run.")

    @model_validator(mode="after")
    def _alembic_or_commands(self) -> MigrationSpec:
        if self.alembic is None and (self.check is None or self.apply is None):
            raise ValueError("give `alembic: {}` or both `check` and `apply` argv lists")
        if self.alembic is not None and (self.check is not None or self.apply is not None):
            raise ValueError("give `alembic` or `check`/`apply`, not both")
        return self


class SampleSpec(_Strict):
    """Once the check passed: this many more requests to its URL, each one's latency kept for
    the verdict against a baseline (`compare.latency_p95_increase_pct`, `error_rate_max`)."""

    requests: int = Field(
        ge=1, le=10_000, description="How many requests to send (its own method and body)."
    )
    concurrency: int = Field(
        default=4, ge=1, le=64, description="How many are in flight at a time."
    )


class HttpRequestSpec(_Strict):
    """One HTTP request and what its answer must be."""

    url: str = Field(
        pattern=r"^https?://",
        description="The URL; `{engine_host}` is the engine's host (127.0.0.1 for a local "
        "engine), `{name}` a value captured by an earlier check.",
    )
    method: str = Field(
        default="GET",
        pattern=r"^(GET|POST|PUT|PATCH|DELETE|HEAD)$",
        description="The HTTP method.",
    )
    json_body: dict[str, object] | None = Field(
        default=None, alias="json", description="A JSON body to send."
    )
    expect_status: int | None = Field(
        default=200, ge=100, le=599, description="The status the answer must have."
    )
    expect_json: dict[str, object] | None = Field(
        default=None, description="Subset the JSON answer must contain."
    )
    expect_items: ItemsExpectation | None = Field(
        default=None, description="For a JSON list answer: its size and items it must hold."
    )
    capture: dict[str, str] = Field(
        default_factory=dict,
        description="name -> dotted path in the JSON answer, for {name} in later URLs.",
    )
    sample: SampleSpec | None = Field(
        default=None,
        description="Once the check passed, sample the URL's latency: more requests, each "
        "timed; an error is a failed request or another status than `expect_status`.",
    )


class ItemsExpectation(_Strict):
    """For a JSON list answer: how many items, and items that must be among them."""

    min: int = Field(default=0, ge=0, le=1_000_000, description="The fewest items wanted.")
    having: list[dict[str, object]] = Field(
        default_factory=list,
        description="Subsets that items of the list must contain, each matched by some item.",
    )


class PollSpec(_Strict):
    """Poll a URL until a field reaches a value; fail early on others."""

    url: str = Field(
        pattern=r"^https?://",
        description="The URL polled until the check's deadline (`{name}` from `capture`).",
    )
    until: dict[str, object] = Field(min_length=1, description="dotted path -> wanted value")
    fail_if: dict[str, list[object]] = Field(
        default_factory=dict,
        description="dotted path -> values that fail the check at once when reached.",
    )


def _exit_code(value: int | str) -> int | str:
    # Checked after the union, so that an error names `expect_exit`, not a member of it.
    if isinstance(value, int) and not 0 <= value <= 255:
        raise ValueError(f"an exit code is from 0 to 255, not {value}")
    return value


class ExecSpec(_Strict):
    """A command run in a running service; its exit code (and output) decide."""

    service: str = Field(pattern=_SERVICE_NAME, description="The service to exec in.")
    command: Argv = Field(description="The command (argv, no shell).")
    expect_exit: Annotated[int | Literal["nonzero"], AfterValidator(_exit_code)] = Field(
        default=0, description="The exit code wanted (0-255), or `nonzero`."
    )
    expect_output: str | None = Field(default=None, description="Substring of stdout+stderr.")


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression {pattern!r}: {error}") from None
    return pattern


Regex = Annotated[str, Field(min_length=1), AfterValidator(_valid_regex)]


class LogsSpec(_Strict):
    """A service's log, read from docker: lines that must not appear, and lines that must."""

    service: str = Field(pattern=_SERVICE_NAME, description="The service whose log is read.")
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


class PrometheusSpec(_Strict):
    """A PromQL query to a Prometheus server; its one value must lie within `min` and `max`,
    and is kept in the result (`compare.prometheus_increase_pct` compares it with the
    baseline's)."""

    url: str = Field(
        pattern=r"^https?://",
        description="The Prometheus server (`{engine_host}` is the engine's host), as "
        "`http://127.0.0.1:9090`; the query goes to its `/api/v1/query`.",
    )
    query: str = Field(
        min_length=1, description="An instant PromQL query whose answer is one value."
    )
    min: float | None = Field(
        default=None, allow_inf_nan=False, description="The least value that passes."
    )
    max: float | None = Field(
        default=None, allow_inf_nan=False, description="The greatest value that passes."
    )

    @model_validator(mode="after")
    def _ordered(self) -> PrometheusSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min:g}) is above `max` ({self.max:g})")
        return self


class CommandSpec(_Strict):
    """A program run on the host (never through a shell); exit 0 passes.

    Its environment is reconciler's own, plus RECONCILER_PROJECT, RECONCILER_STATE and one
    RECONCILER_URL_<SERVICE> per service publishing a port, plus `env`.
    """

    argv: Argv = Field(description="The program and its arguments (never through a shell).")
    cwd: Path | None = Field(
        default=None,
        strict=False,
        description="Working directory, relative to the state file (default: its directory).",
    )
    env: dict[EnvName, str] = Field(
        default_factory=dict, description="Variables added to the program's environment."
    )
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

    name: str = Field(min_length=1, description="The check's name, in reports and JUnit.")
    deadline: Seconds = Field(
        default=60.0, description="Seconds to retry the check until it passes."
    )
    http: HttpRequestSpec | None = Field(default=None, description="An HTTP request.")
    poll: PollSpec | None = Field(
        default=None, description="After `http`: poll a URL until a field reaches a value."
    )
    exec: ExecSpec | None = Field(default=None, description="A command run in a service.")
    logs: LogsSpec | None = Field(default=None, description="A service's log.")
    command: CommandSpec | None = Field(
        default=None, description="A program run on the host, such as a team's test script."
    )
    prometheus: PrometheusSpec | None = Field(
        default=None, description="A PromQL query's value, from a Prometheus server."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CheckSpec:
        kinds = [self.http, self.exec, self.logs, self.command, self.prometheus]
        if sum(kind is not None for kind in kinds) != 1:
            raise ValueError(
                "a check needs exactly one of `http`, `exec`, `logs`, `command` or `prometheus`"
            )
        if self.poll is not None and self.http is None:
            raise ValueError("`poll` follows an `http` request")
        return self


class SecretSpec(_Strict):
    """Where one secret's value comes from: exactly one of `env`, `file` or `command`.

    The value is read once per run, when docker is first asked, and goes only into the
    environment of the compose calls (for their interpolation): never into argv, files, logs,
    plans or reports.
    """

    env: EnvName | None = Field(
        default=None, description="A variable of reconciler's own environment."
    )
    file: Path | None = Field(
        default=None,
        strict=False,
        description="A file holding the value (one trailing newline stripped); relative to "
        "the state file.",
    )
    command: Argv | None = Field(
        default=None,
        description="A program printing the value on stdout (argv list, no shell; one "
        "trailing newline stripped), such as [op, read, 'op://vault/item/field'].",
    )
    timeout: Seconds = Field(default=30.0, description="Seconds `command` may run.")

    @model_validator(mode="after")
    def _one_source(self) -> SecretSpec:
        given = [name for name in ("env", "file", "command") if getattr(self, name) is not None]
        if len(given) != 1:
            shown = " and ".join(f"`{name}`" for name in given) if given else "none"
            raise ValueError(f"a secret needs exactly one of `env`, `file` or `command` ({shown})")
        return self


Percent = Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)]


class CompareSpec(_Strict):
    """What a comparison with a baseline result (`--baseline`) must show, or the apply fails."""

    size_reduction_pct: dict[
        Annotated[str, AfterValidator(valid_image_reference)],
        Annotated[float, Field(ge=-1000, le=100, allow_inf_nan=False)],
    ] = Field(
        default_factory=dict,
        description="image -> minimum size reduction against the baseline, in percent. The "
        "baseline's image is the one the same service ran (or the same reference).",
    )
    no_regressions: bool = Field(
        default=False, description="Fail when a check that passed in the baseline fails now."
    )
    latency_p95_increase_pct: dict[str, Percent] = Field(
        default_factory=dict,
        description="HTTP check (with `sample`) -> the most its 95th-percentile latency may "
        "grow against the baseline's, in percent; a growth fails only when it exceeds "
        "`latency_floor_ms` too and the Mann-Whitney U test finds the latencies larger by more "
        "than both at `confidence`.",
    )
    error_rate_max: dict[str, Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="HTTP check (with `sample`) -> the largest share of its sampled requests "
        "that may fail (0.01: one in a hundred).",
    )
    prometheus_increase_pct: dict[str, Percent] = Field(
        default_factory=dict,
        description="`prometheus` check -> the most its query's value may grow against the "
        "baseline's, in percent (one value a side: the limit alone decides).",
    )
    memory_increase_pct: dict[str, Percent] = Field(
        default_factory=dict,
        description="service -> the most its memory use after the checks may grow against "
        "the baseline's, in percent (its samples compared with the Mann-Whitney U test, as "
        "latencies are).",
    )
    ready_time_increase_pct: dict[str, Percent] = Field(
        default_factory=dict,
        description="service -> the most the time from its container's start to healthy may "
        "grow against the baseline's, in percent.",
    )
    confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="How sure the Mann-Whitney U test must be that a metric grew beyond its "
        "limit and floor before it fails (0.95: p-value under 0.05).",
    )
    latency_floor_ms: float = Field(
        default=20.0,
        ge=0,
        le=60_000,
        allow_inf_nan=False,
        description="A growth of the 95th percentile by fewer milliseconds than this never "
        "fails, whatever its percent: between identical runs on a loaded machine it moves by "
        "tens of milliseconds (tests/benchmarks/bench_latency_jitter.py measures it).",
    )
    ready_time_floor_s: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="A time-to-ready growth of fewer seconds than this never fails, whatever "
        "its percent; the growth counts from the earliest the service can have been ready "
        "(readiness is seen once per healthcheck interval).",
    )
    memory_floor_mb: float = Field(
        default=10.0,
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="A memory growth of fewer megabytes than this never fails, whatever its "
        "percent (a 1 MB process grows by more than 10% on its own).",
    )


def _octal_mode(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"mode must be a quoted octal string such as '0644'; YAML read {value} as a number"
        )
    return value


FileMode = Annotated[
    str,
    BeforeValidator(_octal_mode),
    Field(pattern=r"^0?[0-7]{3}$", description="Octal permission bits, quoted: '0644'."),
]
FileFormat = Literal["yaml", "dotenv"]
YamlScalar = str | int | float | bool


class FileSpec(_Strict):
    """A file the state manages beside the compose file: keys set in it (`set`, and for dotenv
    files `absent`), or its whole content (`content` or `source`); `mode` sets its permission
    bits (YAML `set` and whole files)."""

    format: FileFormat | None = Field(
        default=None,
        description="How `set` edits the file; by default from its name: *.yml and *.yaml "
        "are yaml, .env, .env.* and *.env are dotenv.",
    )
    values: dict[Annotated[str, Field(min_length=1)], YamlScalar] | None = Field(
        default=None,
        alias="set",
        description="YAML: dotted.path -> scalar value (quote a key holding dots: 'a.b'.c). "
        "dotenv: KEY -> string value (a byte-minimal edit; appended when missing).",
    )
    absent: list[DotenvKey] | None = Field(
        default=None,
        description="dotenv only: keys that must not be defined (their line is removed).",
    )
    content: str | None = Field(default=None, description="The file's whole content.")
    source: Path | None = Field(
        default=None,
        strict=False,
        description="A file (relative to the state file) whose bytes the file must hold.",
    )
    mode: FileMode | None = Field(
        default=None,
        description="Octal permission bits, quoted ('0644'), planned as their own change.",
    )

    @model_validator(mode="after")
    def _one_way_to_manage(self) -> FileSpec:
        given = [name for name in ("set", "content", "source") if self._given(name)]
        if self.absent is not None and "set" not in given:
            given.insert(0, "absent")
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `set` (with or without `absent`), `content` or `source`"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if self.format is not None and self.values is None and self.absent is None:
            raise ValueError("`format` goes with `set`; `content` and `source` replace the file")
        both = sorted(set(self.values or {}) & set(self.absent or []))
        if both:
            raise ValueError(f"{', '.join(both)} cannot be both set and absent")
        return self

    def _given(self, name: str) -> bool:
        return {"set": self.values, "content": self.content, "source": self.source}[
            name
        ] is not None

    def dotenv_values(self) -> dict[str, str]:
        """`set` as dotenv values (validated as strings at load for dotenv files)."""
        return {key: str(value) for key, value in (self.values or {}).items()}


def file_format(path: str | Path, spec: FileSpec) -> FileFormat | Literal["whole"] | None:
    """How a managed file is handled: whole, or its `set`/`absent` format (declared, else by
    its name; None when the name does not tell)."""
    if spec.values is None and spec.absent is None:
        return "whole"
    if spec.format is not None:
        return spec.format
    name = Path(path).name
    if name.endswith((".yml", ".yaml")):
        return "yaml"
    if name == ".env" or name.startswith(".env.") or name.endswith(".env"):
        return "dotenv"
    return None


def _valid_engine(text: str) -> str:
    return str(parse_engine(text))


class State(_Strict):
    """A declared state: the root model of a state file."""

    model_config = ConfigDict(json_schema_extra=EXTENSIONS_SCHEMA)

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The state's name, in reports and saved results.",
    )
    engine: Annotated[str, AfterValidator(_valid_engine)] | None = Field(
        default=None,
        description="The Docker engine every docker call of a run targets: a docker context "
        "name, or a host URL (ssh://user@host[:port], tcp://host:port, unix:///path). The CLI's "
        "--engine overrides it; with neither, DOCKER_HOST / DOCKER_CONTEXT apply as for docker.",
    )
    compose: ComposeSpec = Field(description="The compose file and project the state governs.")
    services: dict[Annotated[str, Field(pattern=_SERVICE_NAME)], ServiceSpec] = Field(
        default_factory=dict,
        description="Compose service name -> what the state pins in it and how long it may "
        "take to become healthy.",
    )
    images: dict[Annotated[str, AfterValidator(valid_image_reference)], ImageSpec] = Field(
        default_factory=dict, description="Images reconciler makes, by reference."
    )
    wheelhouses: dict[str, WheelhouseSpec] = Field(
        default_factory=dict,
        description="Wheel directories (relative paths) to fill with pip download.",
    )
    migrations: list[MigrationSpec] = Field(
        default_factory=list, description="Migration sets, brought to head after the services."
    )
    checks: list[CheckSpec] = Field(
        default_factory=list,
        description="Functional checks run after every apply, each retried until its deadline.",
    )
    compare: CompareSpec | None = Field(
        default=None, description="Requirements on the comparison with a baseline result."
    )
    files: dict[Annotated[str, Field(min_length=1)], FileSpec] = Field(
        default_factory=dict,
        description="Files to manage, by path relative to the state file: keys `set` in a "
        "YAML or dotenv file (`absent` for dotenv), or whole content (`content`, `source`) "
        "and `mode`.",
    )
    secrets: dict[EnvName, SecretSpec] = Field(
        default_factory=dict,
        description="NAME -> where its value comes from (env, file or command): passed in the "
        "environment of compose's calls, for its interpolation (${NAME}); never printed.",
    )
    registries: dict[Annotated[str, Field(pattern=_REGISTRY_HOST)], RegistrySpec] = Field(
        default_factory=dict,
        description="Registry host[:port] -> credentials: reconciler runs `docker login` "
        "(once per run, password on stdin) before pulling or reading a digest from it; "
        "docker stores the login in its client config, as a manual `docker login` does.",
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

    @property
    def confine(self) -> Path | None:
        """The root that files read and written for this state must resolve inside (symlinks
        followed), or None when the state allows paths outside it."""
        return None if self.allow_outside_root else self._root

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

    def input_files(self) -> tuple[Path, ...]:
        """The files a run of this (loaded) state reads, which no output of the run (a report,
        a saved result, a plan file) may replace: the state file, the compose file, its env
        files and the `.env` beside it, `files:` targets and sources, secret files, Dockerfiles
        and requirements files."""
        paths = [self._source, self.compose.file, *self.compose.env_files]
        paths.append(self.compose.file.parent / ".env")  # compose's own default env file
        for target, spec in self.files.items():
            paths += [Path(target), *([spec.source] if spec.source is not None else [])]
        paths += [spec.file for spec in self.secrets.values() if spec.file is not None]
        paths += [
            image.build.dockerfile
            for image in self.images.values()
            if image.build is not None and image.build.dockerfile is not None
        ]
        paths += [path for spec in self.wheelhouses.values() for path in spec.requirements]
        return tuple(dict.fromkeys(paths))

    def pins(self) -> dict[str, str]:
        """services.<name>.image values the compose file must carry."""
        return {name: spec.image for name, spec in self.services.items() if spec.image}

    def environment_pins(self) -> dict[str, dict[str, str]]:
        """services.<name>.environment entries the compose file must carry."""
        return {
            name: dict(spec.environment) for name, spec in self.services.items() if spec.environment
        }
