"""Read service images from a compose file and pin them by splicing the original text.

Pure text in, text out: callers decide the pins and write the result atomically. Why this is a
splice over ruamel's event marks and not a load/dump round trip: DESIGN.md section 7.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.compose import yaml_doc
from reconciler.compose.yaml_doc import (
    ALIAS,
    MAP,
    SCALAR,
    SEQ,
    Doc,
    Node,
    Splice,
    TooDeep,
    apply_splices,
    changes_besides,
    check_duplicates,
    content_end,
    depth_guard,
    deref,
    event_streams,
    is_key,
    is_merge_key,
    is_null,
    key_path,
    line_start,
    lines_after,
    loads_as_str,
    merge_sources,
    must_still_parse,
    node_data,
    parse,
    plain_problem,
    properties,
    render,
    scalar_splice,
)
from reconciler.errors import InputError, Location

__all__ = [
    "EditResult",
    "ImageEdit",
    "ServiceImage",
    "Services",
    "analyse",
    "event_streams",  # from yaml_doc, where it now lives; kept for existing callers
    "pin_images",
    "read_services",
]

_WHAT = "compose file"


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


# --- reading ---------------------------------------------------------------------------------


def _own_image(mapping: Node) -> tuple[Node, Node] | None:
    for key, value in mapping.pairs():
        if is_key(key, "image"):
            return key, value
    return None


def _merged_image(mapping: Node, seen: set[int] | None = None, depth: int = 0) -> Node | None:
    seen = set() if seen is None else seen
    if id(mapping) in seen:
        return None
    if depth > yaml_doc.MAX_DEPTH:
        raise TooDeep(mapping.start, " through chained '<<' merges")
    seen.add(id(mapping))
    for _key, merged in merge_sources(mapping):
        own = _own_image(merged)
        if own is not None:
            return own[1]
        found = _merged_image(merged, seen, depth + 1)
        if found is not None:
            return found
    return None


def _image_value(node: Node, doc: Doc, source: Path, path: str) -> str | None:
    target = deref(node)
    if target.kind != SCALAR:
        raise InputError("image must be a string", doc.location(source, node.start, path))
    return None if is_null(target) else target.value


@dataclass
class Services:
    """A compose file checked to have a `services` mapping, and that mapping's entries."""

    doc: Doc
    key: Node  # the top-level `services` key
    entries: list[tuple[str, Node, Node]]  # name, key node, value node (maybe an alias)


def analyse(text: str, source: Path) -> Services:
    """Parse a compose file and find its services; InputError (located) when the file is not
    one: empty, not a mapping, duplicate keys, no or a bad `services` mapping, a `<<` merge or
    a non-string name under `services`. Run it inside `yaml_doc.depth_guard`."""
    doc = parse(text, source, _WHAT)

    def refused(message: str, node: Node, key: str | None = "services") -> InputError:
        return InputError(message, doc.location(source, node.start, key))

    root = doc.root
    if root is None:
        raise InputError(
            "the compose file is empty; expected a top-level 'services' mapping",
            Location(file=source),
        )
    if root.kind != MAP:
        raise refused("the top level of a compose file must be a mapping", root, None)
    check_duplicates(root, doc, source, "compose refuses duplicate keys")
    found = next(((k, v) for k, v in root.pairs() if is_key(k, "services")), None)
    if found is None:
        raise refused("the compose file has no top-level 'services' mapping", root, None)
    key, value = found
    services = deref(value)
    if is_null(services):
        raise refused("'services' is empty; expected a mapping of service names", key)
    if services.kind != MAP:
        raise refused("'services' must be a mapping of service names to definitions", value)
    entries: list[tuple[str, Node, Node]] = []
    for name_node, body in services.pairs():
        if is_merge_key(name_node):
            raise refused(
                "a '<<' merge directly under 'services' is not supported", name_node, "services.<<"
            )
        if name_node.kind != SCALAR:
            raise refused("service names must be plain strings", name_node)
        entries.append((name_node.value, name_node, body))
    return Services(doc, key, entries)


def read_services(text: str, *, source: Path) -> dict[str, ServiceImage]:
    """Services of a compose file in file order.

    Raises InputError (with file, 1-based line and column, and key path) on YAML errors,
    duplicate keys anywhere in the file, a missing or invalid top-level `services` mapping, a
    service that is neither a mapping nor empty, a non-string image, several documents, or
    nesting deeper than `MAX_DEPTH` levels.
    """
    with depth_guard(text, source, _WHAT):
        return _read_services(text, source)


def _read_services(text: str, source: Path) -> dict[str, ServiceImage]:
    analysed = analyse(text, source)
    doc = analysed.doc
    result: dict[str, ServiceImage] = {}
    for name, key, body in analysed.entries:
        line, column = doc.line_col(key.start)
        path = f"services.{name}"
        mapping = deref(body)
        image: str | None = None
        inherited = False
        if mapping.kind == MAP:
            own = _own_image(mapping)
            if own is not None:
                image = _image_value(own[1], doc, source, f"{path}.image")
            else:
                merged = _merged_image(mapping)
                if merged is not None:
                    image = _image_value(merged, doc, source, f"{path}.image")
                    inherited = True
        elif not is_null(mapping):
            raise InputError("a service must be a mapping", doc.location(source, body.start, path))
        result[name] = ServiceImage(name, image, inherited, line, column)
    return result


# --- editing ---------------------------------------------------------------------------------


class _Planner:
    def __init__(self, analysed: Services, source: Path) -> None:
        self.doc = analysed.doc
        self.text = analysed.doc.text
        self.source = source
        self.splices: list[tuple[Splice, ImageEdit]] = []
        self.replaced_aliases: set[int] = set()
        self.anchored: list[tuple[str, Node]] = []  # (service, image scalar with an anchor)

    def error(self, message: str, index: int, key: str) -> InputError:
        return InputError(message, self.doc.location(self.source, index, key))

    def plan(self, name: str, key: Node, body: Node, new: str) -> None:
        path = f"services.{name}"
        if body.kind == ALIAS:
            raise self.error(
                f"service {name!r} is an alias (*{body.value}) of another mapping; editing it "
                "would change that mapping too, so give the service its own definition",
                body.start,
                path,
            )
        if is_null(body):
            raise self.error(
                f"service {name!r} has an empty definition; there is no mapping to add an "
                "'image' key to, so write at least one key for it first",
                key.start,
                path,
            )
        if body.kind != MAP:
            raise self.error("a service must be a mapping", body.start, path)
        own = _own_image(body)
        if own is not None:
            self._replace(name, own[0], own[1], new)
            return
        merged = _merged_image(body)
        before = None if merged is None else _image_value(merged, self.doc, self.source, path)
        if merged is not None and loads_as_str(deref(merged)) == new:
            return
        self._insert(name, key, body, new, before=before, merged=merged is not None)

    def _replace(self, name: str, key: Node, value: Node, new: str) -> None:
        path = f"services.{name}.image"
        target = deref(value)
        if target.kind != SCALAR:
            raise self.error("image must be a string", value.start, path)
        if loads_as_str(target) == new:
            return
        before = None if is_null(target) else target.value
        if value.kind != ALIAS and value.anchor is not None:
            self.anchored.append((name, value))
        splice, note = scalar_splice(
            self.text, key, value, lambda style, in_flow: render(new, style, in_flow=in_flow)
        )
        how = "replaced"
        if value.kind == ALIAS:
            kept = f"alias *{value.value} replaced, its anchor kept"
            note = "; ".join(filter(None, [kept, note]))
            self.replaced_aliases.add(id(value))
            how = "replaced-alias"
        self.splices.append((splice, ImageEdit(name, before, new, how, note)))

    def _insert(
        self, name: str, key: Node, body: Node, new: str, *, before: str | None, merged: bool
    ) -> None:
        path = f"services.{name}"
        how = "override-merge" if merged else "inserted"
        note = "own image overrides the one merged in with '<<'" if merged else ""
        if body.flow:
            rendered, quote_note = render(new, None, in_flow=True)
            note = "; ".join(filter(None, [note, quote_note]))
            _, brace = properties(self.text, body)
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
            self.splices.append((Splice(at, at, entry), ImageEdit(name, before, new, how, note)))
            return
        rendered, quote_note = render(new, None, in_flow=False)
        note = "; ".join(filter(None, [note, quote_note]))
        first = body.items[0]
        indent = self.text[line_start(self.text, first.start) : first.start]
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
        after = max(key.end, properties(self.text, body)[0])
        for merge_key, merge_value in body.pairs():
            if is_merge_key(merge_key):
                after = max(after, content_end(self.text, merge_value))
        splice = lines_after(self.text, after, [f"{indent}image: {rendered}"])
        self.splices.append((splice, ImageEdit(name, before, new, how, note)))

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


def _alias_paths(root: Node, users: list[Node]) -> list[tuple[str, Node]]:
    wanted = {id(user) for user in users}
    found: list[tuple[str, Node]] = []
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in wanted:
            found.append((path or "<root>", node))
        if node.kind == MAP:
            stack.extend((value, key_path(path, key)) for key, value in node.pairs())
        elif node.kind == SEQ:
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.items))
    return sorted(found, key=lambda pair: pair[1].start)


def pin_images(text: str, pins: Mapping[str, str], *, source: Path) -> EditResult:
    """Return the text with each services.<name>.image set to pins[name], changing nothing else.

    Every byte outside the replaced values (or the inserted `image:` lines) is kept. The result
    is re-parsed and checked: if anything but the pinned images would change, InputError.
    """
    with depth_guard(text, source, _WHAT):
        return _pin_images(text, pins, source)


def _pin_images(text: str, pins: Mapping[str, str], source: Path) -> EditResult:
    analysed = analyse(text, source)
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
    planned = sorted(planner.splices, key=lambda pair: pair[0].start)
    # each edit lives inside its own service: apply_splices refuses overlaps as a bug
    new_text = apply_splices(text, [splice for splice, _ in planned], source)
    edits = tuple(edit for _, edit in planned)
    _verify(doc, new_text, edits, source)
    return EditResult(new_text, edits)


# --- verification ----------------------------------------------------------------------------
#
# Besides yaml_doc's check that the file means the same data but for the edited images, the
# edited images themselves are checked to load as the exact new strings under YAML 1.1 and 1.2.


def _verify(old_doc: Doc, new: str, edits: tuple[ImageEdit, ...], source: Path) -> None:
    """Re-parse the result and check that exactly the intended images changed."""
    with must_still_parse(source):
        analysed = analyse(new, source)
    bodies = {name: body for name, _, body in analysed.entries}
    for edit in edits:
        own = _own_image(deref(bodies[edit.service]))
        value = None if own is None else deref(own[1])
        if (
            value is None
            or loads_as_str(value) != edit.after
            or (value.style is None and plain_problem(edit.after, in_flow=value.in_flow))
        ):
            raise InputError(
                f"internal error: the new image of service {edit.service!r} would "
                "not load as the intended string; nothing was changed",
                Location(file=source, key=f"services.{edit.service}.image"),
            )
    assert old_doc.root is not None  # analyse refused an empty file
    assert analysed.doc.root is not None
    wrong = changes_besides(  # the images are checked above; all else must be as it was
        node_data(old_doc.root),
        node_data(analysed.doc.root),
        [("services", edit.service, "image") for edit in edits],
    )
    if wrong:
        raise InputError(
            f"pinning would also change {', '.join(wrong)}: the edited value is shared through "
            "an anchor, alias or '<<' merge. Pin those services too, or give them their own "
            "image; nothing was changed",
            Location(file=source, key=wrong[0]),
        )
