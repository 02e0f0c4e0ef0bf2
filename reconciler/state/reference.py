"""The state-file reference (docs/state-file.md), rendered from the JSON Schema of the models.

Every key's type, default, constraints and text come from the pydantic models in `model.py` and
`fleet.py` (their `Field(description=...)` and docstrings), through `schema.py`; nothing here
repeats them. `reconciler.cli.reference` splices `render()` into the document between markers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from reconciler.state import fleet, model
from reconciler.state.schema import fleet_schema, state_schema

__all__ = ["heading_anchor", "render", "schema_keys"]

Schema = Mapping[str, Any]

# What the key of each mapping stands for, in section titles (`services.<name>`).
_KEY_NAMES = {
    "services": "name",
    "images": "reference",
    "wheelhouses": "directory",
    "files": "path",
    "secrets": "NAME",
    "registries": "host",
    "targets": "name",
}
_REF = "#/$defs/"


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens (so links into the reference can be checked)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def schema_keys(schema: Schema) -> Iterator[str]:
    """Every property name in `schema`, recursively (nested schemas and `$defs` included)."""
    for key, value in schema.items():
        if key == "properties" and isinstance(value, Mapping):
            yield from value
        if isinstance(value, Mapping):
            yield from schema_keys(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    yield from schema_keys(item)


def render() -> str:
    """The generated part of docs/state-file.md: one table per model, state file then fleet."""
    state = _Document(state_schema(), _models(model), model.State, "State file")
    fleets = _Document(fleet_schema(), _models(fleet), fleet.FleetSpec, "Fleet file")
    return f"{state.render()}\n{fleets.render()}"


def _models(module: object) -> dict[str, type[BaseModel]]:
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel
    }


class _Document:
    """One schema as sections: the root first, then each definition at the first path that
    reaches it (breadth first, in the models' field order), then any left unreached."""

    def __init__(
        self,
        schema: Schema,
        models: Mapping[str, type[BaseModel]],
        root: type[BaseModel],
        title: str,
    ) -> None:
        self._schema = schema
        self._defs: Mapping[str, Schema] = schema.get("$defs", {})
        self._models = {**models, "": root}
        self._title = title
        self._paths: dict[str, str] = {"": f"{title}: the top level"}
        self._order: list[str] = [""]
        queue = [("", schema)]
        while queue:
            path, node = queue.pop(0)
            for key, prop in node.get("properties", {}).items():
                for name, suffix in self._references(prop):
                    if name not in self._paths:
                        placeholder = _KEY_NAMES.get(key, "key")
                        self._paths[name] = _join(path, key) + suffix.format(key=placeholder)
                        self._order.append(name)
                        queue.append((self._paths[name], self._defs[name]))
        self._order += [name for name in self._defs if name not in self._paths]
        for name in self._defs:
            self._paths.setdefault(name, name)

    def render(self) -> str:
        parts = [f"### {self._title}\n"]
        for name in self._order:
            parts.append(self._section(name))
        return "\n".join(parts)

    def _section(self, name: str) -> str:
        node = self._schema if name == "" else self._defs[name]
        cls = self._models.get(name)
        heading = self._heading(name)
        lines = [f"#### {heading}\n"]
        about = _text(node.get("description", ""))
        if cls is not None:
            about = f"{about} (`{cls.__name__}`)" if about else f"`{cls.__name__}`"
        if about:
            lines.append(f"{about}\n")
        lines.append("| key | type | default | description |")
        lines.append("|---|---|---|---|")
        required = set(node.get("required", []))
        for key, prop in node.get("properties", {}).items():
            default = "**required**" if key in required else self._default(cls, key, prop)
            lines.append(
                "| "
                + " | ".join(
                    _cell(text)
                    for text in (
                        f"`{key}`",
                        self._type(prop),
                        default,
                        _text(prop.get("description", "")),
                    )
                )
                + " |"
            )
        for pattern in node.get("patternProperties", {}):
            lines.append(
                f"\nKeys matching `{pattern}` are ignored: a place for YAML anchors (`x-base: "
                "&base ...`)."
            )
        return "\n".join(lines) + "\n"

    def _heading(self, name: str) -> str:
        path = self._paths[name]
        return path if name == "" else f"`{path}`"

    def _link(self, name: str) -> str:
        return f"[`{self._paths[name]}`](#{heading_anchor(self._heading(name))})"

    def _references(self, node: Schema) -> Iterator[tuple[str, str]]:
        """The definitions a property's schema refers to, with the path suffix that reaches
        each (`.<name>` through a mapping, `[]` through a list)."""
        if "$ref" in node:
            yield node["$ref"].removeprefix(_REF), ""
        for option in node.get("anyOf", []):
            yield from self._references(option)
        if "items" in node:
            for name, suffix in self._references(node["items"]):
                yield name, "[]" + suffix
        for value in _mapping_values(node):
            for name, suffix in self._references(value):
                yield name, ".<{key}>" + suffix

    def _type(self, node: Schema) -> str:
        if "$ref" in node:
            return f"object, see {self._link(node['$ref'].removeprefix(_REF))}"
        if "anyOf" in node:
            options = [self._type(option) for option in node["anyOf"] if option != {"type": "null"}]
            return " or ".join(options)
        if "enum" in node:
            return " or ".join(f"`{json.dumps(value)}`" for value in node["enum"])
        if "const" in node:
            return f"`{json.dumps(node['const'])}`"
        kind = node.get("type", "any value")
        if kind == "array":
            text = f"list of {self._type(node.get('items', {}))}"
        elif kind == "object":
            values = list(_mapping_values(node))
            text = "mapping" + (f" to {self._type(values[0])}" if values else "")
            keys = list(node.get("patternProperties", {}))
            if keys:
                text += f", keys matching `{keys[0]}`"
        else:
            text = "path" if node.get("format") == "path" else str(kind)
        return text + _constraints(node)

    def _default(self, cls: type[BaseModel] | None, key: str, prop: Schema) -> str:
        if cls is not None:
            for field_name, field in cls.model_fields.items():
                if key in (field_name, field.alias):
                    value = field.get_default(call_default_factory=True)
                    return _value(value)
        return _value(prop.get("default"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping_values(node: Schema) -> Iterator[Schema]:
    yield from node.get("patternProperties", {}).values()
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield extra


def _constraints(node: Schema) -> str:
    rules = []
    if "pattern" in node:
        rules.append(f"matching `{node['pattern']}`")
    for key, sign in (
        ("exclusiveMinimum", ">"),
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("minProperties", "keys ≥"),
    ):
        if key in node:
            rules.append(f"{sign} {node[key]}")
    return f" ({', '.join(rules)})" if rules else ""


def _value(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return f"`{json.dumps(value, default=str)}`"


def _text(description: str) -> str:
    """A description on one line, with `<` and `>` outside code spans written as entities
    (Markdown would take `<name>` for an HTML tag and drop it)."""
    parts = " ".join(description.split()).split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _cell(text: str) -> str:
    # A `|` splits a Markdown table cell, even inside a code span, unless escaped.
    return text.replace("|", "\\|")
