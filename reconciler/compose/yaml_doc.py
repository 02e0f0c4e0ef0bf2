"""The byte-preserving YAML engine both compose editors share.

`edit` (service images) and `yaml_set` (any mapping path) change a YAML file the same way:
parse it into a small tree of `Node`s that keeps every node's exact character offsets (which
ruamel's own composer drops), plan each change as a `Splice` (a range of the original text and
what replaces it), apply the splices, then re-parse the result and check that it means exactly
the old data except where the change was meant to land. Every byte outside the splices is
kept: comments, quoting, indentation, line endings, anchors. Why a splice over event marks and
not a load/dump round trip: DESIGN.md section 7.

This module holds what both editors use:
- parsing: `parse` into a `Doc` of `Node`s (libyaml when installed, else `pure_yaml`),
  `compose`, `event_streams`, and `depth_guard`, `MAX_DEPTH` and `TooDeep` against hostile
  nesting;
- reading the tree: `deref`, `is_null`, `is_key`, `is_merge_key`, `merge_sources`,
  `loads_as_str`, `node_at`, `key_path`, `check_duplicates`;
- writing: `render` and `plain_problem` (a value in a quoting style that loads back exactly),
  `properties`, `content_end`, `line_start`, `default_eol`, and the splices themselves:
  `Splice`, `scalar_splice`, `lines_after`, `apply_splices`;
- verification: `must_still_parse`, `node_data`, `changes_besides`.

Pure text in, text out; nothing here reads or writes files.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    "ALIAS",
    "LIBYAML_PARSER",
    "MAP",
    "MAX_DEPTH",
    "RESOLVERS",
    "SCALAR",
    "SEQ",
    "STR_TAG",
    "Doc",
    "Node",
    "Splice",
    "TooDeep",
    "apply_splices",
    "changes_besides",
    "check_duplicates",
    "compose",
    "content_end",
    "default_eol",
    "depth_guard",
    "deref",
    "event_streams",
    "is_key",
    "is_merge_key",
    "is_null",
    "key_path",
    "line_start",
    "lines_after",
    "loads_as_str",
    "merge_sources",
    "must_still_parse",
    "node_at",
    "node_data",
    "parse",
    "plain_problem",
    "properties",
    "pure_yaml",
    "render",
    "scalar_splice",
]


def _find_libyaml() -> Any:
    # libyaml (the optional ruamel.yaml.clib wheel) parses about 20x faster but only YAML 1.1.
    try:
        cyaml = importlib.import_module("ruamel.yaml.cyaml")
    except ImportError:
        return None
    return cyaml.CParser


# libyaml's parser class; None means pure Python only (tests set it to None for that path).
LIBYAML_PARSER: Any = _find_libyaml()

# Reading and checking an edit walk the tree recursively (as do ruamel's own composers), so a
# file nesting a few thousand levels deep (`[[[[...`, or aliases and `<<` merges chained a few
# thousand times) would exhaust Python's stack. Compose files nest under ten levels; anything
# past this is refused as bad input, the text's nesting before any tree is built. Read it as
# `yaml_doc.MAX_DEPTH` (tests lift it).
MAX_DEPTH = 100
STR_TAG = "tag:yaml.org,2002:str"
_NULL_VALUES = frozenset({"", "~", "null", "Null", "NULL"})
# A line break of any of the three kinds a file may use.
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
# The resolvers of YAML 1.1 (libyaml, PyYAML) and 1.2 (ruamel, compose), with their version:
# a plain value must load as the same type under both.
RESOLVERS = (
    (VersionedResolver(version=(1, 1)), "1.1"),
    (VersionedResolver(version=(1, 2)), "1.2"),
)


# --- a minimal composer over parser events, keeping exact character offsets -----------------

# Node kinds.
SCALAR, MAP, SEQ, ALIAS = range(4)


class Node:
    """One node of a parsed YAML text, at its exact character offsets.

    `kind` is SCALAR, MAP, SEQ or ALIAS; `start`..`end` cover its anchor and tag too, like the
    event marks. A mapping's `items` are key, value, key, value...; an alias has its anchored
    node as `target`, and that node lists its aliases in `users`. Ruamel's own composer resolves
    aliases into the anchored node and drops their positions; the editors need both the alias
    token's range and the anchor's users, hence this small tree.
    """

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
        self.items: list[Node] = []  # mapping: key, value, key, value...
        self.target: Node | None = None
        self.users: list[Node] = []  # alias nodes that refer to this node

    def pairs(self) -> Iterator[tuple[Node, Node]]:
        """A mapping's (key, value) pairs, in file order."""
        items = self.items
        return zip(items[0::2], items[1::2], strict=True)


@dataclass
class Doc:
    """A parsed text: its `root` node (None for an empty document) and which parser built it."""

    text: str
    root: Node | None
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
        """The Location of a character offset in `source`, naming `key` when given."""
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


class TooDeep(Exception):
    """Nesting past `MAX_DEPTH` at character offset `index`; `how` finishes the message."""

    def __init__(self, index: int, how: str = "") -> None:
        self.index = index
        self.how = how


@contextlib.contextmanager
def depth_guard(text: str, source: Path, what: str) -> Iterator[None]:
    """Turn nesting past the limit, or (a last resort) a RecursionError, into an InputError.

    `what` names the kind of file in messages ("compose file", "YAML file"...). Every entry
    point of an editor runs inside one.
    """
    try:
        yield
    except TooDeep as exc:
        raise InputError(
            f"the {what} has nesting deeper than {MAX_DEPTH} levels{exc.how}",
            Doc(text, None, "").location(source, exc.index),
        ) from None
    except RecursionError:
        raise InputError(
            f"the {what} nests too deeply to process (Python's recursion limit was reached)",
            Location(file=source),
        ) from None


def _new_node(event: Any, kind: type, offset: int, anchors: dict[str, Node]) -> Node:
    start = event.start_mark.index + offset
    end = event.end_mark.index + offset
    if kind is AliasEvent:
        target = anchors.get(event.anchor)
        if target is None:
            raise _UndefinedAlias(event.anchor, start)
        node = Node(ALIAS, start, end)
        node.value = event.anchor
        node.target = target
        node.height = target.height
        target.users.append(node)
        return node
    if kind is ScalarEvent:
        node = Node(SCALAR, start, end)
        node.value = event.value
        node.style = event.style or None  # libyaml says "" for plain, the pure parser None
    else:
        node = Node(MAP if kind is MappingStartEvent else SEQ, start, end)
        node.flow = bool(event.flow_style)
    node.tag = event.tag
    if event.anchor is not None:
        node.anchor = event.anchor
        anchors[event.anchor] = node  # a later anchor of the same name shadows this one
    return node


def _refuse_recursion(node: Node, stack: list[Node]) -> None:
    """An alias to a collection still open around it (`a: &x {<<: *x}`) is refused."""
    if node.kind == ALIAS and any(node.target is open_node for open_node in stack):
        raise _RecursiveAlias(str(node.value), node.start)


_NODE_EVENTS = (ScalarEvent, MappingStartEvent, SequenceStartEvent, AliasEvent)


def compose(events: Iterable[Any], offset: int) -> Node | None:
    """The event stream as a Node tree; raises TooDeep as soon as nesting passes the limit:
    in the text (the open collections), or once aliases and merges are expanded (heights)."""
    root: Node | None = None
    stack: list[Node] = []
    anchors: dict[str, Node] = {}
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
            if node.kind in (MAP, SEQ):
                stack.append(node)
                if len(stack) > MAX_DEPTH:
                    raise TooDeep(node.start)
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            done = stack.pop()
            done.end = event.end_mark.index + offset
            done.height += 1
            if done.height > MAX_DEPTH:
                raise TooDeep(done.start, " once aliases and '<<' merges are expanded")
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


def pure_yaml() -> YAML:
    """ruamel's pure-Python safe parser, with tabs that separate tokens accepted."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Scanner = _TabTolerantScanner
    return yaml


def event_streams(text: str) -> Iterator[tuple[Iterator[Event], int]]:
    """The text's YAML events from each parser in turn, libyaml first (when installed), then
    the pure parser, with the offset to add to their marks (libyaml's do not count a leading
    BOM). A caller moves on to the next stream when one fails."""
    if LIBYAML_PARSER is not None:
        yield _libyaml_events(text), 1 if text.startswith("\ufeff") else 0
    yield pure_yaml().parse(text), 0


def _libyaml_events(text: str) -> Iterator[Event]:
    parser = LIBYAML_PARSER(text)
    try:
        while True:
            event = parser.get_event()
            yield event
            if isinstance(event, StreamEndEvent):
                return
    finally:
        parser.dispose()


def parse(text: str, source: Path, what: str = "YAML file") -> Doc:
    """Parse one YAML document into a Node tree, with libyaml when it can, else pure Python.

    YAML errors, several documents and undefined or recursive aliases are InputErrors located
    in `source` (`what` names the kind of file); nesting past MAX_DEPTH raises TooDeep, which
    `depth_guard` turns into an InputError.
    """
    if LIBYAML_PARSER is not None:
        # libyaml's marks do not count a leading BOM; every offset after it is one short.
        offset = 1 if text.startswith("\ufeff") else 0
        # libyaml follows YAML 1.1 and rejects files compose accepts (`[8080:8080]`); on any
        # failure the pure parser is the authority, and reports the real error if there is one.
        with contextlib.suppress(Exception):
            return Doc(text, compose(_libyaml_events(text), offset), "libyaml")
    doc = Doc(text, None, "pure")
    try:
        doc.root = compose(pure_yaml().parse(text), 0)
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


# --- reading -----------------------------------------------------------------------------------


def deref(node: Node) -> Node:
    """The node an alias refers to; any other node itself."""
    return node.target if node.target is not None else node


def is_null(node: Node) -> bool:
    """Whether the node is a scalar that loads as null (`~`, `null`, empty, or tagged so)."""
    if node.kind != SCALAR:
        return False
    if node.tag == "tag:yaml.org,2002:null":
        return True
    return node.tag is None and node.style is None and node.value in _NULL_VALUES


def is_merge_key(node: Node) -> bool:
    """Whether the node is a `<<` merge key."""
    return (
        node.kind == SCALAR
        and node.value == "<<"
        and node.style is None
        and node.tag in (None, "tag:yaml.org,2002:merge")
    )


def is_key(node: Node, name: str) -> bool:
    """Whether the node is the mapping key `name` (a merge key never is)."""
    return node.kind == SCALAR and node.value == name and not is_merge_key(node)


def merge_sources(mapping: Node) -> Iterator[tuple[Node, Node]]:
    """(merge key, merged mapping) pairs, in the precedence order YAML gives them."""
    for key, value in mapping.pairs():
        if is_merge_key(key):
            target = deref(value)
            sources = target.items if target.kind == SEQ else [target]
            for source in sources:
                merged = deref(source)
                if merged.kind == MAP:
                    yield key, merged


def loads_as_str(node: Node) -> str | None:
    """The string a scalar loads as under YAML 1.2, or None when it loads as something else."""
    if node.kind != SCALAR:
        return None
    if node.tag is not None:
        return node.value if node.tag == STR_TAG else None
    if node.style is not None:
        return node.value
    return node.value if _resolves_to_str(node.value)[0] else None


def _resolves_to_str(value: str) -> tuple[bool, str]:
    for resolver, version in RESOLVERS:
        tag = str(resolver.resolve(ScalarNode, value, (True, False)))
        if tag != STR_TAG:
            kind = tag.rsplit(":", 1)[-1]
            return False, f"a plain {value!r} would load as {kind} under YAML {version}"
    return True, ""


def key_path(prefix: str, key: Node) -> str:
    """The dotted path `prefix.key` of a mapping key (`?` for a key that is no scalar)."""
    name = key.value if key.kind == SCALAR else "?"
    return f"{prefix}.{name}" if prefix else name


def check_duplicates(root: Node, doc: Doc, source: Path, why: str) -> None:
    """Refuse duplicate mapping keys anywhere, as compose does (`why` says whose rule)."""
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if node.kind == MAP:
            seen: dict[str, Node] = {}
            for key, value in node.pairs():
                child = key_path(path, key)
                if key.kind == SCALAR:
                    first = seen.get(key.value)
                    if first is not None:
                        line, _ = doc.line_col(first.start)
                        raise InputError(
                            f"duplicate key {key.value!r} (first defined on line {line}); {why}",
                            doc.location(source, key.start, child),
                        )
                    seen[key.value] = key
                stack.append((value, child))
                if key.kind != SCALAR:
                    stack.append((key, child))
        elif node.kind == SEQ:
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.items))


# --- rendering ---------------------------------------------------------------------------------


def plain_problem(value: str, *, in_flow: bool) -> str:
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


def render(value: str, style: str | None, *, in_flow: bool) -> tuple[str, str]:
    """The new value written in `style` where that is exact; returns (text, note)."""
    if style == '"':
        return _double_quoted(value), ""
    if _NEEDS_ESCAPE.search(value):
        return _double_quoted(value), "double-quoted: the value has control characters"
    if style == "'":
        return _single_quoted(value), ""
    problem = plain_problem(value, in_flow=in_flow)
    if problem:
        return _single_quoted(value), f"single-quoted: {problem}"
    return value, ""


# --- splicing ----------------------------------------------------------------------------------


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


def properties(text: str, node: Node) -> tuple[int, int]:
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


def content_end(text: str, node: Node) -> int:
    """Last content offset of a node; block collections' and block scalars' end marks run on
    past trailing blank lines into the next line."""
    if node.kind in (MAP, SEQ) and not node.flow:
        return content_end(text, node.items[-1]) if node.items else node.start
    if node.kind == SCALAR and node.style in ("|", ">"):
        return len(text[: node.end].rstrip(" \t\r\n"))
    return node.end


def default_eol(text: str) -> str:
    """The text's first line break, the one new lines use ("\\n" when it has none)."""
    match = _EOL.search(text)
    return match.group() if match else "\n"


def line_start(text: str, index: int) -> int:
    """Offset of the start of the line holding `index`."""
    return max(text.rfind("\n", 0, index), text.rfind("\r", 0, index)) + 1


@dataclass(frozen=True)
class Splice:
    """One change to a text: `text[start:end]` becomes `new` (an insertion when equal)."""

    start: int
    end: int
    new: str


def apply_splices(text: str, splices: Iterable[Splice], source: Path) -> str:
    """The text with every splice made, each over the original offsets; overlapping splices
    are a bug, refused as an InputError that changes nothing."""
    pieces: list[str] = []
    cursor = 0
    for splice in sorted(splices, key=lambda splice: splice.start):
        if splice.start < cursor:
            raise InputError(
                "internal error: two edits overlap; nothing was changed", Location(file=source)
            )
        pieces += [text[cursor : splice.start], splice.new]
        cursor = splice.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def scalar_splice(
    text: str, key: Node, value: Node, write: Callable[[str | None, bool], tuple[str, str]]
) -> tuple[Splice, str]:
    """The splice writing a new value over the scalar (or alias) `value` of mapping key `key`,
    and a note on how it was written.

    `write(style, in_flow)` renders the new value, in the old value's quoting style where that
    is exact, and returns (text, note). An alias token becomes the value (its anchor stays);
    an empty value is written right after the `:` (or after its anchor or tag), since libyaml
    and the pure parser mark it in different places. Policy: a block scalar becomes a
    single-line value over exactly its header and content lines; the header's comment and the
    lines after the content stay.
    """
    if value.kind == ALIAS:
        target = deref(value)
        rendered, note = write(target.style if target.style in ("'", '"') else None, value.in_flow)
        return Splice(value.start, value.end, rendered), note
    props_end, start = properties(text, value)
    if value.style is None and value.value == "" and start >= value.end:
        at = props_end if props_end >= 0 else text.index(":", content_end(text, key)) + 1
        rendered, note = write(None, value.in_flow)
        return Splice(at, at, " " + rendered), note
    if value.style in ("|", ">"):
        header = re.compile(r"[|>][-+0-9]*").match(text, start)
        assert header is not None
        header_end = _EOL.search(text, header.end())
        rest_end = header_end.start() if header_end else len(text)
        rendered, note = write(None, False)
        note = "; ".join(filter(None, ["block scalar replaced by a one-line value", note]))
        end = max(rest_end, content_end(text, value))
        return Splice(start, end, rendered + text[header.end() : rest_end]), note
    rendered, note = write(value.style, value.in_flow)
    return Splice(start, value.end, rendered), note


def lines_after(text: str, index: int, lines: Sequence[str]) -> Splice:
    """The splice adding `lines` after the line holding `index`, each ended by the text's own
    line break; after a last line that has none, one goes before them instead."""
    found = _line_break_after(text, index)
    if found is None:
        eol = default_eol(text)
        return Splice(len(text), len(text), "".join(eol + line for line in lines))
    at, eol = found
    return Splice(at, at, "".join(line + eol for line in lines))


# --- verification ------------------------------------------------------------------------------
#
# The check re-parses the edited text and builds the data each file means: aliases expanded,
# `<<` merges applied as YAML defines them. Scalars stay as written (plain text, or quoted
# text, or tag and text) instead of being resolved to typed values: that is stricter than
# comparing loaded values, and about four times faster than ruamel's safe loader on a
# 10k-line file. Each editor also checks that the edited values load as intended.


@contextlib.contextmanager
def must_still_parse(source: Path) -> Iterator[None]:
    """Around the re-parse of an edited text: an InputError there is the editor's bug, said as
    such, and nothing is written."""
    try:
        yield
    except InputError as exc:
        raise InputError(
            f"internal error: the edited file no longer parses ({exc}); nothing was changed",
            Location(file=source),
        ) from exc


def node_at(root: Node, path: Sequence[str]) -> Node | None:
    """The value at a path of mapping keys (through aliases), or None where it stops."""
    node = root
    for key in path:
        node = deref(node)
        if node.kind != MAP:
            return None
        found = next((v for k, v in node.pairs() if is_key(k, key)), None)
        if found is None:
            return None
        node = found
    return node


def _data_key(node: Node, depth: int) -> Any:
    if node.kind == SCALAR:
        return node.value if node.tag in (None, STR_TAG) else (node.tag, node.value)
    return _freeze(node_data(node, set(), depth))


def _freeze(data: Any) -> Any:
    if isinstance(data, dict):
        return tuple(sorted(((repr(k), _freeze(v)) for k, v in data.items()), key=repr))
    if isinstance(data, list):
        return tuple(_freeze(item) for item in data)
    return data


def node_data(node: Node, active: set[int] | None = None, depth: int = 1) -> Any:
    """What a node means, with aliases expanded into fresh copies and merges applied: dicts,
    lists, and scalars as (how written, text) pairs.

    `active` holds the collections being expanded (a guard against recursion); `depth` counts
    them (and merges): aliases can nest far deeper than the text does, so it has its own limit.
    """
    node = deref(node)
    if node.kind == SCALAR:
        if node.tag is not None:
            return (node.tag, node.value)
        return ("plain" if node.style is None else "str", node.value)
    active = set() if active is None else active
    if id(node) in active:
        raise InputError("the compose file has recursive aliases; refusing to edit it")
    if depth > MAX_DEPTH:
        raise TooDeep(node.start, " once aliases and '<<' merges are expanded")
    active.add(id(node))
    if node.kind == SEQ:
        result: Any = [node_data(item, active, depth + 1) for item in node.items]
    else:
        result = {}
        for _key, merged in reversed(list(merge_sources(node))):
            result.update(node_data(merged, active, depth + 1))  # earlier sources win: go last
        for key, value in node.pairs():
            if not is_merge_key(key):
                result[_data_key(key, depth + 1)] = node_data(value, active, depth + 1)
    active.discard(id(node))
    return result


def changes_besides(want: Any, got: Any, paths: Iterable[Sequence[str]]) -> list[str]:
    """The dotted paths (five at most) where `got` differs from `want`, two `node_data`
    results, once the values at `paths` (the intended edits) are left out of both."""
    for path in paths:
        _remove(want, path)
        _remove(got, path)
    wrong: list[str] = []
    _differences(want, got, "", wrong)
    return wrong


def _remove(data: Any, path: Sequence[str]) -> None:
    """Remove the value at `path` from `data` (when it is there)."""
    node = data
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


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
