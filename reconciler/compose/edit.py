"""Read service images from a compose file and pin them by splicing the original text.

Pure text in, text out: callers decide the pins and write the result atomically. Why this is a
splice over ruamel's event marks and not a load/dump round trip: DESIGN.md section 7.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scanner import Scanner

from reconciler.errors import InputError, Location

__all__ = [
    "EditResult",
    "ImageEdit",
    "ServiceImage",
    "event_streams",
    "pin_images",
    "read_services",
]


def _find_libyaml() -> Any:
    # libyaml (the optional ruamel.yaml.clib wheel) parses about 20x faster but only YAML 1.1.
    try:
        cyaml = importlib.import_module("ruamel.yaml.cyaml")
    except ImportError:
        return None
    return cyaml.CParser


# None means pure Python only; tests set it to None to exercise that path.
_CParser: Any = _find_libyaml()

# Reading and checking an edit walk the tree recursively (as do ruamel's own composers), so a
# file nesting a few thousand levels deep (`[[[[...`, or aliases and `<<` merges chained a few
# thousand times) would exhaust Python's stack. Compose files nest under ten levels; anything
# past this is refused as bad input, the text's nesting before any tree is built.
_MAX_DEPTH = 100
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_VALUES = frozenset({"", "~", "null", "Null", "NULL"})
_EOL = re.compile(r"\r\n|\r|\n")
_LINE_END = "\n\0\r\x85\u2028\u2029"  # what ruamel's scanner takes for a line end
# Characters a single-quoted or plain scalar cannot carry unchanged (line breaks fold, the
# rest is not printable in YAML); such values are written double-quoted with escapes.
_NEEDS_ESCAPE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]"
)
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW_UNSAFE = frozenset(",[]{}:")
_NAMED_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\x00": "\\0",
    "\x07": "\\a",
    "\x08": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\x0b": "\\v",
    "\x0c": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
}
_RESOLVERS = (
    (VersionedResolver(version=(1, 1)), "1.1"),
    (VersionedResolver(version=(1, 2)), "1.2"),
)


@dataclass(frozen=True)
class ServiceImage:
    """One service's image as the compose file states it.

    `image` is the value in effect for the service: its own `image` key, or, when it has none,
    the one a `<<:` merge provides (then `inherited` is True). None when no image is set or it
    is null (a build-only service).
    """

    service: str
    image: str | None
    inherited: bool
    line: int
    column: int


@dataclass(frozen=True)
class ImageEdit:
    """One change pin_images made; `how` is one of replaced, inserted, replaced-alias,
    override-merge, and `note` says anything else worth logging (such as added quotes)."""

    service: str
    before: str | None
    after: str
    how: str
    note: str = ""


@dataclass(frozen=True)
class EditResult:
    """The edited text and the edits made; no edits means `text` is the input, unchanged."""

    text: str
    edits: tuple[ImageEdit, ...]


# --- a minimal composer over parser events, keeping exact character offsets -----------------

_SCALAR, _MAP, _SEQ, _ALIAS = range(4)


class _Node:
    # Ruamel's own composer resolves aliases into the anchored node and drops their positions;
    # we need both the alias token's range and the anchor's users, hence this small tree.
    __slots__ = (
        "anchor",
        "end",
        "flow",
        "height",
        "in_flow",
        "items",
        "kind",
        "start",
        "style",
        "tag",
        "target",
        "users",
        "value",
    )

    def __init__(self, kind: int, start: int, end: int) -> None:
        self.kind = kind
        self.start = start  # covers anchor and tag, like the event marks
        self.end = end
        self.value = ""
        self.style: str | None = None
        self.anchor: str | None = None
        self.tag: str | None = None
        self.flow = False
        self.in_flow = False
        # Levels of collections this node means once aliases and merges are expanded (while
        # a collection is open: the most its children have so far).
        self.height = 0
        self.items: list[_Node] = []  # mapping: key, value, key, value...
        self.target: _Node | None = None
        self.users: list[_Node] = []  # alias nodes that refer to this node

    def pairs(self) -> Iterator[tuple[_Node, _Node]]:
        items = self.items
        return zip(items[0::2], items[1::2], strict=True)


@dataclass
class _Doc:
    text: str
    root: _Node | None
    parser: str  # which parser built the tree, "libyaml" or "pure"
    _starts: list[int] | None = field(default=None, repr=False)

    def line_col(self, index: int) -> tuple[int, int]:
        """1-based line and column of a character offset (a leading BOM takes no column)."""
        if self._starts is None:
            self._starts = [0, *(m.end() for m in _EOL.finditer(self.text))]
        row = bisect_right(self._starts, index) - 1
        column = index - self._starts[row] + 1
        if row == 0 and index > 0 and self.text.startswith("\ufeff"):
            column -= 1
        return row + 1, column

    def location(self, source: Path, index: int, key: str | None = None) -> Location:
        line, column = self.line_col(index)
        return Location(file=source, line=line, column=column, key=key)


class _MultipleDocuments(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


class _UndefinedAlias(Exception):
    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index


class _RecursiveAlias(_UndefinedAlias):
    """An alias inside the very node its anchor names (`a: &x {<<: *x}`): endless when
    expanded; compose's own loader spins on it forever."""


class _TooDeep(Exception):
    """Nesting past `_MAX_DEPTH` at character offset `index`; `how` finishes the message."""

    def __init__(self, index: int, how: str = "") -> None:
        self.index = index
        self.how = how


@contextlib.contextmanager
def _depth_guard(text: str, source: Path, what: str = "compose file") -> Iterator[None]:
    """Turn nesting past the limit, or (a last resort) a RecursionError, into an InputError.

    `what` names the kind of file in messages (the `files:` editor reuses this for any YAML).
    """
    try:
        yield
    except _TooDeep as exc:
        raise InputError(
            f"the {what} has nesting deeper than {_MAX_DEPTH} levels{exc.how}",
            _Doc(text, None, "").location(source, exc.index),
        ) from None
    except RecursionError:
        raise InputError(
            f"the {what} nests too deeply to process (Python's recursion limit was reached)",
            Location(file=source),
        ) from None


def _new_node(event: Any, kind: type, offset: int, anchors: dict[str, _Node]) -> _Node:
    start = event.start_mark.index + offset
    end = event.end_mark.index + offset
    if kind is AliasEvent:
        target = anchors.get(event.anchor)
        if target is None:
            raise _UndefinedAlias(event.anchor, start)
        node = _Node(_ALIAS, start, end)
        node.value = event.anchor
        node.target = target
        node.height = target.height
        target.users.append(node)
        return node
    if kind is ScalarEvent:
        node = _Node(_SCALAR, start, end)
        node.value = event.value
        node.style = event.style or None  # libyaml says "" for plain, the pure parser None
    else:
        node = _Node(_MAP if kind is MappingStartEvent else _SEQ, start, end)
        node.flow = bool(event.flow_style)
    node.tag = event.tag
    if event.anchor is not None:
        node.anchor = event.anchor
        anchors[event.anchor] = node  # a later anchor of the same name shadows this one
    return node


def _refuse_recursion(node: _Node, stack: list[_Node]) -> None:
    """An alias to a collection still open around it (`a: &x {<<: *x}`) is refused."""
    if node.kind == _ALIAS and any(node.target is open_node for open_node in stack):
        raise _RecursiveAlias(str(node.value), node.start)


_NODE_EVENTS = (ScalarEvent, MappingStartEvent, SequenceStartEvent, AliasEvent)


def _compose(events: Iterable[Any], offset: int) -> _Node | None:
    """The event stream as a _Node tree; raises _TooDeep as soon as nesting passes the limit:
    in the text (the open collections), or once aliases and merges are expanded (heights)."""
    root: _Node | None = None
    stack: list[_Node] = []
    anchors: dict[str, _Node] = {}
    documents = 0
    for event in events:
        kind = type(event)
        if kind in _NODE_EVENTS:
            node = _new_node(event, kind, offset, anchors)
            _refuse_recursion(node, stack)
            if stack:
                parent = stack[-1]
                parent.items.append(node)
                node.in_flow = parent.flow or parent.in_flow
                if kind is AliasEvent:  # it means its target, as deep as that goes
                    parent.height = max(parent.height, node.height)
            else:
                root = node
            if node.kind in (_MAP, _SEQ):
                stack.append(node)
                if len(stack) > _MAX_DEPTH:
                    raise _TooDeep(node.start)
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            done = stack.pop()
            done.end = event.end_mark.index + offset
            done.height += 1
            if done.height > _MAX_DEPTH:
                raise _TooDeep(done.start, " once aliases and '<<' merges are expanded")
            if stack and done.height > stack[-1].height:
                stack[-1].height = done.height
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _MultipleDocuments(event.start_mark.index + offset)
    return root


class _TabTolerantScanner(Scanner):
    """ruamel's pure scanner rejects any tab between tokens in block context; YAML 1.2,
    libyaml and compose accept one after content on a line (`image: x\t# pinned`). Only that
    is relaxed: a tab used as indentation is still an error."""

    def scan_to_next_token(self) -> None:
        reader = self.reader
        if reader.index == 0 and reader.peek() == "\ufeff":
            reader.forward()
        while True:
            char = reader.peek()
            while char == " " or (char == "\t" and self._tab_separates()):
                reader.forward()
                char = reader.peek()
            if char == "#":
                while reader.peek() not in _LINE_END:
                    reader.forward()
            if not self.scan_line_break():
                return
            if not self.flow_level:
                self.allow_simple_key = True

    def _tab_separates(self) -> bool:
        if self.flow_level:
            return True
        reader = self.reader
        if reader.buffer[reader.pointer - reader.column : reader.pointer].strip(" \t"):
            return True  # content precedes the tab on this line: it separates, not indents
        ahead = 1
        while reader.peek(ahead) in " \t":
            ahead += 1
        return bool(reader.peek(ahead) in _LINE_END or reader.peek(ahead) == "#")


def _pure_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.Scanner = _TabTolerantScanner
    return yaml


def event_streams(text: str) -> Iterator[tuple[Iterator[Event], int]]:
    """The text's YAML events from each parser in turn, libyaml first (when installed), then
    the pure parser, with the offset to add to their marks (libyaml's do not count a leading
    BOM). A caller moves on to the next stream when one fails."""
    if _CParser is not None:
        yield _libyaml_events(text), 1 if text.startswith("\ufeff") else 0
    yield _pure_yaml().parse(text), 0


def _libyaml_events(text: str) -> Iterator[Event]:
    parser = _CParser(text)
    try:
        while True:
            event = parser.get_event()
            yield event
            if isinstance(event, StreamEndEvent):
                return
    finally:
        parser.dispose()


def _parse(text: str, source: Path, what: str = "compose file") -> _Doc:
    """Parse one YAML document into a _Node tree, with libyaml when it can, else pure Python."""
    if _CParser is not None:
        # libyaml's marks do not count a leading BOM; every offset after it is one short.
        offset = 1 if text.startswith("\ufeff") else 0
        # libyaml follows YAML 1.1 and rejects files compose accepts (`[8080:8080]`); on any
        # failure the pure parser is the authority, and reports the real error if there is one.
        with contextlib.suppress(Exception):
            return _Doc(text, _compose(_libyaml_events(text), offset), "libyaml")
    doc = _Doc(text, None, "pure")
    try:
        doc.root = _compose(_pure_yaml().parse(text), 0)
    except MarkedYAMLError as exc:
        raise _yaml_error(exc, source) from exc
    except YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", Location(file=source)) from exc
    except _MultipleDocuments as exc:
        raise InputError(
            f"the {what} holds more than one YAML document; expected exactly one",
            doc.location(source, exc.index),
        ) from None
    except _RecursiveAlias as exc:
        raise InputError(
            f"alias *{exc.name} is inside the node its anchor &{exc.name} names: it would "
            "expand without end",
            doc.location(source, exc.index),
        ) from None
    except _UndefinedAlias as exc:
        raise InputError(
            f"alias *{exc.name} refers to an anchor that is not defined before it",
            doc.location(source, exc.index),
        ) from None
    return doc


def _yaml_error(exc: MarkedYAMLError, source: Path) -> InputError:
    mark = exc.problem_mark or exc.context_mark
    parts = [str(part) for part in (exc.context, exc.problem) if part]
    message = "invalid YAML: " + ("; ".join(parts) or "cannot parse")
    if mark is None:
        return InputError(message, Location(file=source))
    # The pure reader's columns already leave a leading BOM out.
    return InputError(message, Location(file=source, line=mark.line + 1, column=mark.column + 1))


# --- reading ---------------------------------------------------------------------------------


def _deref(node: _Node) -> _Node:
    return node.target if node.target is not None else node


def _is_null(node: _Node) -> bool:
    if node.kind != _SCALAR:
        return False
    if node.tag == "tag:yaml.org,2002:null":
        return True
    return node.tag is None and node.style is None and node.value in _NULL_VALUES


def _is_merge_key(node: _Node) -> bool:
    return (
        node.kind == _SCALAR
        and node.value == "<<"
        and node.style is None
        and node.tag in (None, "tag:yaml.org,2002:merge")
    )


def _is_key(node: _Node, name: str) -> bool:
    return node.kind == _SCALAR and node.value == name and not _is_merge_key(node)


def _own_image(mapping: _Node) -> tuple[_Node, _Node] | None:
    for key, value in mapping.pairs():
        if _is_key(key, "image"):
            return key, value
    return None


def _merge_sources(mapping: _Node) -> Iterator[tuple[_Node, _Node]]:
    """(merge key, merged mapping) pairs, in the precedence order YAML gives them."""
    for key, value in mapping.pairs():
        if _is_merge_key(key):
            target = _deref(value)
            sources = target.items if target.kind == _SEQ else [target]
            for source in sources:
                merged = _deref(source)
                if merged.kind == _MAP:
                    yield key, merged


def _merged_image(mapping: _Node, seen: set[int] | None = None, depth: int = 0) -> _Node | None:
    seen = set() if seen is None else seen
    if id(mapping) in seen:
        return None
    if depth > _MAX_DEPTH:
        raise _TooDeep(mapping.start, " through chained '<<' merges")
    seen.add(id(mapping))
    for _key, merged in _merge_sources(mapping):
        own = _own_image(merged)
        if own is not None:
            return own[1]
        found = _merged_image(merged, seen, depth + 1)
        if found is not None:
            return found
    return None


def _image_value(node: _Node, doc: _Doc, source: Path, path: str) -> str | None:
    target = _deref(node)
    if target.kind != _SCALAR:
        raise InputError("image must be a string", doc.location(source, node.start, path))
    return None if _is_null(target) else target.value


def _loads_as_str(node: _Node) -> str | None:
    """The string a scalar loads as under YAML 1.2, or None when it loads as something else."""
    if node.kind != _SCALAR:
        return None
    if node.tag is not None:
        return node.value if node.tag == _STR_TAG else None
    if node.style is not None:
        return node.value
    return node.value if _resolves_to_str(node.value)[0] else None


def _resolves_to_str(value: str) -> tuple[bool, str]:
    for resolver, version in _RESOLVERS:
        tag = str(resolver.resolve(ScalarNode, value, (True, False)))
        if tag != _STR_TAG:
            kind = tag.rsplit(":", 1)[-1]
            return False, f"a plain {value!r} would load as {kind} under YAML {version}"
    return True, ""


def _key_path(prefix: str, key: _Node) -> str:
    name = key.value if key.kind == _SCALAR else "?"
    return f"{prefix}.{name}" if prefix else name


def _check_duplicates(
    root: _Node, doc: _Doc, source: Path, why: str = "compose refuses duplicate keys"
) -> None:
    """Refuse duplicate mapping keys anywhere, as compose does (`why` says whose rule)."""
    stack: list[tuple[_Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if node.kind == _MAP:
            seen: dict[str, _Node] = {}
            for key, value in node.pairs():
                child = _key_path(path, key)
                if key.kind == _SCALAR:
                    first = seen.get(key.value)
                    if first is not None:
                        line, _ = doc.line_col(first.start)
                        raise InputError(
                            f"duplicate key {key.value!r} (first defined on line {line}); {why}",
                            doc.location(source, key.start, child),
                        )
                    seen[key.value] = key
                stack.append((value, child))
                if key.kind != _SCALAR:
                    stack.append((key, child))
        elif node.kind == _SEQ:
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.items))


@dataclass
class _Services:
    doc: _Doc
    key: _Node  # the top-level `services` key
    entries: list[tuple[str, _Node, _Node]]  # name, key node, value node (maybe an alias)


def _analyse(text: str, source: Path) -> _Services:
    doc = _parse(text, source)
    root = doc.root
    if root is None:
        raise InputError(
            "the compose file is empty; expected a top-level 'services' mapping",
            Location(file=source),
        )
    if root.kind != _MAP:
        raise InputError(
            "the top level of a compose file must be a mapping", doc.location(source, root.start)
        )
    _check_duplicates(root, doc, source)
    found = next(((k, v) for k, v in root.pairs() if _is_key(k, "services")), None)
    if found is None:
        raise InputError(
            "the compose file has no top-level 'services' mapping", doc.location(source, root.start)
        )
    key, value = found
    services = _deref(value)
    if _is_null(services):
        raise InputError(
            "'services' is empty; expected a mapping of service names",
            doc.location(source, key.start, "services"),
        )
    if services.kind != _MAP:
        raise InputError(
            "'services' must be a mapping of service names to definitions",
            doc.location(source, value.start, "services"),
        )
    entries: list[tuple[str, _Node, _Node]] = []
    for name_node, body in services.pairs():
        if _is_merge_key(name_node):
            raise InputError(
                "a '<<' merge directly under 'services' is not supported",
                doc.location(source, name_node.start, "services.<<"),
            )
        if name_node.kind != _SCALAR:
            raise InputError(
                "service names must be plain strings",
                doc.location(source, name_node.start, "services"),
            )
        entries.append((name_node.value, name_node, body))
    return _Services(doc, key, entries)


def read_services(text: str, *, source: Path) -> dict[str, ServiceImage]:
    """Services of a compose file in file order.

    Raises InputError (with file, 1-based line and column, and key path) on YAML errors,
    duplicate keys anywhere in the file, a missing or invalid top-level `services` mapping, a
    service that is neither a mapping nor empty, a non-string image, several documents, or
    nesting deeper than `_MAX_DEPTH` levels.
    """
    with _depth_guard(text, source):
        return _read_services(text, source)


def _read_services(text: str, source: Path) -> dict[str, ServiceImage]:
    analysed = _analyse(text, source)
    doc = analysed.doc
    result: dict[str, ServiceImage] = {}
    for name, key, body in analysed.entries:
        line, column = doc.line_col(key.start)
        path = f"services.{name}"
        mapping = _deref(body)
        image: str | None = None
        inherited = False
        if mapping.kind == _MAP:
            own = _own_image(mapping)
            if own is not None:
                image = _image_value(own[1], doc, source, f"{path}.image")
            else:
                merged = _merged_image(mapping)
                if merged is not None:
                    image = _image_value(merged, doc, source, f"{path}.image")
                    inherited = True
        elif not _is_null(mapping):
            raise InputError("a service must be a mapping", doc.location(source, body.start, path))
        result[name] = ServiceImage(name, image, inherited, line, column)
    return result


# --- rendering -------------------------------------------------------------------------------


def _plain_problem(value: str, *, in_flow: bool) -> str:
    """Why `value` cannot be written plain and load back as the same string; "" if it can."""
    if value == "":
        return "an empty plain value loads as null"
    if value != value.strip(" \t"):
        return "leading or trailing whitespace would be lost"
    if value[0] in _INDICATORS:
        return f"a plain value cannot start with {value[0]!r}"
    if ": " in value or " #" in value or "\t#" in value or value.endswith(":"):
        return "': ' or ' #' would end a plain value"
    if in_flow and any(char in _FLOW_UNSAFE for char in value):
        # YAML 1.1 parsers (libyaml, PyYAML) reject ':' in flow plain scalars outright.
        return "',[]{}:' are not safe in a plain value inside a flow collection"
    return _resolves_to_str(value)[1]


def _single_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _double_quoted(value: str) -> str:
    out: list[str] = []
    for char in value:
        escaped = _NAMED_ESCAPES.get(char)
        if escaped is None and _NEEDS_ESCAPE.match(char):
            code = ord(char)
            escaped = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
        out.append(char if escaped is None else escaped)
    return '"' + "".join(out) + '"'


def _render(value: str, style: str | None, *, in_flow: bool) -> tuple[str, str]:
    """The new value written in `style` where that is exact; returns (text, note)."""
    if style == '"':
        return _double_quoted(value), ""
    if _NEEDS_ESCAPE.search(value):
        return _double_quoted(value), "double-quoted: the value has control characters"
    if style == "'":
        return _single_quoted(value), ""
    problem = _plain_problem(value, in_flow=in_flow)
    if problem:
        return _single_quoted(value), f"single-quoted: {problem}"
    return value, ""


# --- editing ---------------------------------------------------------------------------------


def _skip_blank(text: str, index: int, end: int) -> int:
    """Skip spaces, line breaks and comments."""
    while index < end:
        char = text[index]
        if char in " \t\r\n":
            index += 1
        elif char == "#":
            while index < end and text[index] not in "\r\n":
                index += 1
        else:
            break
    return index


def _properties(text: str, node: _Node) -> tuple[int, int]:
    """(end of the node's anchor/tag or -1 if none, start of its content): event marks include
    both."""
    index = node.start
    props_end = -1
    while index < node.end and text[index] in "&!":
        if text.startswith("!<", index):
            index = text.index(">", index) + 1
        else:
            index += 1
            while index < node.end and text[index] not in " \t\r\n,[]{}":
                index += 1
        props_end = index
        index = _skip_blank(text, index, node.end)
    return props_end, index


def _line_break_after(text: str, index: int) -> tuple[int, str] | None:
    """Offset just past the first line break at or after `index`, and that break."""
    match = _EOL.search(text, index)
    return None if match is None else (match.end(), match.group())


def _content_end(text: str, node: _Node) -> int:
    """Last content offset of a node; block collections' and block scalars' end marks run on
    past trailing blank lines into the next line."""
    if node.kind in (_MAP, _SEQ) and not node.flow:
        return _content_end(text, node.items[-1]) if node.items else node.start
    if node.kind == _SCALAR and node.style in ("|", ">"):
        return len(text[: node.end].rstrip(" \t\r\n"))
    return node.end


def _default_eol(text: str) -> str:
    match = _EOL.search(text)
    return match.group() if match else "\n"


@dataclass
class _Splice:
    start: int
    end: int
    new: str
    edit: ImageEdit


class _Planner:
    def __init__(self, analysed: _Services, source: Path) -> None:
        self.doc = analysed.doc
        self.text = analysed.doc.text
        self.source = source
        self.splices: list[_Splice] = []
        self.replaced_aliases: set[int] = set()
        self.anchored: list[tuple[str, _Node]] = []  # (service, image scalar with an anchor)

    def error(self, message: str, index: int, key: str) -> InputError:
        return InputError(message, self.doc.location(self.source, index, key))

    def plan(self, name: str, key: _Node, body: _Node, new: str) -> None:
        path = f"services.{name}"
        if body.kind == _ALIAS:
            raise self.error(
                f"service {name!r} is an alias (*{body.value}) of another mapping; editing it "
                "would change that mapping too, so give the service its own definition",
                body.start,
                path,
            )
        if _is_null(body):
            raise self.error(
                f"service {name!r} has an empty definition; there is no mapping to add an "
                "'image' key to, so write at least one key for it first",
                key.start,
                path,
            )
        if body.kind != _MAP:
            raise self.error("a service must be a mapping", body.start, path)
        own = _own_image(body)
        if own is not None:
            self._replace(name, own[0], own[1], new)
            return
        merged = _merged_image(body)
        before = None if merged is None else _image_value(merged, self.doc, self.source, path)
        if merged is not None and _loads_as_str(_deref(merged)) == new:
            return
        self._insert(name, key, body, new, before=before, merged=merged is not None)

    def _replace(self, name: str, key: _Node, value: _Node, new: str) -> None:
        path = f"services.{name}.image"
        target = _deref(value)
        if target.kind != _SCALAR:
            raise self.error("image must be a string", value.start, path)
        if _loads_as_str(target) == new:
            return
        before = None if _is_null(target) else target.value
        if value.kind == _ALIAS:
            style = target.style if target.style in ("'", '"') else None
            rendered, note = _render(new, style, in_flow=value.in_flow)
            kept = f"alias *{value.value} replaced, its anchor kept"
            note = "; ".join(filter(None, [kept, note]))
            self.replaced_aliases.add(id(value))
            self._add(
                value.start,
                value.end,
                rendered,
                ImageEdit(name, before, new, "replaced-alias", note),
            )
            return
        if value.anchor is not None:
            self.anchored.append((name, value))
        props_end, start = _properties(self.text, value)
        if value.style is None and value.value == "" and start >= value.end:
            # An empty value: libyaml and the pure parser put its marks in different places,
            # so write right after the `:` (or after the anchor/tag) instead.
            if props_end >= 0:
                at = props_end
            else:
                at = self.text.index(":", _content_end(self.text, key)) + 1
            rendered, note = _render(new, None, in_flow=value.in_flow)
            self._add(at, at, " " + rendered, ImageEdit(name, before, new, "replaced", note))
            return
        if value.style in ("|", ">"):
            # Policy: a block scalar becomes a single-line value over exactly its header and
            # content lines; the header's comment and the lines after the content stay.
            header = re.compile(r"[|>][-+0-9]*").match(self.text, start)
            assert header is not None
            header_end = _EOL.search(self.text, header.end())
            rest_end = header_end.start() if header_end else len(self.text)
            rest = self.text[header.end() : rest_end]
            rendered, note = _render(new, None, in_flow=False)
            note = "; ".join(filter(None, ["block scalar replaced by a one-line value", note]))
            self._add(
                start,
                max(rest_end, _content_end(self.text, value)),
                rendered + rest,
                ImageEdit(name, before, new, "replaced", note),
            )
            return
        rendered, note = _render(new, value.style, in_flow=value.in_flow)
        self._add(start, value.end, rendered, ImageEdit(name, before, new, "replaced", note))

    def _insert(
        self, name: str, key: _Node, body: _Node, new: str, *, before: str | None, merged: bool
    ) -> None:
        path = f"services.{name}"
        how = "override-merge" if merged else "inserted"
        note = "own image overrides the one merged in with '<<'" if merged else ""
        if body.flow:
            rendered, quote_note = _render(new, None, in_flow=True)
            note = "; ".join(filter(None, [note, quote_note]))
            _, brace = _properties(self.text, body)
            if self.text[brace] != "{":
                raise self.error(f"cannot find the '{{' of service {name!r}", body.start, path)
            at = brace + 1
            blank = at
            while blank < body.end and self.text[blank] == " ":
                blank += 1
            if not body.items:
                entry, at = f"image: {rendered}" + (" " if blank > at else ""), blank
            elif self.text[blank] in "\r\n":
                entry = f" image: {rendered},"
            else:
                entry, at = f"image: {rendered}, ", blank
            self._add(at, at, entry, ImageEdit(name, before, new, how, note))
            return
        rendered, quote_note = _render(new, None, in_flow=False)
        note = "; ".join(filter(None, [note, quote_note]))
        first = body.items[0]
        line_start = self.text.rfind("\n", 0, first.start) + 1
        line_start = max(line_start, self.text.rfind("\r", 0, first.start) + 1)
        indent = self.text[line_start : first.start]
        if indent.strip(" \t"):
            raise self.error(
                f"cannot tell the indentation of service {name!r} (its first key does not "
                "start its line); add the image key by hand",
                first.start,
                path,
            )
        # Policy: the new key goes on its own line right after the last `<<:` entry (so it
        # reads as an override and no naive last-wins merge can undo it), else right after the
        # service key's line; comments and blank lines stay where they are.
        after = max(key.end, _properties(self.text, body)[0])
        for merge_key, merge_value in body.pairs():
            if _is_merge_key(merge_key):
                after = max(after, _content_end(self.text, merge_value))
        found = _line_break_after(self.text, after)
        if found is None:  # the merge line is the last one and has no line break
            at, eol = len(self.text), _default_eol(self.text)
            entry = f"{eol}{indent}image: {rendered}"
        else:
            at, eol = found
            entry = f"{indent}image: {rendered}{eol}"
        self._add(at, at, entry, ImageEdit(name, before, new, how, note))

    def _add(self, start: int, end: int, new: str, edit: ImageEdit) -> None:
        self.splices.append(_Splice(start, end, new, edit))

    def check_anchors(self) -> None:
        """Refuse to edit an anchored image that other places still use through an alias."""
        for name, value in self.anchored:
            users = [user for user in value.users if id(user) not in self.replaced_aliases]
            if not users:
                continue
            root = self.doc.root
            assert root is not None
            where = ", ".join(
                f"{path} (line {self.doc.line_col(user.start)[0]})"
                for path, user in _alias_paths(root, users)
            )
            raise self.error(
                f"the image of service {name!r} carries the anchor &{value.anchor}, which is "
                f"also used by {where}; editing it would change those too. Pin those services "
                "as well, or give this service its own image value",
                value.start,
                f"services.{name}.image",
            )


def _alias_paths(root: _Node, users: list[_Node]) -> list[tuple[str, _Node]]:
    wanted = {id(user) for user in users}
    found: list[tuple[str, _Node]] = []
    stack: list[tuple[_Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in wanted:
            found.append((path or "<root>", node))
        if node.kind == _MAP:
            stack.extend((value, _key_path(path, key)) for key, value in node.pairs())
        elif node.kind == _SEQ:
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.items))
    return sorted(found, key=lambda pair: pair[1].start)


def pin_images(text: str, pins: Mapping[str, str], *, source: Path) -> EditResult:
    """Return the text with each services.<name>.image set to pins[name], changing nothing else.

    Every byte outside the replaced values (or the inserted `image:` lines) is kept. The result
    is re-parsed and checked: if anything but the pinned images would change, InputError.
    """
    with _depth_guard(text, source):
        return _pin_images(text, pins, source)


def _pin_images(text: str, pins: Mapping[str, str], source: Path) -> EditResult:
    analysed = _analyse(text, source)
    doc = analysed.doc
    names = [name for name, _, _ in analysed.entries]
    by_name = {name: (key, body) for name, key, body in analysed.entries}
    for name, new in pins.items():
        if name not in by_name:
            listed = ", ".join(names) if names else "none"
            raise InputError(
                f"service {name!r} is not defined in the compose file (services: {listed})",
                doc.location(source, analysed.key.start, "services"),
            )
        if not isinstance(new, str):
            raise InputError(f"the image for service {name!r} must be a string, got {new!r}")
    planner = _Planner(analysed, source)
    for name in names:  # file order, so edits are reported in the order a reader meets them
        if name in pins:
            key, body = by_name[name]
            planner.plan(name, key, body, pins[name])
    planner.check_anchors()
    if not planner.splices:
        return EditResult(text, ())
    splices = sorted(planner.splices, key=lambda splice: splice.start)
    pieces: list[str] = []
    cursor = 0
    for splice in splices:
        if splice.start < cursor:  # a bug guard: each edit lives inside its own service
            raise InputError(
                "internal error: two image edits overlap; nothing was changed",
                Location(file=source),
            )
        pieces += [text[cursor : splice.start], splice.new]
        cursor = splice.end
    pieces.append(text[cursor:])
    new_text = "".join(pieces)
    edits = tuple(splice.edit for splice in splices)
    _verify(doc, new_text, edits, source)
    return EditResult(new_text, edits)


# --- verification ----------------------------------------------------------------------------
#
# The check re-parses the edited text and builds the data each file means: aliases expanded,
# `<<` merges applied as YAML defines them. Scalars stay as written (plain text, or quoted
# text, or tag and text) instead of being resolved to typed values: that is stricter than
# comparing loaded values, and about four times faster than ruamel's safe loader on a
# 10k-line file. The edited images themselves are checked to load as the exact new strings
# under YAML 1.1 and 1.2.


def _data_key(node: _Node, depth: int) -> Any:
    if node.kind == _SCALAR:
        return node.value if node.tag in (None, _STR_TAG) else (node.tag, node.value)
    return _freeze(_data(node, set(), depth))


def _freeze(data: Any) -> Any:
    if isinstance(data, dict):
        return tuple(sorted(((repr(k), _freeze(v)) for k, v in data.items()), key=repr))
    if isinstance(data, list):
        return tuple(_freeze(item) for item in data)
    return data


def _data(node: _Node, active: set[int], depth: int = 1) -> Any:
    """What a node means, with aliases expanded into fresh copies and merges applied.

    `depth` counts the collections (and merges) being expanded: aliases can nest far deeper
    than the text does, so it has its own limit.
    """
    node = _deref(node)
    if node.kind == _SCALAR:
        if node.tag is not None:
            return (node.tag, node.value)
        return ("plain" if node.style is None else "str", node.value)
    if id(node) in active:
        raise InputError("the compose file has recursive aliases; refusing to edit it")
    if depth > _MAX_DEPTH:
        raise _TooDeep(node.start, " once aliases and '<<' merges are expanded")
    active.add(id(node))
    if node.kind == _SEQ:
        result: Any = [_data(item, active, depth + 1) for item in node.items]
    else:
        result = {}
        for _key, merged in reversed(list(_merge_sources(node))):
            result.update(_data(merged, active, depth + 1))  # earlier sources win: go last
        for key, value in node.pairs():
            if not _is_merge_key(key):
                result[_data_key(key, depth + 1)] = _data(value, active, depth + 1)
    active.discard(id(node))
    return result


def _differences(want: Any, got: Any, path: str, out: list[str]) -> None:
    if len(out) >= 5:
        return
    if type(want) is not type(got):
        out.append(path or "<root>")
    elif isinstance(want, dict):
        for key in sorted(want.keys() | got.keys(), key=repr):
            child = f"{path}.{key}" if path else str(key)
            if key not in want or key not in got:
                out.append(child)
            else:
                _differences(want[key], got[key], child, out)
    elif isinstance(want, list):
        if len(want) != len(got):
            out.append(path)
        for i, (a, b) in enumerate(zip(want, got, strict=False)):
            _differences(a, b, f"{path}[{i}]", out)
    elif want != got:
        out.append(path)


def _services_data(doc: _Doc) -> dict[Any, Any]:
    assert doc.root is not None  # _analyse refused an empty file
    data = _data(doc.root, set())
    assert isinstance(data, dict)  # _analyse checked both are mappings
    assert isinstance(data.get("services"), dict)
    return data


def _verify(old_doc: _Doc, new: str, edits: tuple[ImageEdit, ...], source: Path) -> None:
    """Re-parse the result and check that exactly the intended images changed."""
    try:
        analysed = _analyse(new, source)
    except InputError as exc:
        raise InputError(
            f"internal error: the edited file no longer parses ({exc}); nothing was changed",
            Location(file=source),
        ) from exc
    bodies = {name: body for name, _, body in analysed.entries}
    for edit in edits:
        own = _own_image(_deref(bodies[edit.service]))
        value = None if own is None else _deref(own[1])
        if (
            value is None
            or _loads_as_str(value) != edit.after
            or (value.style is None and _plain_problem(edit.after, in_flow=value.in_flow))
        ):
            raise InputError(
                f"internal error: the new image of service {edit.service!r} would "
                "not load as the intended string; nothing was changed",
                Location(file=source, key=f"services.{edit.service}.image"),
            )
    want = _services_data(old_doc)
    got = _services_data(analysed.doc)
    for edit in edits:  # checked above; everything else must be exactly as it was
        want["services"][edit.service].pop("image", None)
        got["services"][edit.service].pop("image", None)
    wrong: list[str] = []
    _differences(want, got, "", wrong)
    if wrong:
        raise InputError(
            f"pinning would also change {', '.join(wrong)}: the edited value is shared through "
            "an anchor, alias or '<<' merge. Pin those services too, or give them their own "
            "image; nothing was changed",
            Location(file=source, key=wrong[0]),
        )
