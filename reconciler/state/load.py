"""Read a state file: YAML (ruamel, keeping positions) -> plain data -> pydantic `State`.

Every problem becomes an `InputError` naming file:line:column and the key path, raised before
anything is changed. Relative paths resolve against the state file's directory and must stay
inside the state's root unless the state says `allow_outside_root: true`.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, merge_attrib
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, StreamMark, YAMLError
from ruamel.yaml.events import (
    Event,
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.parser import RoundTripParser

from reconciler.errors import InputError, Location
from reconciler.runtime.files import decode_utf8, file_kind, read_text
from reconciler.state.model import EXTENSION_PREFIX, FileSpec, State, file_format
from reconciler.state.paths import INTERPOLATION as _INTERPOLATION
from reconciler.state.paths import parse_path

_DOTENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # fullmatch: `$` passes "KEY\n"

__all__ = [
    "decode_utf8",
    "find_root",
    "load_state",
    "node_position",
    "parse_document",
    "read_input_text",
    "to_plain",
    "validation_error",
    "without_extensions",
    "yaml_key_position",
]

# Aliases make a small file expand into a huge object graph (the "billion laughs"); a state
# file has tens of nodes, so a generous cap stops that without limiting real use.
_MAX_NODES = 100_000
# ruamel's composer and our own walks recurse once or twice per level, so a deeply nested
# file (`[[[[...` a few thousand times) would exhaust Python's stack. A state file nests about
# five levels; anything past this is refused before a single node is composed.
_MAX_DEPTH = 100
# ruamel builds each `<<` merge eagerly, copying the merged mapping's keys and comparing the
# merging mapping with every earlier user of the same anchor (by value): merges cost the
# product of their number and sizes before `_MAX_NODES` is ever counted, about 2 s for 500
# merges of a 20-key anchor. A state or fleet file merges a few defaults into tens of entries.
_MAX_MERGES = 200
_MAX_MERGED_KEYS = 10_000


def load_state(path: str | Path) -> State:
    """Load and validate the state file at `path`; raise `InputError` on any problem."""
    source = Path(path)
    text = read_input_text(source)
    try:
        document = parse_document(text, source)
        plain = without_extensions(to_plain(document, source))
        try:
            state = State.model_validate(plain)
        except ValidationError as error:
            raise validation_error(error, document, source) from None
        return _resolve_paths(state, document, source)
    except RecursionError:
        # A last resort: the depth limits below should make this unreachable.
        raise InputError(
            "nesting too deep to process (Python's recursion limit was reached)",
            Location(source),
        ) from None


def find_root(source: Path) -> Path:
    """The state's root: the git work tree holding `source`, else the file's directory."""
    directory = source.resolve().parent
    try:
        top = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return directory
    if top.returncode == 0 and top.stdout.strip():
        return Path(top.stdout.strip()).resolve()
    return directory


def read_input_text(source: Path, kind: str = "state file") -> str:
    """The file's text (UTF-8, as `runtime.files.read_text` reads it); a missing file is an
    InputError saying "<kind> not found"."""
    try:
        return read_text(source, kind)
    except FileNotFoundError:
        raise InputError(f"{kind} not found", Location(source)) from None


class _TooDeep(Exception):
    def __init__(self, mark: StreamMark) -> None:
        self.mark = mark


class _DepthLimitedParser(RoundTripParser):
    """ruamel's round-trip parser, refusing nesting deeper than `_MAX_DEPTH`.

    The parser itself is a state machine (no recursion); the composer pulls every event
    through `get_event` and recurses per collection. Counting collection starts and ends here
    stops a deep document at the first level too many, before the composer goes deeper.
    """

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._depth = 0

    def get_event(self) -> Event:
        event: Event = super().get_event()
        if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            self._depth += 1
            if self._depth > _MAX_DEPTH:
                raise _TooDeep(event.start_mark)
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            self._depth -= 1
        return event


class _BadMerges(Exception):
    def __init__(self, mark: StreamMark, what: str) -> None:
        self.mark = mark
        self.what = what


class _MergeLimitedConstructor(RoundTripConstructor):
    """ruamel's round-trip constructor, refusing documents whose `<<` merges cost too much.

    `flatten_mapping` collects a mapping's merged mappings before ruamel copies their keys in,
    so counting them here stops a merge bomb before the expensive part (see `_MAX_MERGES`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._merges = 0
        self._merged_keys = 0

    def flatten_mapping(self, node: Any) -> Any:
        merged = super().flatten_mapping(node)
        if any(not isinstance(mapping, CommentedMap) for mapping in merged):
            # ruamel gives None for a mapping still being built: one that holds this merge.
            raise _BadMerges(
                node.start_mark, "a '<<' merge of a mapping that contains it (a recursive merge)"
            )
        self._merges += len(merged)
        self._merged_keys += sum(len(mapping) for mapping in merged)
        if self._merges > _MAX_MERGES:
            raise _BadMerges(node.start_mark, f"more than {_MAX_MERGES} '<<' merges (merge bomb?)")
        if self._merged_keys > _MAX_MERGED_KEYS:
            raise _BadMerges(
                node.start_mark,
                f"'<<' merges copying more than {_MAX_MERGED_KEYS} keys (merge bomb?)",
            )
        return merged


def parse_document(text: str, source: Path, kind: str = "state file") -> CommentedMap:
    """The round-trip YAML document of a state or fleet file (`kind` names it in messages):
    duplicate keys, nesting past `_MAX_DEPTH`, too many merges or a top level that is not a
    mapping are located InputErrors."""
    yaml = YAML(typ="rt")
    yaml.Parser = _DepthLimitedParser
    yaml.Constructor = _MergeLimitedConstructor
    yaml.allow_duplicate_keys = False
    try:
        document = yaml.load(text)
    except _TooDeep as error:
        raise InputError(
            f"{kind} has nesting deeper than {_MAX_DEPTH} levels",
            Location(source, error.mark.line + 1, error.mark.column + 1),
        ) from None
    except _BadMerges as error:
        raise InputError(
            f"{kind} has {error.what}",
            Location(source, error.mark.line + 1, error.mark.column + 1),
        ) from None
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join(filter(None, [error.context, error.problem])) or str(error)
        location = Location(source, mark.line + 1, mark.column + 1) if mark else Location(source)
        raise InputError(f"invalid YAML: {problem.strip()}", location) from None
    except YAMLError as error:
        raise InputError(f"invalid YAML: {error}", Location(source)) from None
    if document is None:
        needs = "`fleet` and `targets`" if kind == "fleet file" else "`name` and `compose`"
        raise InputError(f"{kind} is empty; it needs at least {needs}", Location(source, 1, 1))
    if not isinstance(document, CommentedMap):
        raise InputError(f"the top level of a {kind} must be a mapping", Location(source, 1, 1))
    return document


def to_plain(document: CommentedMap, source: Path) -> dict[str, Any]:
    """Copy ruamel's containers into plain ones, refusing alias-amplified documents.

    Aliases can also nest deeper than the text does (`a2: &a2 [*a1]`, and so on), so the depth
    is limited here too.
    """
    count = 0

    def plain(node: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_NODES:
            raise InputError(
                f"state file expands to more than {_MAX_NODES} nodes (alias bomb?)",
                Location(source),
            )
        if isinstance(node, (CommentedMap, CommentedSeq)) and depth > _MAX_DEPTH:
            raise InputError(
                f"state file has nesting deeper than {_MAX_DEPTH} levels once aliases are expanded",
                Location(source, node.lc.line + 1, node.lc.col + 1),
            )
        if isinstance(node, CommentedMap):
            return {
                str(key) if not isinstance(key, str) else key: plain(v, depth + 1)
                for key, v in node.items()
            }
        if isinstance(node, CommentedSeq):
            return [plain(item, depth + 1) for item in node]
        if isinstance(node, str):
            return str(node)  # ruamel's ScalarString subclasses -> str, for strict validation
        return node

    result: dict[str, Any] = plain(document, 1)
    return result


def without_extensions(plain: dict[str, Any]) -> dict[str, Any]:
    """`plain` without its top-level `x-` keys: extension fields, as compose has them, that
    hold anchors for `<<` merges and aliases elsewhere in the file (their content is checked
    where it is used)."""
    return {key: value for key, value in plain.items() if not key.startswith(EXTENSION_PREFIX)}


def node_position(
    document: CommentedMap, loc: Sequence[int | str], *, key: bool
) -> tuple[int, int] | None:
    """1-based line and column of the node at `loc` (its key when `key`).

    Falls back to the nearest existing parent when `loc` is not in the document.
    """
    node: Any = document
    best: tuple[int, int] | None = (document.lc.line + 1, document.lc.col + 1)
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        holder = _holder(node, part) if isinstance(node, CommentedMap) else None
        if holder is not None:
            line, column = holder.lc.key(part) if (key and last) else holder.lc.value(part)
            best = (line + 1, column + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.lc.item(part)
            best = (line + 1, column + 1)
            node = node[part]
        else:
            break
    return best


def _holder(node: CommentedMap, key: object) -> CommentedMap | None:
    """The mapping whose text holds `node[key]`: `node` for its own keys, else the mapping a
    `<<` merge brought the key from (None when `node` has no such key).

    Merged keys are copies that keep no position of their own; their source is searched in
    YAML's precedence order (own keys, then each merged mapping in turn, its own merges first),
    without recursion, since merges may chain as long as the merge budget allows.
    """
    if key not in node:
        return None
    todo: list[CommentedMap] = [node]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if key in (current.lc.data or {}):
            return current
        todo.extend(reversed(list(getattr(current, merge_attrib, None) or ())))
    return None


def yaml_key_position(text: str, loc: Sequence[int | str], *, source: Path) -> tuple[int, int]:
    """1-based line and column of the key at `loc` in the YAML document `text` (of the
    nearest existing parent when `loc` is not in it): for errors about other tools' files,
    such as a compose file a loader rejects. Best effort: (1, 1) when the state loader's own
    limits (merges, depth) refuse `text`, so that the other tool's error is the one shown."""
    try:
        document = parse_document(text, source)
    except InputError:
        return (1, 1)
    return node_position(document, loc, key=True) or (1, 1)


@functools.cache
def _known_keys() -> tuple[str, ...]:
    """Every key some model of a state file accepts (for "did you mean" hints)."""
    schema = State.model_json_schema(by_alias=True)
    models = [schema, *schema.get("$defs", {}).values()]
    return tuple(sorted({key for model in models for key in model.get("properties", {})}))


def _describe(error: ErrorDetails, known: Sequence[str]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def validation_error(
    error: ValidationError,
    document: CommentedMap,
    source: Path,
    known: Sequence[str] | None = None,
) -> InputError:
    """The validation errors as one InputError at the first one's file:line:column and key;
    `known`: the keys for "did you mean" hints (default: every key of a state file)."""
    known = _known_keys() if known is None else known
    lines: list[tuple[Location, str]] = []
    for item in error.errors(include_url=False):
        loc = [part for part in item["loc"] if part != "[key]"]
        is_key = item["type"] == "extra_forbidden" or "[key]" in item["loc"]
        line, column = node_position(document, loc, key=is_key) or (None, None)
        key_path = ".".join(str(part) for part in loc) or "<top level>"
        lines.append((Location(source, line, column, key_path), _describe(item, known)))
    first_location, first_message = lines[0]
    more = "".join(f"\n  {location}: {message}" for location, message in lines[1:])
    return InputError(first_message + more, first_location)


def _checked(resolved: Path, location: Location, must: str | None, root: Path | None) -> Path:
    """`resolved`, inside `root` (None: anywhere) and existing as `must` says."""
    if root is not None and not resolved.is_relative_to(root):
        raise InputError(
            f"{resolved} is outside the state's root {root}; "
            "set `allow_outside_root: true` to allow it",
            location,
        )
    if must == "file" and not resolved.is_file():
        raise InputError(f"{resolved} does not exist or is not a file", location)
    if must == "dir" and not resolved.is_dir():
        raise InputError(f"{resolved} does not exist or is not a directory", location)
    if must == "writable file":
        _check_writable_target(resolved, location)
    return resolved


def _check_writable_target(resolved: Path, location: Location) -> None:
    """A `files:` target: not a directory, in a directory that exists, a regular file if any."""
    if resolved.is_dir():
        raise InputError(f"{resolved} is a directory, not a file", location)
    if not resolved.parent.is_dir():
        raise InputError(
            f"the directory {resolved.parent} does not exist; reconciler creates "
            "files, not directories",
            location,
        )
    kind = _existing_kind(resolved)
    if kind not in (None, "regular file"):
        raise InputError(f"{resolved} is a {kind}; reconciler manages regular files only", location)


def _existing_kind(path: Path) -> str | None:
    """The type of file at `path` (symlinks followed), None when nothing is there."""
    try:
        return file_kind(os.stat(path).st_mode)
    except OSError:
        return None


def _resolve_paths(state: State, document: CommentedMap, source: Path) -> State:
    root = find_root(source)

    def resolve(
        path: Path, loc: list[str | int], *, must: str | None = None, key: bool = False
    ) -> Path:
        """`path` against the state's directory, inside the root, existing as `must` says."""
        line, column = node_position(document, loc, key=key) or (None, None)
        location = Location(source, line, column, ".".join(str(part) for part in loc))
        try:
            return _checked(
                (source.parent / path).resolve(),
                location,
                must,
                None if state.allow_outside_root else root,
            )
        except RuntimeError as error:  # a symlink loop (pathlib raises it before 3.13)
            raise InputError(f"cannot resolve {path}: symlink loop ({error})", location) from None
        except ValueError:  # os functions refuse an embedded NUL
            raise InputError("the path contains a NUL byte", location) from None
        except OSError as error:  # ENAMETOOLONG and the like, from the checks' stat calls
            raise InputError(f"cannot use {path}: {error.strerror}", location) from None

    compose_file = resolve(state.compose.file, ["compose", "file"], must="file")
    env_files = [
        resolve(path, ["compose", "env_files", index], must="file")
        for index, path in enumerate(state.compose.env_files)
    ]
    compose = state.compose.model_copy(update={"file": compose_file, "env_files": env_files})
    images = {}
    for ref, spec in state.images.items():
        if spec.build is not None:
            context = resolve(spec.build.context, ["images", ref, "build", "context"], must="dir")
            dockerfile = (
                resolve(spec.build.dockerfile, ["images", ref, "build", "dockerfile"], must="file")
                if spec.build.dockerfile is not None
                else resolve(
                    spec.build.context / "Dockerfile",
                    ["images", ref, "build", "context"],
                    must="file",
                )
            )
            build = spec.build.model_copy(update={"context": context, "dockerfile": dockerfile})
            images[ref] = spec.model_copy(update={"build": build})
        else:
            images[ref] = spec
    wheelhouses = {}
    for directory, wheelhouse in state.wheelhouses.items():
        target = resolve(Path(directory), ["wheelhouses", directory])
        requirements = [
            resolve(path, ["wheelhouses", directory, "requirements", index], must="file")
            for index, path in enumerate(wheelhouse.requirements)
        ]
        wheelhouses[str(target)] = wheelhouse.model_copy(update={"requirements": requirements})
    secrets = {
        name: spec.model_copy(
            update={"file": resolve(spec.file, ["secrets", name, "file"], must="file")}
        )
        if spec.file is not None
        else spec
        for name, spec in state.secrets.items()
    }
    checks = []
    for index, check in enumerate(state.checks):
        if check.command is not None:
            loc: list[str | int] = ["checks", index, "command"]
            base = check.command.cwd or Path()
            cwd = resolve(base, [*loc, "cwd"] if check.command.cwd else loc, must="dir")
            junit = (
                resolve(base / check.command.junit, [*loc, "junit"])
                if check.command.junit is not None
                else None
            )
            command = check.command.model_copy(update={"cwd": cwd, "junit": junit})
            check = check.model_copy(update={"command": command})  # noqa: PLW2901
        checks.append(check)
    files = _resolve_files(state, document, source, compose_file, resolve)
    _check_environment(state, document, source)
    _check_registries(state, document, source)
    _check_mode(state, document, source)
    _check_compare(state, document, source)
    resolved = state.model_copy(
        update={
            "compose": compose,
            "images": images,
            "wheelhouses": wheelhouses,
            "files": files,
            "secrets": secrets,
            "checks": checks,
        }
    )
    return resolved.located(source.resolve(), root, _key_positions(document))


def _check_environment(state: State, document: CommentedMap, source: Path) -> None:
    """Environment pins are written as compose reads them: no interpolation in them (yet)."""
    for name, spec in state.services.items():
        for key, value in spec.environment.items():
            if _INTERPOLATION.search(value):
                loc: list[str | int] = ["services", name, "environment", key]
                line, column = node_position(document, loc, key=False) or (None, None)
                raise InputError(
                    f"the value {value!r} uses compose interpolation ($VAR or ${{VAR}}), which "
                    "environment pins do not support yet; write $$ for a literal $",
                    Location(source, line, column, ".".join(str(part) for part in loc)),
                )


def _check_compare(state: State, document: CommentedMap, source: Path) -> None:
    """The latency and error-rate requirements name HTTP checks of this state that sample, and
    the Prometheus ones name `prometheus` checks."""
    if state.compare is None:
        return
    sampled = {c.name for c in state.checks if c.http is not None and c.http.sample is not None}
    read = {c.name for c in state.checks if c.prometheus is not None}
    wanted = {
        "latency_p95_increase_pct": (sampled, "HTTP check of this state with `http.sample`"),
        "error_rate_max": (sampled, "HTTP check of this state with `http.sample`"),
        "prometheus_increase_pct": (read, "`prometheus` check of this state"),
    }
    for key, (names, kind) in wanted.items():
        for name in getattr(state.compare, key):
            if name not in names:
                loc: list[str | int] = ["compare", key, name]
                line, column = node_position(document, loc, key=True) or (None, None)
                raise InputError(
                    f"{name!r} is no {kind}: the requirement is judged on what such a check "
                    "measures",
                    Location(source, line, column, ".".join(str(part) for part in loc)),
                )


def _check_mode(state: State, document: CommentedMap, source: Path) -> None:
    """Keys of one `compose.mode` used with the other: `docker stack deploy` neither reads env
    files nor knows profiles; `prune` is a stack deploy option."""

    def where(loc: list[str | int]) -> Location:
        line, column = node_position(document, loc, key=True) or (None, None)
        return Location(source, line, column, ".".join(str(part) for part in loc))

    compose = state.compose
    if compose.mode == "swarm":
        if compose.profiles:
            raise InputError(
                "`compose.profiles` is for compose mode: docker stack deploy ignores profiles "
                "and would deploy every service; remove it, or the services left out, for "
                "`mode: swarm`",
                where(["compose", "profiles"]),
            )
        if compose.env_files:
            raise InputError(
                "`compose.env_files` is for compose mode: docker stack deploy reads no env "
                "files for interpolation (only its process environment and the state's "
                "`secrets:`); remove it for `mode: swarm`",
                where(["compose", "env_files"]),
            )
    elif compose.prune:
        raise InputError(
            "`compose.prune` is a stack deploy option: it needs `compose.mode: swarm`",
            where(["compose", "prune"]),
        )


def _check_registries(state: State, document: CommentedMap, source: Path) -> None:
    """A registry's `password_secret` names a state secret; `pull: digest` and `always` need a
    tag to follow (a reference pinned by digest never moves)."""

    def where(loc: list[str | int], *, key: bool = False) -> Location:
        line, column = node_position(document, loc, key=key) or (None, None)
        return Location(source, line, column, ".".join(str(part) for part in loc))

    for host, spec in state.registries.items():
        if spec.password_secret not in state.secrets:
            known = ", ".join(sorted(state.secrets)) or "none"
            raise InputError(
                f"password_secret {spec.password_secret!r} is not a key of `secrets:` "
                f"(the state's secrets: {known})",
                where(["registries", host, "password_secret"]),
            )
    for reference, image in state.images.items():
        if image.pull != "missing" and "@" in reference:
            raise InputError(
                f"`pull: {image.pull}` follows a tag, but {reference} is pinned by digest and "
                "never moves; drop `pull` or name a tag",
                where(["images", reference, "pull"]),
            )


def _resolve_files(
    state: State,
    document: CommentedMap,
    source: Path,
    compose_file: Path,
    resolve: Callable[..., Path],
) -> dict[str, FileSpec]:
    """`files:` keyed by absolute path, each inside the root, its kind known and supported."""
    files: dict[str, FileSpec] = {}
    for name, spec in state.files.items():
        loc: list[str | int] = ["files", name]
        line, column = node_position(document, loc, key=True) or (None, None)
        location = Location(source, line, column, f"files.{name}")
        target = resolve(Path(name), loc, must="writable file", key=True)
        if target == compose_file:
            raise InputError(
                "this is the compose file: pin its images and environment under `services`",
                location,
            )
        if str(target) in files:
            raise InputError(f"{target} is listed twice under `files`", location)
        kind = file_format(target, spec)
        if kind is None:
            raise InputError(
                "cannot tell the file's format from its name; add `format: yaml` or "
                "`format: dotenv`",
                location,
            )
        if kind == "dotenv":
            _check_dotenv_spec(spec, target, document, name, source, location)
        elif spec.absent is not None:
            raise InputError(
                f"`absent` is for dotenv files; {target.name} is edited as {kind}", location
            )
        for dotted in (spec.values or {}) if kind == "yaml" else {}:
            try:
                parse_path(dotted)
            except ValueError as error:
                at = node_position(document, [*loc, "set", dotted], key=True) or (None, None)
                where = Location(source, at[0], at[1], f"files.{name}.set.{dotted}")
                raise InputError(str(error), where) from None
        if spec.source is not None:
            origin = resolve(spec.source, [*loc, "source"], must="file")
            spec = spec.model_copy(update={"source": origin})  # noqa: PLW2901
        files[str(target)] = spec
    return files


def _check_dotenv_spec(  # noqa: PLR0917 - private, one call site
    spec: FileSpec,
    target: Path,
    document: CommentedMap,
    name: str,
    source: Path,
    location: Location,
) -> None:
    """A dotenv entry edits an existing file's keys, with string values."""
    if not target.is_file():
        raise InputError(
            f"{target} does not exist: `set`/`absent` edit an existing dotenv file (give its "
            "whole `content` to create it)",
            location,
        )
    if spec.mode is not None:
        raise InputError(
            "`mode` is not supported with dotenv `set`/`absent` (yet); give the whole "
            "`content` to set a mode",
            location,
        )
    for key, value in (spec.values or {}).items():
        at = node_position(document, ["files", name, "set", key], key=True) or (None, None)
        where = Location(source, at[0], at[1], f"files.{name}.set.{key}")
        if not _DOTENV_KEY.fullmatch(key):
            raise InputError(f"{key!r} is not a dotenv variable name", where)
        if not isinstance(value, str):
            raise InputError(
                f"dotenv values are strings: quote {value!r} (YAML read it as "
                f"{type(value).__name__})",
                where,
            )


def _key_positions(document: CommentedMap) -> dict[str, tuple[int, int]]:
    """1-based (line, column) of every mapping key, by dotted path, for later errors."""
    positions: dict[str, tuple[int, int]] = {}

    def walk(node: CommentedMap, prefix: str) -> None:
        for key in node:
            path = f"{prefix}{key}"
            holder = _holder(node, key)
            if holder is None:
                continue
            line, column = holder.lc.key(key)
            positions[path] = (line + 1, column + 1)
            if isinstance(node[key], CommentedMap):
                walk(node[key], path + ".")

    walk(document, "")
    return positions
