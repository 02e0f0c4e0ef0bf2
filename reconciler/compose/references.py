"""Where a compose file interpolates each variable: per service, the values that refer to it.

compose's normalised model (`docker compose config`) has every variable already substituted,
so only the file's text says which value came from which variable. For each service this
finds every string value under it that refers to a variable (`${VAR}`, `$VAR`, nested
defaults such as `${A:-${B}}`), the `environment` entries and build `args` compose fills from
a variable of the same name (`- VAR`, `VAR:` with no value), what a same-file `extends:`
inherits, and the top-level `configs:` and `secrets:` entries the service uses (their
content, file or `environment:` variable, which compose's config hash does not cover).
Top-level networks and volumes are not followed: compose does not recreate a container
when they change. Pure, over text; `reconciler.observe.planned` uses it to tell which services an
env-file edit changes, and how.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler.compose.interpolate import InterpolationError, parse_template

__all__ = ["Reference", "load_document", "raw_services", "service_references"]

_BY_NAME = ("environment", "build.args")  # sections whose bare entries take a variable's value
_TOP_LEVEL = ("configs", "secrets")


@dataclass(frozen=True)
class Reference:
    """One value of a service that compose computes from variables.

    `template` is the value as written; None when compose takes the variable `names[0]` by
    name (a bare `environment` entry or build arg, a config's `environment:`). `hashed`: the
    service's config hash covers the value (False for a top-level config's or secret's)."""

    where: str  # key path in the service ("environment.MODE"), or "configs.NAME.content"
    template: str | None
    names: tuple[str, ...]
    hashed: bool = True

    def render(self, scope: Mapping[str, str]) -> str | None:
        """The value compose makes of it with `scope` (None: a bare variable left unset);
        a template compose would refuse renders as its error, so that it differs."""
        if self.template is None:
            return scope.get(self.names[0])
        try:
            return parse_template(self.template).render(scope.get)
        except InterpolationError as error:
            return f"\0{error}"  # never equal to a rendered value: a NUL cannot be interpolated


def load_document(text: str) -> dict[str, Any] | None:
    """The compose file as plain data (merge keys and aliases resolved), or None when it does
    not load as a mapping (compose reports that itself)."""
    try:
        document = YAML(typ="safe").load(text)
    except (YAMLError, RecursionError):  # read_services has refused a deep file already
        return None
    return document if isinstance(document, dict) else None


def raw_services(document: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each service's mapping as written (before interpolation), by name."""
    services = document.get("services") if document is not None else None
    if not isinstance(services, dict):
        return {}
    return {str(name): spec for name, spec in services.items() if isinstance(spec, dict)}


def service_references(document: Mapping[str, Any] | None) -> dict[str, tuple[Reference, ...]]:
    """service -> every value of it that refers to a variable (services that refer to none
    are left out)."""
    services = raw_services(document)
    found: dict[str, tuple[Reference, ...]] = {}
    for name in services:
        references = tuple(_service(name, services, document or {}, seen=set()))
        if references:
            found[name] = references
    return found


def _service(
    name: str, services: Mapping[str, dict[str, Any]], document: Mapping[str, Any], seen: set[str]
) -> Iterator[Reference]:
    """The references of one service, then those it inherits through a same-file `extends`."""
    seen.add(name)
    spec = services[name]
    yield from _values(spec, "", visited=set())
    yield from _by_name(spec)
    yield from _top_level(spec, document)
    extends = spec.get("extends")
    base = extends if isinstance(extends, str) else None
    if isinstance(extends, dict) and extends.get("file") is None:
        base = extends.get("service") if isinstance(extends.get("service"), str) else None
    if base is not None and base in services and base not in seen:
        own = _leaf_paths(spec)  # what the service sets itself, it does not inherit
        for reference in _service(base, services, document, seen):
            if reference.where not in own:
                yield reference


def _leaf_paths(node: Any) -> set[str]:
    """The key paths of every scalar under `node` (each node walked once)."""
    paths: set[str] = set()
    stack: list[tuple[Any, str]] = [(node, "")]
    visited: set[int] = set()
    while stack:
        item, where = stack.pop()
        if not isinstance(item, (dict, list)):
            paths.add(where)
            continue
        if id(item) in visited:
            continue
        visited.add(id(item))
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        stack.extend((value, f"{where}.{key}" if where else str(key)) for key, value in pairs)
    return paths


def _values(node: Any, path: str, *, visited: set[int], hashed: bool = True) -> Iterator[Reference]:
    """Every string under `node` that refers to a variable, with its key path.

    A node reached twice through aliases is walked once (its first path is kept), so an
    alias-heavy file costs its size, not the size of its expansion."""
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            names = _names(item)
            if names:
                yield Reference(where, item, names, hashed)
            continue
        if not isinstance(item, (dict, list)) or id(item) in visited:
            continue
        visited.add(id(item))
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        children = [(value, f"{where}.{key}" if where else str(key)) for key, value in pairs]
        stack.extend(reversed(children))  # in file order


def _names(text: str) -> tuple[str, ...]:
    if "$" not in text:
        return ()
    try:
        return tuple(dict.fromkeys(parse_template(text).names()))
    except InterpolationError:
        return ()  # compose rejects the file itself when asked


def _by_name(spec: Mapping[str, Any]) -> Iterator[Reference]:
    """`environment` entries and build args written without a value: compose takes the
    variable of the same name from the environment it interpolates with (env files too)."""
    for section in _BY_NAME:
        node: Any = spec
        for key in section.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            bare = [str(key) for key, value in node.items() if value is None]
        elif isinstance(node, list):
            bare = [item for item in node if isinstance(item, str) and "=" not in item]
        else:
            continue
        for key in bare:
            yield Reference(f"{section}.{key}", None, (key,))


def _top_level(spec: Mapping[str, Any], document: Mapping[str, Any]) -> Iterator[Reference]:
    """The variables of the top-level configs and secrets the service uses (compose's config
    hash of the service does not cover them)."""
    for kind in _TOP_LEVEL:
        entries = document.get(kind)
        used = spec.get(kind)
        if not isinstance(entries, dict) or not isinstance(used, list):
            continue
        for item in used:
            source = item.get("source") if isinstance(item, dict) else item
            entry = entries.get(source) if isinstance(source, str) else None
            if not isinstance(entry, dict):
                continue
            where = f"{kind}.{source}"
            yield from _values(entry, where, visited=set(), hashed=False)
            variable = entry.get("environment")
            if isinstance(variable, str):
                yield Reference(f"{where}.environment", None, (variable,), hashed=False)
