"""Set scalar values at mapping paths of any YAML file, and compose environment entries.

The same engine as `edit.py` (`yaml_doc`), reached by a path instead of a service's image:
its event tree with exact offsets, its renderer and its re-parse check. Each value is one
splice into the original text (a replaced scalar, or new lines in the file's own indentation,
line ending and quoting); the result is parsed again and must mean exactly the old data with
only that path changed. Pure text in, text out: the compose-file step decides and writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode

from reconciler.compose.edit import analyse
from reconciler.compose.yaml_doc import (
    ALIAS,
    MAP,
    RESOLVERS,
    SCALAR,
    SEQ,
    STR_TAG,
    Doc,
    Node,
    Splice,
    apply_splices,
    changes_besides,
    check_duplicates,
    content_end,
    default_eol,
    depth_guard,
    deref,
    is_key,
    is_null,
    line_start,
    lines_after,
    loads_as_str,
    merge_sources,
    must_still_parse,
    node_at,
    node_data,
    parse,
    plain_problem,
    properties,
    render,
    scalar_splice,
)
from reconciler.errors import InputError, Location
from reconciler.state.paths import INTERPOLATION as _INTERPOLATION
from reconciler.state.paths import YamlPath, format_path, parse_path

__all__ = [
    "Scalar",
    "SetResult",
    "ValueEdit",
    "format_path",
    "parse_path",
    "pin_environment",
    "set_values",
]

Scalar = str | int | float | bool

_YAML_FILE = "YAML file"
_DECIMAL = re.compile(r"0|-?[1-9][0-9]{0,17}")
_DUPLICATES = "duplicate keys make the file ambiguous"


@dataclass(frozen=True)
class ValueEdit:
    """One value set: `before` as the file wrote it (None when absent or null), `after` as it
    now reads; `how` is replaced, inserted or created (the key and its missing parents)."""

    path: YamlPath
    before: str | None
    after: str
    how: str
    note: str = ""


@dataclass(frozen=True)
class SetResult:
    """The edited text, the edits made, and the paths already at their value."""

    text: str
    edits: tuple[ValueEdit, ...]
    same: tuple[YamlPath, ...]


# --- values ------------------------------------------------------------------------------------

_CONSTRUCTOR = YAML(typ="safe", pure=True).constructor
_NOT_A_SCALAR = object()


def _loaded(node: Node) -> object:
    """What a scalar loads as under YAML 1.2 (a private marker for anything else)."""
    node = deref(node)
    if node.kind != SCALAR:
        return _NOT_A_SCALAR
    if node.style is not None and node.tag is None:
        return node.value
    tag = node.tag
    if tag is None:
        tag = str(RESOLVERS[1][0].resolve(ScalarNode, node.value, (True, False)))
    if not tag.startswith("tag:yaml.org,2002:"):
        return _NOT_A_SCALAR
    try:
        return _CONSTRUCTOR.construct_object(ScalarNode(tag, node.value), deep=True)
    except Exception:  # a tag that does not fit its text (`!!int abc`): never equal
        return _NOT_A_SCALAR


def _same(node: Node, value: Scalar) -> bool:
    loaded = _loaded(node)
    return type(loaded) is type(value) and loaded == value


def _written(value: Scalar) -> str:
    """A non-string value as YAML writes it plain."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
    return repr(value)


def _rendered(value: Scalar, style: str | None, *, in_flow: bool) -> tuple[str, str]:
    if isinstance(value, str):
        return render(value, style, in_flow=in_flow)
    return _written(value), ""


def _shown(value: Scalar) -> str:
    return value if isinstance(value, str) else _written(value)


def _before(node: Node) -> str | None:
    target = deref(node)
    if target.kind != SCALAR or is_null(target):
        return None
    return target.value


# --- the editor --------------------------------------------------------------------------------


def _indent_step(doc: Doc) -> int:
    """How far the file indents a block mapping nested in another (2 when it never does)."""
    text = doc.text
    stack = [doc.root] if doc.root is not None else []
    while stack:
        node = stack.pop()
        if node.kind != MAP or node.flow or not node.items:
            continue
        outer = node.items[0].start - line_start(text, node.items[0].start)
        for _key, value in node.pairs():
            if value.kind == MAP and not value.flow and value.items:
                first = value.items[0].start
                inner = first - line_start(text, first)
                if inner > outer and not text[line_start(text, first) : first].strip(" "):
                    return inner - outer
            stack.append(value)
    return 2


class _Editor:
    """Plans one edit against one parsed text; `error` locates problems in it."""

    def __init__(self, text: str, source: Path, what: str) -> None:
        self.text = text
        self.source = source
        self.what = what
        self.doc = parse(text, source, what)
        root = self.doc.root
        if root is None or is_null(root):
            raise InputError(f"the {what} is empty; there is no mapping to set keys in", self.at(0))
        if root.kind != MAP:
            raise InputError(f"the top level of the {what} must be a mapping", self.at(root.start))
        check_duplicates(root, self.doc, source, _DUPLICATES)
        self.root = root

    def at(self, index: int, key: str | None = None) -> Location:
        return self.doc.location(self.source, index, key)

    def error(self, message: str, index: int, path: YamlPath) -> InputError:
        return InputError(message, self.at(index, format_path(path) or None))

    def lookup(self, mapping: Node, key: str) -> tuple[Node, Node] | None:
        for key_node, value in mapping.pairs():
            if is_key(key_node, key):
                return key_node, value
        return None

    def check_shared(self, node: Node, path: YamlPath) -> None:
        """Refuse to edit through an anchored node that aliases elsewhere also use."""
        if node.anchor is not None and node.users:
            lines = ", ".join(str(self.doc.line_col(user.start)[0]) for user in node.users)
            raise self.error(
                f"{format_path(path) or 'the top level'} carries the anchor &{node.anchor}, "
                f"which is also used by aliases on line(s) {lines}; editing it would change "
                "those too",
                node.start,
                path,
            )

    def container(self, node: Node, path: YamlPath) -> Node:
        """The mapping at `path` (node is its value), or a located refusal saying what it is."""
        where = format_path(path)
        if node.kind == ALIAS:
            raise self.error(
                f"{where} is an alias (*{node.value}); editing through it would change the "
                "anchored mapping it refers to",
                node.start,
                path,
            )
        self.check_shared(node, path)
        if node.kind == SEQ:
            raise self.error(
                f"the path goes through a sequence at {where}; only mapping keys can be set",
                node.start,
                path,
            )
        if node.kind == SCALAR:
            what = "empty (null)" if is_null(node) else "a scalar"
            raise self.error(
                f"{where} is {what}, not a mapping; the path cannot go through it",
                node.start,
                path,
            )
        return node

    def check_ambiguous(self, mapping: Node, path: YamlPath, depth: int) -> None:
        """Refuse a dotted path that could also mean a key holding dots at this level."""
        for end in range(depth + 2, len(path) + 1):
            parts = path[depth:end]
            if any("." in part for part in parts):
                break
            joined = ".".join(parts)
            found = self.lookup(mapping, joined)
            if found is not None:
                quoted = format_path((*path[:depth], joined, *path[end:]))
                raise self.error(
                    f"the path {format_path(path)} is ambiguous: the file has a key {joined!r}"
                    f" here; write {quoted} to mean that key",
                    found[0].start,
                    path[:depth],
                )

    def walk(self, path: YamlPath) -> tuple[Node, int, tuple[Node, Node] | None]:
        """(deepest mapping reached, how many keys of `path` it consumed, the final key and
        value when all exist)."""
        mapping = self.container(self.root, ())
        for depth, key in enumerate(path):
            self.check_ambiguous(mapping, path, depth)
            found = self.lookup(mapping, key)
            if found is None:
                self.check_merged(mapping, path, depth)
                return mapping, depth, None
            if depth == len(path) - 1:
                return mapping, depth, found
            mapping = self.container(found[1], path[: depth + 1])
        raise AssertionError("unreachable: an empty path")

    def check_merged(self, mapping: Node, path: YamlPath, depth: int) -> None:
        """A missing intermediate key that a `<<` merge provides cannot be edited in place."""
        if depth == len(path) - 1:
            return  # the final key: an own key overrides the merged one
        for merge_key, merged in merge_sources(mapping):
            if self.lookup(merged, path[depth]) is not None:
                raise self.error(
                    f"{format_path(path[: depth + 1])} comes from a '<<' merge; editing it "
                    "would change the merged mapping for every user. Give this mapping its own "
                    f"{path[depth]!r} key first",
                    merge_key.start,
                    path[: depth + 1],
                )

    def replace(self, key: Node, value: Node, new: Scalar, path: YamlPath) -> Splice:
        """The splice writing `new` over an existing scalar value, in its own quoting style."""
        target = deref(value)
        if target.kind != SCALAR:
            kind = "a mapping" if target.kind == MAP else "a sequence"
            raise self.error(
                f"{format_path(path)} is {kind}; only scalar values can be set",
                value.start,
                path,
            )
        if value.kind != ALIAS:  # an alias token becomes the value; its anchor stays
            self.check_shared(value, path)
            if value.tag is not None and not (value.tag == STR_TAG and isinstance(new, str)):
                raise self.error(
                    f"{format_path(path)} has an explicit tag {value.tag}; set it by hand",
                    value.start,
                    path,
                )
        splice, _ = scalar_splice(
            self.text, key, value, lambda style, in_flow: _rendered(new, style, in_flow=in_flow)
        )
        return splice

    def sibling_style(self, mapping: Node) -> str | None:
        """The quote style of the mapping's last scalar value, for a new value to follow."""
        for _key, value in reversed(list(mapping.pairs())):
            if value.kind == SCALAR and not is_null(value):
                return value.style if value.style in ("'", '"') else None
        return None

    def insert(
        self, mapping: Node, tail: YamlPath, value: Callable[[bool], str], path: YamlPath
    ) -> Splice:
        """The splice adding `tail` (missing keys, then the value) to `mapping`; `value(in_flow)`
        renders the value for a flow or a block context."""
        text = self.text
        if mapping.flow:
            entry = _flow_entry(tail, value(True))
            _, brace = properties(text, mapping)
            if text[brace] != "{":
                raise self.error("cannot find the '{' of this mapping", mapping.start, path)
            at = brace + 1
            blank = at
            while blank < mapping.end and text[blank] == " ":
                blank += 1
            if not mapping.items:
                return Splice(blank, blank, entry + (" " if blank > at else ""))
            last = mapping.items[-1]
            return Splice(last.end, last.end, f", {entry}")
        first = mapping.items[0]
        indent = text[line_start(text, first.start) : first.start]
        if indent.strip(" "):
            raise self.error(
                "cannot tell this mapping's indentation (its first key does not start its "
                "line); add the key by hand",
                first.start,
                path,
            )
        step = " " * _indent_step(self.doc)
        lines = _block_lines(tail, value(False), indent, step)
        return lines_after(text, content_end(text, mapping), lines)


def _key_text(key: str, *, in_flow: bool) -> str:
    rendered, _ = render(key, None, in_flow=in_flow)
    if rendered == key and (":" in key or "#" in key):
        return render(key, "'", in_flow=in_flow)[0]
    return rendered


def _flow_entry(tail: YamlPath, rendered: str) -> str:
    entry = f"{_key_text(tail[-1], in_flow=True)}: {rendered}"
    for key in reversed(tail[:-1]):
        entry = f"{_key_text(key, in_flow=True)}: {{{entry}}}"
    return entry


def _block_lines(tail: YamlPath, rendered: str, indent: str, step: str) -> list[str]:
    lines = [
        f"{indent}{step * depth}{_key_text(key, in_flow=False)}:"
        for depth, key in enumerate(tail[:-1])
    ]
    last = _key_text(tail[-1], in_flow=False)
    if rendered.startswith(("\n", "\r")):  # a block value on the lines below
        lines.append(f"{indent}{step * (len(tail) - 1)}{last}:{rendered}")
    else:
        lines.append(f"{indent}{step * (len(tail) - 1)}{last}: {rendered}")
    return lines


def _scalar_value(new: Scalar, style: str | None) -> Callable[[bool], str]:
    return lambda in_flow: _rendered(new, style, in_flow=in_flow)[0]


# --- verification ------------------------------------------------------------------------------


def _cut(data: Any, path: YamlPath) -> YamlPath:
    """The part of `path` an edit replaces: up to its first key missing from `data`."""
    node = data
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            return path[: depth + 1]
        node = node[key]
    return path


def _verify(  # noqa: PLR0917 - one private caller shape, all positional
    old: Doc,
    new_text: str,
    path: YamlPath,
    source: Path,
    what: str,
    loads_as_wanted: Callable[[Node], bool],
) -> None:
    """The edited text must parse, mean the old data except at `path`, and hold the new value."""
    with must_still_parse(source):
        new = parse(new_text, source, what)
    assert old.root is not None
    node = node_at(new.root, path) if new.root is not None else None
    if node is None or not loads_as_wanted(deref(node)):
        raise InputError(
            f"internal error: {format_path(path)} would not load as the intended value; "
            "nothing was changed",
            Location(file=source, key=format_path(path)),
        )
    assert new.root is not None
    want = node_data(old.root)
    wrong = changes_besides(want, node_data(new.root), [_cut(want, path)])
    if wrong:
        raise InputError(
            f"setting {format_path(path)} would also change {', '.join(wrong)} (shared through "
            "an anchor, alias or '<<' merge); nothing was changed",
            Location(file=source, key=wrong[0]),
        )


def _verify_scalar(new: Scalar) -> Callable[[Node], bool]:
    def check(node: Node) -> bool:
        if isinstance(new, str) and node.style is None and node.kind == SCALAR:
            return loads_as_str(node) == new and not plain_problem(new, in_flow=node.in_flow)
        return _same(node, new)

    return check


# --- setting paths -----------------------------------------------------------------------------


def set_values(
    text: str, values: Mapping[YamlPath, Scalar], *, source: Path, what: str = _YAML_FILE
) -> SetResult:
    """Return the text with each path set to its value, changing nothing else.

    A missing final key (and any missing mappings above it) is added in the file's own
    indentation, line ending and quoting; a path through a sequence, an alias or a shared
    anchor, an ambiguous dotted path and duplicate keys are refused with InputError naming the
    file, line and column. The result is re-parsed and checked after every value.
    """
    with depth_guard(text, source, what):
        edits: list[ValueEdit] = []
        same: list[YamlPath] = []
        for path, new in values.items():
            editor = _Editor(text, source, what)
            edit = _set_one(editor, path, new)
            if edit is None:
                same.append(path)
                continue
            splice, value_edit = edit
            new_text = apply_splices(text, [splice], source)
            _verify(editor.doc, new_text, path, source, what, _verify_scalar(new))
            text = new_text
            edits.append(value_edit)
        return SetResult(text, tuple(edits), tuple(same))


def _set_one(
    editor: _Editor,
    path: YamlPath,
    new: Scalar,
    check_before: Callable[[Node, YamlPath], None] | None = None,
    same: Callable[[Node], bool] | None = None,
) -> tuple[Splice, ValueEdit] | None:
    mapping, depth, found = editor.walk(path)
    after = _shown(new)
    if found is not None:
        key, value = found
        target = deref(value)
        if check_before is not None:
            check_before(target, path)
        if target.kind == SCALAR and (same or (lambda node: _same(node, new)))(target):
            return None
        splice = editor.replace(key, value, new, path)
        return splice, ValueEdit(path, _before(value), after, "replaced")
    tail = path[depth:]
    style = editor.sibling_style(mapping)
    splice = editor.insert(mapping, tail, _scalar_value(new, style), path)
    merged = any(editor.lookup(m, path[-1]) for _k, m in merge_sources(mapping))
    note = "overrides the value merged in with '<<'" if merged and len(tail) == 1 else ""
    how = "inserted" if len(tail) == 1 else "created"
    if len(tail) > 1:
        note = f"adds {format_path(path[: depth + 1])}"
    return splice, ValueEdit(path, None, after, how, note)


# --- compose environment -----------------------------------------------------------------------


def _check_not_interpolated(editor: _Editor) -> Callable[[Node, YamlPath], None]:
    def check(node: Node, path: YamlPath) -> None:
        if node.kind == SCALAR and _INTERPOLATION.search(node.value):
            raise editor.error(
                f"{format_path(path)} is interpolated by compose ({node.value!r}); "
                "reconciler does not pin interpolated values yet: set it where the variable "
                "comes from, or replace the reference by hand",
                node.start,
                path,
            )

    return check


def _env_same(new: str) -> Callable[[Node], bool]:
    # compose turns a number or any scalar into its text: `PORT: 8080` is "8080".
    return lambda node: not is_null(node) and node.value == new


def pin_environment(text: str, pins: Mapping[str, Mapping[str, str]], *, source: Path) -> SetResult:
    """Return the compose text with services.<name>.environment.<KEY> set to each pin.

    The mapping form (`KEY: value`) and the list form (`- KEY=value`) are both edited in
    place; a missing key joins its section in that section's form, indentation and quoting,
    and a missing section is created in the form the file's other services use (mapping when
    none has one). A value using compose interpolation (`${VAR}`, `$VAR`) is refused.
    """
    with depth_guard(text, source, "compose file"):
        services = {name: body for name, _key, body in analyse(text, source).entries}
        edits: list[ValueEdit] = []
        same: list[YamlPath] = []
        for service, values in pins.items():
            if service not in services:
                raise InputError(
                    f"service {service!r} is not defined in the compose file",
                    Location(file=source, key=f"services.{service}"),
                )
            for name, value in values.items():
                path: YamlPath = ("services", service, "environment", name)
                text, edit = _pin_one(text, source, path, value)
                if edit is None:
                    same.append(path)
                else:
                    edits.append(edit)
        return SetResult(text, tuple(edits), tuple(same))


def _pin_one(text: str, source: Path, path: YamlPath, new: str) -> tuple[str, ValueEdit | None]:
    what = "compose file"
    editor = _Editor(text, source, what)
    service = path[1]
    body = node_at(editor.root, path[:2])
    assert body is not None
    editor.container(body, path[:2])
    env = editor.lookup(body, "environment")
    if env is None:
        if any(editor.lookup(m, "environment") for _k, m in merge_sources(body)):
            raise editor.error(
                f"the environment of service {service!r} comes from a '<<' merge; give the "
                "service its own environment section first",
                body.start,
                path[:3],
            )
        if _prefers_list(editor):
            splice, edit = _insert_list_section(editor, body, path, new)
        else:
            splice = editor.insert(body, path[2:], _scalar_value(_env_value(new), None), path)
            edit = ValueEdit(path, None, new, "created", f"adds services.{service}.environment")
        new_text = apply_splices(text, [splice], editor.source)
        _verify_env(editor, new_text, path, new)
        return new_text, edit
    section = deref(env[1])
    if section.kind == SEQ:
        if env[1].kind == ALIAS:
            editor.container(env[1], path[:3])
        editor.check_shared(section, path[:3])
        result = _pin_list_item(editor, section, path, new)
        if result is None:
            return text, None
        splice, edit = result
    else:
        existing = node_at(editor.root, path)
        quoted = (
            deref(existing).style in ("'", '"')
            if existing is not None
            else editor.sibling_style(section) is not None
        )
        found = _set_one(
            editor,
            path,
            _env_value(new, quoted=quoted),
            _check_not_interpolated(editor),
            _env_same(new),
        )
        if found is None:
            return text, None
        splice, edit = found
    new_text = apply_splices(text, [splice], source)
    _verify_env(editor, new_text, path, new)
    return new_text, edit


def _prefers_list(editor: _Editor) -> bool:
    services = node_at(editor.root, ("services",))
    assert services is not None
    forms = [0, 0]
    for _name, node in deref(services).pairs():
        body = deref(node)
        if body.kind == MAP:
            env = editor.lookup(body, "environment")
            if env is not None and deref(env[1]).kind in (MAP, SEQ):
                forms[deref(env[1]).kind == SEQ] += 1
    return forms[1] > forms[0]


def _entry_name(item: Node) -> str:
    return item.value.split("=", 1)[0]


def _pin_list_item(
    editor: _Editor, section: Node, path: YamlPath, new: str
) -> tuple[Splice, ValueEdit] | None:
    name = path[-1]
    matches = [
        item
        for item in section.items
        if deref(item).kind == SCALAR and _entry_name(deref(item)) == name
    ]
    if len(matches) > 1:
        line = editor.doc.line_col(matches[0].start)[0]
        raise editor.error(
            f"{name} is listed twice in this environment (first on line {line})",
            matches[1].start,
            path,
        )
    entry = f"{name}={new}"
    if matches:
        item = matches[0]
        if item.kind == ALIAS:
            raise editor.error(f"{format_path(path)} is an alias (*{item.value})", item.start, path)
        editor.check_shared(item, path)
        old = item.value.split("=", 1)[1] if "=" in item.value else None
        if old is not None and _INTERPOLATION.search(old):
            _check_not_interpolated(editor)(item, path)
        if old == new:
            return None
        if item.tag is not None or item.style in ("|", ">"):
            raise editor.error(f"{format_path(path)} is not a plain list entry", item.start, path)
        rendered, _ = render(entry, item.style, in_flow=item.in_flow)
        _, start = properties(editor.text, item)
        return Splice(start, item.end, rendered), ValueEdit(path, old, new, "replaced")
    style = next((item.style for item in reversed(section.items) if item.kind == SCALAR), None)
    style = style if style in ("'", '"') else None
    rendered, _ = render(entry, style, in_flow=section.flow)
    text = editor.text
    edit = ValueEdit(path, None, new, "inserted")
    if section.flow:
        if section.items:
            last = section.items[-1]
            return Splice(last.end, last.end, f", {rendered}"), edit
        _, bracket = properties(text, section)
        return Splice(bracket + 1, bracket + 1, rendered), edit
    if not section.items:
        raise editor.error("an empty block sequence cannot be edited", section.start, path)
    first = section.items[0]
    prefix = text[line_start(text, first.start) : first.start]
    if prefix.strip(" ") != "-" and not re.fullmatch(r" *- +", prefix):
        raise editor.error(
            "cannot tell this list's indentation (its first entry does not start its line)",
            first.start,
            path,
        )
    return lines_after(text, content_end(text, section), [prefix + rendered]), edit


def _insert_list_section(
    editor: _Editor, body: Node, path: YamlPath, new: str
) -> tuple[Splice, ValueEdit]:
    """An `environment:` list with one entry, in the dash indentation the file's lists use."""
    entry = f"{path[-1]}={new}"
    edit = ValueEdit(path, None, new, "created", f"adds services.{path[1]}.environment")
    if body.flow:
        flow = render(entry, None, in_flow=True)[0]
        return editor.insert(body, ("environment",), lambda _f: f"[{flow}]", path), edit
    indent = editor.text[line_start(editor.text, body.items[0].start) : body.items[0].start]
    block = render(entry, None, in_flow=False)[0]
    eol = default_eol(editor.text)
    # a value starting with a line break goes on the lines below its key (see _block_lines)
    value = f"{eol}{indent}{_list_dash(editor)}{block}"
    return editor.insert(body, ("environment",), lambda _f: value, path), edit


def _list_dash(editor: _Editor) -> str:
    """What precedes an environment entry relative to its key: the first list's, or `  - `."""
    text = editor.text
    services = node_at(editor.root, ("services",))
    assert services is not None
    for _name, node in deref(services).pairs():
        body = deref(node)
        env = editor.lookup(body, "environment") if body.kind == MAP else None
        section = deref(env[1]) if env is not None else None
        if env is None or section is None or section.kind != SEQ or section.flow:
            continue
        if section.items:
            key_col = env[0].start - line_start(text, env[0].start)
            first = section.items[0].start
            prefix = text[line_start(text, first) : first]
            if re.fullmatch(r" *- +", prefix) and len(prefix) - len(prefix.lstrip()) >= key_col:
                return prefix[key_col:]
    return " " * _indent_step(editor.doc) + "- "


def _verify_env(editor: _Editor, new_text: str, path: YamlPath, new: str) -> None:
    old_env = node_at(editor.root, path[:3])
    if old_env is not None and deref(old_env).kind == SEQ:
        _verify_list(editor, new_text, path, new)
        return
    new_doc = parse(new_text, editor.source, "compose file")
    section = node_at(new_doc.root, path[:3]) if new_doc.root is not None else None
    if section is not None and deref(section).kind == SEQ:  # a created list section
        entries = [loads_as_str(deref(item)) for item in deref(section).items]
        if entries != [f"{path[-1]}={new}"]:
            raise InputError(
                f"internal error: the new environment of {path[1]!r} would not load as "
                "intended; nothing was changed",
                Location(file=editor.source, key=format_path(path)),
            )
        _verify(editor.doc, new_text, path[:3], editor.source, "compose file", lambda _n: True)
        return
    _verify(editor.doc, new_text, path, editor.source, "compose file", _env_check(new))


def _env_value(new: str, *, quoted: bool = False) -> Scalar:
    """compose reads a number as its text: a decimal is written plain (`PORT: 8080`), unless
    the file quotes its values there."""
    return int(new) if _DECIMAL.fullmatch(new) and not quoted else new


def _env_check(new: str) -> Callable[[Node], bool]:
    def check(node: Node) -> bool:
        if node.kind == SCALAR and node.style is None and _DECIMAL.fullmatch(new):
            return node.value == new
        return _verify_scalar(new)(node)

    return check


def _verify_list(editor: _Editor, new_text: str, path: YamlPath, new: str) -> None:
    old_section = deref(node_at(editor.root, path[:3]))  # type: ignore[arg-type]
    old_entries = [loads_as_str(deref(item)) for item in old_section.items]
    entry = f"{path[-1]}={new}"
    wanted = [
        entry if value is not None and value.split("=", 1)[0] == path[-1] else value
        for value in old_entries
    ]
    if entry not in wanted:
        wanted.append(entry)

    def same_list(node: Node) -> bool:
        return node.kind == SEQ and [loads_as_str(deref(i)) for i in node.items] == wanted

    _verify(editor.doc, new_text, path[:3], editor.source, "compose file", same_list)
