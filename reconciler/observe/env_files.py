"""The dotenv edits a state asks for: its dotenv `files:` keys, and pins of interpolated images.

A pinned service whose `image:` reads `ghcr.io/x/backend:${IMAGE_TAG:-latest}` is pinned where
the variable is defined: the env file compose reads it from (the state's `compose.env_files`,
else the `.env` next to the compose file), edited with `compose.dotenv`; the compose file
keeps its bytes. Variables resolve as compose resolves them: the process environment first,
then the env files, later files winning. Pure: the caller reads the files (and the few process
variables that matter) and writes the results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.compose.dotenv import DotenvFile, edit_dotenv, parse_dotenv
from reconciler.compose.edit import ServiceImage, read_services
from reconciler.compose.interpolate import (
    InterpolationError,
    Template,
    Variable,
    has_variables,
    parse_template,
)
from reconciler.errors import InputError, Location
from reconciler.secrets.redact import MASK, looks_secret
from reconciler.state import State
from reconciler.state.model import FileSpec, file_format

__all__ = [
    "FileEdits",
    "KeyChange",
    "dotenv_paths",
    "dotenv_specs",
    "env_file_paths",
    "env_file_values",
    "image_variables",
    "plan_file_edits",
]

_SOLVABLE = frozenset({None, "-", ":-", "?", ":?"})  # operators whose result is the value


@dataclass(frozen=True)
class KeyChange:
    """One key of one file to set (`after`) or remove (`after` None), and why."""

    file: Path
    key: str
    before: str | None  # the value as written, quotes included; None when not defined
    after: str | None
    reason: str
    text: str  # the file's text with this edit alone (for its diff)


@dataclass(frozen=True)
class FileEdits:
    """Every dotenv edit the state asks for, and what is already as it should be."""

    changes: tuple[KeyChange, ...] = ()
    texts: dict[Path, str] = field(default_factory=dict)  # each changed file's new text
    in_sync: tuple[tuple[Path, str, str], ...] = ()  # (file, key, reason)
    # Pinned services whose image is interpolated: service -> how the pin is (or will be) met.
    through_env: dict[str, str] = field(default_factory=dict)


def env_file_paths(state: State) -> tuple[Path, ...]:
    """The env files compose reads for interpolation: `--env-file`s, else the project's .env."""
    if state.compose.env_files:
        return tuple(state.compose.env_files)
    return (state.compose.file.parent / ".env",)


def env_file_values(
    state: State, parsed: Mapping[Path, DotenvFile], environment: Mapping[str, str]
) -> dict[str, str]:
    """The values the interpolation env files define, in compose's order: each file resolved
    with `environment` and the files before it (a file not in `parsed` defines nothing).
    Compose interpolates with these under the process environment, which wins."""
    values: dict[str, str] = {}
    for path in env_file_paths(state):
        dotenv = parsed.get(path)
        if dotenv is not None:
            values.update(dotenv.resolved({**environment, **values}))
    return values


def dotenv_specs(state: State) -> dict[Path, FileSpec]:
    """The state's dotenv `files:` entries, by path."""
    return {
        Path(name): spec
        for name, spec in state.files.items()
        if file_format(name, spec) == "dotenv"
    }


def dotenv_paths(state: State) -> tuple[Path, ...]:
    """Every dotenv file the compose-file step reads (env files, dotenv `files:`), in order."""
    return tuple(dict.fromkeys([*env_file_paths(state), *dotenv_specs(state)]))


def image_variables(compose_text: str, *, source: Path) -> set[str]:
    """Names of the variables any service's `image:` refers to (the process variables to read)."""
    names: set[str] = set()
    for service in read_services(compose_text, source=source).values():
        if service.image is not None and "$" in service.image:
            try:
                names.update(parse_template(service.image).names())
            except InterpolationError:
                continue  # compose itself rejects it when asked
    return names


@dataclass
class _Wanted:
    value: str
    origin: str  # "files" or the pinned service's name
    reason: str = ""


def plan_file_edits(
    state: State,
    compose_text: str,
    files: Mapping[Path, str | None],
    environment: Mapping[str, str],
) -> FileEdits:
    """The dotenv edits that make the state's `files:` keys and interpolated pins true.

    `files` holds the text of every path of `dotenv_paths` (None: missing); `environment` the
    process variables the compose file refers to (its images' at least). InputError when a
    file cannot be read as dotenv, or an interpolated pin cannot be made by editing an env file.
    """
    parsed = {
        path: parse_dotenv(files.get(path) or "", source=path) for path in dotenv_paths(state)
    }
    wanted: dict[Path, dict[str, _Wanted]] = {path: {} for path in dotenv_paths(state)}
    through_env = _pin_through_env(state, compose_text, parsed, environment, wanted)
    declared = dotenv_specs(state)
    for path, spec in declared.items():
        for key, value in spec.dotenv_values().items():
            _want(wanted[path], key, _Wanted(value, "files"), path, state)
    changes: list[KeyChange] = []
    texts: dict[Path, str] = {}
    in_sync: list[tuple[Path, str, str]] = []
    for path, keys in wanted.items():
        text = files.get(path) or ""
        found = declared.get(path)
        absent = list(found.absent or []) if found is not None else []
        values = {key: want.value for key, want in keys.items()}
        result = edit_dotenv(text, values, absent, source=path)
        if result.edits:
            texts[path] = result.text
        edited = {edit.key for edit in result.edits}
        for edit in result.edits:
            alone = edit_dotenv(
                text,
                {edit.key: edit.after} if edit.after is not None else {},
                [edit.key] if edit.after is None else [],
                source=path,
            )
            want = keys.get(edit.key)
            reason = _reason(edit.key, edit.before, edit.after, files.get(path) is None)
            if want is not None and want.reason:
                reason = want.reason + ("; creates the file" if files.get(path) is None else "")
            changes.append(KeyChange(path, edit.key, edit.before, edit.after, reason, alone.text))
        for key, want in keys.items():
            if key not in edited and want.origin == "files":  # pins have their own ok row
                in_sync.append((path, key, f"already {_shown(key, want.value)}"))
        for key in absent:
            if key not in edited:
                in_sync.append((path, key, "already absent"))
    return FileEdits(tuple(changes), texts, tuple(in_sync), through_env)


def _want(keys: dict[str, _Wanted], key: str, want: _Wanted, path: Path, state: State) -> None:
    have = keys.get(key)
    if have is not None and have.value != want.value:
        who = {"files": f"files.{state.shown(path)}.set.{key}"}
        first = who.get(have.origin, f"the pin of service {have.origin}")
        second = who.get(want.origin, f"the pin of service {want.origin}")
        raise InputError(
            f"{first} needs {key}={_masked(key, have.value)} in {state.shown(path)} but "
            f"{second} needs {key}={_masked(key, want.value)}; pin them to the same tag, or give "
            "the services their own variables",
            state.location(f"services.{want.origin}.image" if want.origin != "files" else "files"),
        )
    keys.setdefault(key, want)


def _pin_through_env(
    state: State,
    compose_text: str,
    parsed: Mapping[Path, DotenvFile],
    environment: Mapping[str, str],
    wanted: dict[Path, dict[str, _Wanted]],
) -> dict[str, str]:
    """Record the env-file edits interpolated pins need; service -> how its pin is met."""
    services = read_services(compose_text, source=state.compose.file)
    chain = env_file_paths(state)
    values = env_file_values(state, parsed, environment)
    defined_in: dict[str, Path] = {}
    for path in chain:
        defined_in.update({entry.key: path for entry in parsed[path].entries})
    scope = {**values, **environment}  # the process environment wins, as in compose
    through: dict[str, str] = {}
    for name, pin in state.pins().items():
        image = services[name].image if name in services else None
        if image is None or "$" not in image or not _has_variables(image, services[name], state):
            continue
        template = parse_template(image)
        where = state.location(f"services.{name}.image")
        try:
            current: str | None = template.render(scope.get)
        except InterpolationError:
            current = None
        if current == pin:
            through[name] = f"already {pin} (image: {image})"
            continue
        variable, value = _solve(template, pin, scope, image=image, name=name, where=where)
        if variable in environment:
            raise InputError(
                f"service {name}'s image {image!r} takes {variable} from the process "
                f"environment ({variable}={_masked(variable, environment[variable])}), which "
                f"reconciler cannot change; unset {variable} so that the env file defines it, "
                "or drop the pin",
                where,
            )
        path = defined_in.get(variable, chain[0])
        also = sorted(
            other
            for other, service in services.items()
            if other != name
            and other not in state.pins()
            and service.image is not None
            and variable in _names(service.image)
        )
        reason = (
            f"services.{name}.image is {image} = {current or '(unresolved)'}; state pins {pin}: "
            f"sets {variable} where it is defined"
            + (f" (also changes the image of {', '.join(also)})" if also else "")
        )
        _want(wanted[path], variable, _Wanted(value, name, reason), path, state)
        through[name] = f"pinned through {variable} in {state.shown(path)}"
    return through


def _has_variables(image: str, service: ServiceImage, state: State) -> bool:
    try:
        return has_variables(image)
    except InterpolationError as error:
        raise InputError(
            f"service {service.service}'s image {image!r}: {error}",
            Location(state.compose.file, service.line, service.column, service.service),
        ) from None


def _names(image: str) -> set[str]:
    try:
        return set(parse_template(image).names())
    except InterpolationError:
        return set()


def _solve(
    template: Template,
    pin: str,
    scope: Mapping[str, str],
    *,
    image: str,
    name: str,
    where: Location,
) -> tuple[str, str]:
    """The one variable (and its value) that makes `template` render as `pin`, the others
    keeping their values; InputError saying why when there is none, or more than one."""
    names = list(template.names())
    found: dict[str, str] = {}
    for index, part in enumerate(template.parts):
        if not isinstance(part, Variable) or part.operator not in _SOLVABLE:
            continue
        if names.count(part.name) != 1:
            continue  # the variable also shapes another part (a default that names it)
        try:
            prefix = Template(template.parts[:index]).render(scope.get)
            suffix = Template(template.parts[index + 1 :]).render(scope.get)
        except InterpolationError:
            continue
        middle = pin[len(prefix) : len(pin) - len(suffix)] if suffix else pin[len(prefix) :]
        if len(pin) > len(prefix) + len(suffix) and pin.startswith(prefix) and pin.endswith(suffix):
            found[part.name] = middle
    if len(found) == 1:
        return next(iter(found.items()))
    settable = [part.name for part in template.parts if isinstance(part, Variable)]
    if not found:
        raise InputError(
            f"service {name}'s image is {image!r} in the compose file, which cannot become "
            f"{pin} by setting {' or '.join(dict.fromkeys(settable)) or 'a variable'}: the rest "
            "of the pattern differs. Pin a reference that matches the pattern, or change the "
            "compose file's image",
            where,
        )
    raise InputError(
        f"service {name}'s image {image!r} could become {pin} by setting any of "
        f"{', '.join(sorted(found))}; reconciler will not guess which. Pin a service whose "
        "image has one variable, or set the variable under `files:`",
        where,
    )


def _masked(key: str, value: str) -> str:
    return MASK if looks_secret(key) else value


def _shown(key: str, value: str) -> str:
    return f"{key}={_masked(key, value)}"


def _reason(key: str, before: str | None, after: str | None, creates: bool) -> str:
    tail = "; creates the file" if creates else ""
    if after is None:
        return f"{key} is set ({_masked(key, before or '')}); state wants it absent"
    if before is None:
        return f"{key} is not set; state sets {_shown(key, after)}{tail}"
    return f"{key} is {_masked(key, before)}; state sets {_shown(key, after)}"
