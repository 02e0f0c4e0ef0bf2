"""Read a state file: YAML (ruamel, keeping positions) -> plain data -> pydantic `State`.

Every problem becomes an `InputError` naming file:line:column and the key path, raised before
anything is changed. Relative paths resolve against the state file's directory and must stay
inside the state's root unless the state says `allow_outside_root: true`.
"""

from __future__ import annotations

import difflib
import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
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
from reconciler.state.model import State

__all__ = ["decode_utf8", "find_root", "load_state"]

# Aliases make a small file expand into a huge object graph (the "billion laughs"); a state
# file has tens of nodes, so a generous cap stops that without limiting real use.
_MAX_NODES = 100_000
_MAX_BYTES = 1_000_000
# ruamel's composer and our own walks recurse once or twice per level, so a deeply nested
# file (`[[[[...` a few thousand times) would exhaust Python's stack. A state file nests about
# five levels; anything past this is refused before a single node is composed.
_MAX_DEPTH = 100


def load_state(path: str | Path) -> State:
    """Load and validate the state file at `path`; raise `InputError` on any problem."""
    source = Path(path)
    text = _read_text(source)
    try:
        document = _parse(text, source)
        plain = _to_plain(document, source)
        try:
            state = State.model_validate(plain)
        except ValidationError as error:
            raise _input_error(error, document, source) from None
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


def _read_text(source: Path) -> str:
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise InputError("state file not found", Location(source)) from None
    except OSError as error:
        raise InputError(f"cannot read state file: {error.strerror}", Location(source)) from None
    if len(raw) > _MAX_BYTES:
        raise InputError(
            f"state file is {len(raw)} bytes; the limit is {_MAX_BYTES}", Location(source)
        )
    return decode_utf8(raw, source)


def decode_utf8(raw: bytes, source: Path) -> str:
    """`raw` as text; a byte that is not UTF-8 is an InputError at its line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise InputError(
            f"not UTF-8: byte 0x{raw[error.start]:02x} cannot be decoded",
            Location(source, line, column),
        ) from None


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


def _parse(text: str, source: Path) -> CommentedMap:
    yaml = YAML(typ="rt")
    yaml.Parser = _DepthLimitedParser
    yaml.allow_duplicate_keys = False
    try:
        document = yaml.load(text)
    except _TooDeep as error:
        raise InputError(
            f"state file has nesting deeper than {_MAX_DEPTH} levels",
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
        raise InputError(
            "state file is empty; it needs at least `name` and `compose`", Location(source, 1, 1)
        )
    if not isinstance(document, CommentedMap):
        raise InputError("the top level of a state file must be a mapping", Location(source, 1, 1))
    return document


def _to_plain(document: CommentedMap, source: Path) -> dict[str, Any]:
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


def _position(
    document: CommentedMap, loc: Sequence[int | str], *, key: bool
) -> tuple[int, int] | None:
    """1-based line and column of the node at `loc` (its key when `key`).

    Falls back to the nearest existing parent when `loc` is not in the document.
    """
    node: Any = document
    best: tuple[int, int] | None = (document.lc.line + 1, document.lc.col + 1)
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            line, column = node.lc.key(part) if (key and last) else node.lc.value(part)
            best = (line + 1, column + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.lc.item(part)
            best = (line + 1, column + 1)
            node = node[part]
        else:
            break
    return best


@functools.cache
def _known_keys() -> tuple[str, ...]:
    """Every key some model of a state file accepts (for "did you mean" hints)."""
    schema = State.model_json_schema(by_alias=True)
    models = [schema, *schema.get("$defs", {}).values()]
    return tuple(sorted({key for model in models for key in model.get("properties", {})}))


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(), n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _input_error(error: ValidationError, document: CommentedMap, source: Path) -> InputError:
    lines: list[tuple[Location, str]] = []
    for item in error.errors(include_url=False):
        loc = [part for part in item["loc"] if part != "[key]"]
        is_key = item["type"] == "extra_forbidden" or "[key]" in item["loc"]
        line, column = _position(document, loc, key=is_key) or (None, None)
        key_path = ".".join(str(part) for part in loc) or "<top level>"
        lines.append((Location(source, line, column, key_path), _describe(item)))
    first_location, first_message = lines[0]
    more = "".join(f"\n  {location}: {message}" for location, message in lines[1:])
    return InputError(first_message + more, first_location)


def _resolve_paths(state: State, document: CommentedMap, source: Path) -> State:
    root = find_root(source)

    def resolve(path: Path, loc: list[str | int], *, must: str | None = None) -> Path:
        """`path` against the state's directory, inside the root, existing as `must` says."""
        resolved = (source.parent / path).resolve()
        line, column = _position(document, loc, key=False) or (None, None)
        location = Location(source, line, column, ".".join(str(part) for part in loc))
        if not state.allow_outside_root and not resolved.is_relative_to(root):
            raise InputError(
                f"{resolved} is outside the state's root {root}; "
                "set `allow_outside_root: true` to allow it",
                location,
            )
        if must == "file" and not resolved.is_file():
            raise InputError(f"{resolved} does not exist or is not a file", location)
        if must == "dir" and not resolved.is_dir():
            raise InputError(f"{resolved} does not exist or is not a directory", location)
        return resolved

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
    files = {}
    for name, file_spec in state.files.items():
        target = resolve(Path(name), ["files", name], must="file")
        if str(target) in files:
            raise InputError(
                f"{target} is listed twice under `files:`", _location(document, source, name)
            )
        if file_spec.kind(target) is None:
            raise InputError(
                f"cannot tell the format of {target.name} from its name; add `format: dotenv`",
                _location(document, source, name),
            )
        files[str(target)] = file_spec
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
    resolved = state.model_copy(
        update={
            "compose": compose,
            "images": images,
            "wheelhouses": wheelhouses,
            "files": files,
            "checks": checks,
        }
    )
    return resolved.located(source.resolve(), root, _key_positions(document))


def _location(document: CommentedMap, source: Path, name: str) -> Location:
    """Where the key of `files.<name>` sits."""
    line, column = _position(document, ["files", name], key=True) or (None, None)
    return Location(source, line, column, f"files.{name}")


def _key_positions(document: CommentedMap) -> dict[str, tuple[int, int]]:
    """1-based (line, column) of every mapping key, by dotted path, for later errors."""
    positions: dict[str, tuple[int, int]] = {}

    def walk(node: CommentedMap, prefix: str) -> None:
        for key in node:
            path = f"{prefix}{key}"
            line, column = node.lc.key(key)
            positions[path] = (line + 1, column + 1)
            if isinstance(node[key], CommentedMap):
                walk(node[key], path + ".")

    walk(document, "")
    return positions
