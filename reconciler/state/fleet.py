"""A fleet file: named targets, each a state file plus the engine it runs on, applied in waves.

    fleet: homelab
    targets:
      core: {state: core.yaml, engine: "ssh://deploy@core.example"}
      workers-b: {state: workers.yaml, engine: workers-b}      # a docker context name
    waves: [[core], [workers-b]]                               # optional

A file is a fleet file when its top level has a `fleet:` key (`is_fleet_file`). `load_fleet`
validates it as a state file is validated (pydantic models, every error an `InputError` at
file:line:column naming the key) and loads every target's state: state paths are relative to
the fleet file and stay inside its root; a target's `engine` overrides its state's `engine:`.
Without `waves:`, the targets run one at a time in declared order (a wave each).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml.comments import CommentedMap

from reconciler.errors import InputError, Location
from reconciler.state.engine import parse_engine
from reconciler.state.load import (
    find_root,
    load_state,
    node_position,
    parse_document,
    read_input_text,
    to_plain,
    validation_error,
    without_extensions,
)
from reconciler.state.model import EXTENSIONS_SCHEMA, State
from reconciler.state.project import project_name

__all__ = ["Fleet", "FleetSpec", "FleetTarget", "Target", "is_fleet_file", "load_fleet"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_KIND = "fleet file"
LOCAL_ENGINE = "default"  # how a target without an engine (DOCKER_HOST/DOCKER_CONTEXT) is shown


def _valid_engine(text: str) -> str:
    return str(parse_engine(text))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)  # on use


TargetName = Annotated[str, Field(pattern=_NAME, max_length=100)]


class FleetTarget(_Strict):
    """One target of a fleet: a state file, and the engine to apply it on."""

    state: Path = Field(
        strict=False,  # YAML gives a str
        description="The target's state file; relative to the fleet file's directory.",
    )
    engine: Annotated[str, AfterValidator(_valid_engine)] | None = Field(
        default=None,
        description="The Docker engine of this target (a docker context name or ssh://, "
        "tcp://, unix:// URL); overrides the state's own `engine:`.",
    )


class FleetSpec(_Strict):
    """A fleet file: the root model."""

    model_config = ConfigDict(json_schema_extra=EXTENSIONS_SCHEMA)

    fleet: str = Field(min_length=1, pattern=_NAME, description="The fleet's name.")
    targets: dict[TargetName, FleetTarget] = Field(
        min_length=1, description="Target name -> its state file and engine, in apply order."
    )
    waves: list[Annotated[list[TargetName], Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description="Groups of targets applied in parallel, one group after the other; every "
        "target in exactly one. Default: one target at a time, in declared order.",
    )
    allow_outside_root: bool = Field(
        default=False,
        description="Allow state files outside the fleet's root (git work tree or directory).",
    )


@dataclass(frozen=True)
class Target:
    """A loaded target: its name, its state (with the target's engine in it) and that engine."""

    name: str
    state: State

    @property
    def engine(self) -> str:
        """The engine as shown: the state's (the target's when it set one), else `default`."""
        return self.state.engine or LOCAL_ENGINE


@dataclass(frozen=True)
class Fleet:
    """A loaded fleet: its targets in declared order, and the waves they run in."""

    name: str
    source: Path
    targets: Mapping[str, Target]
    waves: tuple[tuple[str, ...], ...]
    explicit_waves: bool = False

    def select(self, names: Iterable[str]) -> Fleet:
        """The fleet limited to `names` (`--target`), waves kept in order; InputError for an
        unknown name. No names: the whole fleet."""
        chosen = list(dict.fromkeys(names))
        if not chosen:
            return self
        for name in chosen:
            if name not in self.targets:
                raise InputError(
                    f"--target {name!r}: fleet {self.name!r} has no such target "
                    f"(its targets: {', '.join(self.targets)})",
                    Location(self.source),
                )
        waves = tuple(
            kept for wave in self.waves if (kept := tuple(n for n in wave if n in chosen))
        )
        targets = {name: target for name, target in self.targets.items() if name in chosen}
        return Fleet(self.name, self.source, targets, waves, self.explicit_waves)


def is_fleet_file(path: str | Path) -> bool:
    """True when `path` is a readable YAML mapping with a top-level `fleet:` key.

    Anything unreadable or malformed is not a fleet file: loading it as a state reports why.
    """
    source = Path(path)
    try:
        if not source.is_file():
            return False
        text = read_input_text(source)
        if "fleet" not in text:  # most state files: no parse
            return False
        return "fleet" in parse_document(text, source)
    except (InputError, OSError):
        return False


def load_fleet(path: str | Path) -> Fleet:
    """Load and validate the fleet file at `path` and every target's state; raise `InputError`
    (file:line:column and key) on any problem, before anything is changed."""
    source = Path(path)
    text = read_input_text(source, _KIND)
    document = parse_document(text, source, _KIND)
    plain = without_extensions(to_plain(document, source))
    try:
        spec = FleetSpec.model_validate(plain)
    except ValidationError as error:
        raise validation_error(error, document, source, _known_keys()) from None
    waves = _check_waves(spec, document, source)
    targets = {
        name: Target(name, _load_target(spec, name, target, document, source))
        for name, target in spec.targets.items()
    }
    _check_distinct(targets, document, source)
    return Fleet(spec.fleet, source.resolve(), targets, waves, spec.waves is not None)


def _known_keys() -> tuple[str, ...]:
    return (*FleetSpec.model_fields, *FleetTarget.model_fields)


def _where(document: CommentedMap, source: Path, loc: list[str | int], *, key: bool) -> Location:
    line, column = node_position(document, loc, key=key) or (None, None)
    return Location(source, line, column, ".".join(str(part) for part in loc))


def _check_waves(
    spec: FleetSpec, document: CommentedMap, source: Path
) -> tuple[tuple[str, ...], ...]:
    """Each wave names known targets, each target is in exactly one wave."""
    if spec.waves is None:
        return tuple((name,) for name in spec.targets)
    seen: dict[str, int] = {}
    for index, wave in enumerate(spec.waves):
        for position, name in enumerate(wave):
            where = _where(document, source, ["waves", index, position], key=False)
            if name not in spec.targets:
                raise InputError(
                    f"unknown target {name!r}; the targets are: {', '.join(spec.targets)}", where
                )
            if name in seen:
                again = "twice in this wave" if seen[name] == index else f"in wave {seen[name] + 1}"
                raise InputError(
                    f"target {name!r} is already {again}; a target belongs to exactly one wave",
                    where,
                )
            seen[name] = index
    missing = [name for name in spec.targets if name not in seen]
    if missing:
        raise InputError(
            f"target {missing[0]!r} is in no wave; list every target in exactly one wave "
            "(or drop `waves` to apply them one at a time)",
            _where(document, source, ["waves"], key=True),
        )
    return tuple(tuple(wave) for wave in spec.waves)


def _load_target(
    spec: FleetSpec, name: str, target: FleetTarget, document: CommentedMap, source: Path
) -> State:
    """The target's state file, loaded, with the target's engine in it."""
    where = _where(document, source, ["targets", name, "state"], key=False)
    if "\0" in str(target.state):  # no file name can hold one; Path.resolve would raise
        raise InputError("the path contains a NUL byte (\\0)", where)
    path = (source.parent / target.state).resolve()
    root = find_root(source)
    if not spec.allow_outside_root and not path.is_relative_to(root):
        raise InputError(
            f"{path} is outside the fleet's root {root}; set `allow_outside_root: true` to "
            "allow it",
            where,
        )
    if not path.is_file():
        raise InputError(f"state file {path} does not exist or is not a file", where)
    if is_fleet_file(path):
        raise InputError(f"{path} is a fleet file; a target's state must be a state file", where)
    try:
        state = load_state(path)
    except InputError as error:
        raise InputError(
            f"{error.message} (the state of target {name!r} of {source})", error.location
        ) from None
    if target.engine is not None:
        state = state.model_copy(update={"engine": target.engine})
    return state


def _check_distinct(targets: Mapping[str, Target], document: CommentedMap, source: Path) -> None:
    """No two targets drive one compose project on one engine: they would undo each other."""
    seen: dict[tuple[str, str], str] = {}
    for name, target in targets.items():
        state = target.state
        key = (project_name(state.compose.file, state.compose.project), target.engine)
        if key in seen:
            raise InputError(
                f"targets {seen[key]!r} and {name!r} both drive compose project {key[0]!r} on "
                f"engine {key[1]!r}; give one of them another engine or project",
                _where(document, source, ["targets", name], key=True),
            )
        seen[key] = name
