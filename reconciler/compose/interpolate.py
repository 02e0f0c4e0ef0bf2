"""Compose's variable interpolation (`${VAR:-default}` and friends), parsed and evaluated.

Pure functions over strings, following compose-go's template rules: `$$` is a literal `$`,
`$VAR` and `${VAR}` substitute (empty when unset), `${VAR:-d}`/`${VAR-d}` give a default when
unset or empty / unset, `${VAR:?e}`/`${VAR?e}` fail, `${VAR:+r}`/`${VAR+r}` replace. Defaults
nest (`${A:-${B}}`). `environment.py` uses it to resolve an interpolated `image:` and to solve
for the variable a pin must set; `dotenv.py` uses it for values that refer to other variables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "InterpolationError",
    "Plain",
    "Template",
    "Variable",
    "has_variables",
    "interpolate",
    "parse_template",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")

Lookup = Callable[[str], str | None]


class InterpolationError(ValueError):
    """A template compose would refuse (`Invalid template`), or a `${VAR?err}` that fires."""


@dataclass(frozen=True)
class Plain:
    """Text taken as is (a `$$` already turned into `$`)."""

    text: str


@dataclass(frozen=True)
class Variable:
    """One `$VAR` or `${VAR<op><word>}`; `word` is itself a template (None without an op)."""

    name: str
    operator: str | None = None
    word: Template | None = None

    def names(self) -> Iterator[str]:
        """This variable's name, then every name its word refers to."""
        yield self.name
        if self.word is not None:
            yield from self.word.names()


@dataclass(frozen=True)
class Template:
    """A parsed string: literals and variables, in order."""

    parts: tuple[Plain | Variable, ...]

    def names(self) -> Iterator[str]:
        """Every variable name the template refers to, nested defaults included."""
        for part in self.parts:
            if isinstance(part, Variable):
                yield from part.names()

    def render(self, lookup: Lookup) -> str:
        """The string compose makes of it, with `lookup(name)` (None: unset)."""
        return "".join(_render_part(part, lookup) for part in self.parts)


def parse_template(text: str) -> Template:
    """Parse `text`; InterpolationError says what compose would reject."""
    template, end = _parse(text, 0, nested=False)
    assert end == len(text)
    return template


def has_variables(text: str) -> bool:
    """True when `text` refers to any variable (a `$$` escape alone does not count)."""
    return "$" in text and any(True for _ in parse_template(text).names())


def interpolate(text: str, environment: Mapping[str, str]) -> str:
    """`text` with its variables substituted from `environment`."""
    return parse_template(text).render(environment.get)


def _parse(text: str, index: int, *, nested: bool) -> tuple[Template, int]:
    """Parse from `index` to the end, or (when `nested`) to the `}` closing a word."""
    parts: list[Plain | Variable] = []
    literal: list[str] = []
    while index < len(text):
        char = text[index]
        if nested and char == "}":
            break
        if char != "$":
            literal.append(char)
            index += 1
            continue
        following = text[index + 1 : index + 2]
        if following == "$":
            literal.append("$")
            index += 2
            continue
        if literal:
            parts.append(Plain("".join(literal)))
            literal = []
        if following == "{":
            variable, index = _parse_braced(text, index + 2)
            parts.append(variable)
            continue
        match = _NAME.match(text, index + 1)
        if match is None:
            raise InterpolationError(
                f"invalid template {text!r}: a `$` at offset {index} starts no variable "
                "(write `$$` for a literal `$`)"
            )
        parts.append(Variable(match.group()))
        index = match.end()
    if literal:
        parts.append(Plain("".join(literal)))
    return Template(tuple(parts)), index


def _parse_braced(text: str, index: int) -> tuple[Variable, int]:
    """Parse `NAME[op word]}` starting after `${`; return the variable and the index after `}`."""
    match = _NAME.match(text, index)
    if match is None:
        raise InterpolationError(f"invalid template {text!r}: `${{` at offset {index - 2}")
    name, index = match.group(), match.end()
    if text.startswith("}", index):
        return Variable(name), index + 1
    if index == len(text):
        raise InterpolationError(f"invalid template {text!r}: `${{{name}` is not closed")
    operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
    if operator is None:
        raise InterpolationError(
            f"invalid template {text!r}: unexpected {text[index : index + 1]!r} after ${{{name}"
        )
    word, index = _parse(text, index + len(operator), nested=True)
    if not text.startswith("}", index):
        raise InterpolationError(f"invalid template {text!r}: `${{{name}` is not closed")
    return Variable(name, operator, word), index + 1


def _render_part(part: Plain | Variable, lookup: Lookup) -> str:
    if isinstance(part, Plain):
        return part.text
    value = lookup(part.name)
    operator, word = part.operator, part.word
    if operator is None or word is None:
        return value or ""
    unset_or_empty = not value
    missing = unset_or_empty if operator.startswith(":") else value is None
    if operator.endswith("-"):
        return word.render(lookup) if missing else value or ""
    if operator.endswith("+"):
        return "" if missing else word.render(lookup)
    if missing:  # `?` and `:?`
        detail = word.render(lookup)
        raise InterpolationError(
            f"required variable {part.name} is missing a value" + (f": {detail}" if detail else "")
        )
    return value or ""
