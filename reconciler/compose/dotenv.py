"""Read and edit dotenv files the way compose reads them, changing only the bytes that must.

The parser follows compose-go's dotenv reader: `KEY=value` (or `KEY: value`), an optional
`export ` prefix, single quotes (literal), double quotes (escapes, variables), unquoted values
(variables, an inline comment after ` #`, trailing space trimmed), a bare `KEY` (taken from the
process environment), comments, blank lines, CRLF, a BOM, multi-line quoted values. Every entry
keeps its offsets, so `edit_dotenv` splices a new value over the old one (in the line's own
quoting when the value allows it), removes exactly one entry's line, or appends a line in the
file's own style; then it parses the result again and checks that nothing else changed, like the
compose editor (`edit.py`). Pure text in, text out: the compose-file step writes the result.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.compose.interpolate import InterpolationError, Plain, parse_template
from reconciler.errors import InputError, Location

__all__ = ["DotenvEdit", "DotenvEntry", "DotenvFile", "EditedDotenv", "edit_dotenv", "parse_dotenv"]

# compose-go's isSpace: blanks that are not a line break (`\r` included, so CRLF just works).
_SPACE = "\t\v\f\r \x85\xa0"
_EXPORT = re.compile(r"export[\t ]+")
_ESCAPE = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-7]{0,3})")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
    "$": "$$",  # compose turns `\$` into `$$`, which interpolation makes a literal `$`
}
_WRITE_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "$": "\\$",
    "\n": "\\n",
    "\r": "\\r",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\v": "\\v",
}
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_ErrorAt = Callable[[str, int, str | None], InputError]


@dataclass(frozen=True)
class DotenvEntry:
    """One `KEY=value` statement, with where it sits in the text.

    `template` is the value after unquoting and escapes; compose substitutes variables in it
    when `interpolated` (unquoted and double-quoted values). `value_start`/`value_end` span the
    value as written, quotes included (empty after `KEY=`, or for a bare `KEY` at its end).
    `start`/`end` span the whole statement, from its line's start to after its line break.
    """

    key: str
    template: str
    quote: str  # "", "'" or '"'
    interpolated: bool
    inherited: bool  # a bare `KEY`: compose takes the process environment's value
    export: bool
    line: int
    column: int
    start: int
    end: int
    value_start: int
    value_end: int

    @property
    def literal(self) -> str | None:
        """The value compose reads, when it refers to no variable; else None."""
        if self.inherited:
            return None
        if not self.interpolated:
            return self.template
        try:
            template = parse_template(self.template)
        except InterpolationError:
            return None
        if any(not isinstance(part, Plain) for part in template.parts):
            return None
        return "".join(part.text for part in template.parts if isinstance(part, Plain))


@dataclass(frozen=True)
class DotenvFile:
    """A parsed dotenv text: its entries in file order, and its line ending."""

    text: str
    entries: tuple[DotenvEntry, ...]
    eol: str

    def get(self, key: str) -> DotenvEntry | None:
        """The entry defining `key`, if any."""
        return next((entry for entry in self.entries if entry.key == key), None)

    def resolved(self, environment: Mapping[str, str]) -> dict[str, str]:
        """Each key's value as compose reads it: variables from earlier entries, then from
        `environment` (a bare `KEY` takes its value from `environment`, or is left out)."""
        values: dict[str, str] = {}
        for entry in self.entries:
            if entry.inherited:
                if entry.key in environment:
                    values[entry.key] = environment[entry.key]
                continue
            if not entry.interpolated:
                values[entry.key] = entry.template
                continue
            scope = {**environment, **values}
            values[entry.key] = parse_template(entry.template).render(scope.get)
        return values


@dataclass(frozen=True)
class DotenvEdit:
    """One key changed: its value as written before (None: absent) and after (None: removed)."""

    key: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class EditedDotenv:
    """The edited text and the edits made; no edits means `text` is the input, unchanged."""

    text: str
    edits: tuple[DotenvEdit, ...]


class _Lines:
    def __init__(self, text: str) -> None:
        self._starts = [0, *(match.end() for match in re.finditer("\n", text))]
        self._bom = text.startswith("\ufeff")

    def at(self, index: int) -> tuple[int, int]:
        row = bisect_right(self._starts, index) - 1
        column = index - self._starts[row] + 1
        if row == 0 and self._bom and index > 0:
            column -= 1
        return row + 1, column


def parse_dotenv(text: str, *, source: Path) -> DotenvFile:
    """Parse a dotenv text; an unreadable statement or a duplicate key is an InputError at its
    file:line:column."""
    lines = _Lines(text)

    def error(message: str, index: int, key: str | None) -> InputError:
        line, column = lines.at(index)
        return InputError(message, Location(source, line, column, key))

    entries: list[DotenvEntry] = []
    seen: dict[str, DotenvEntry] = {}
    index = 1 if text.startswith("\ufeff") else 0
    size = len(text)
    while index < size:
        line_start = index
        while index < size and text[index] in _SPACE:
            index += 1
        if index == size:
            break
        if text[index] == "\n":
            index += 1
            continue
        if text[index] == "#":
            index = _after_line(text, index)
            continue
        entry = _statement(text, line_start, index, lines, error)
        if entry.interpolated:
            try:
                parse_template(entry.template)
            except InterpolationError as problem:  # compose refuses the file the same way
                raise InputError(
                    str(problem), Location(source, entry.line, entry.column, entry.key)
                ) from None
        if entry.key in seen:
            first = seen[entry.key]
            raise InputError(
                f"duplicate key {entry.key} (first defined on line {first.line}); compose "
                "would keep only the last one: remove one of them",
                Location(source, entry.line, entry.column, entry.key),
            )
        seen[entry.key] = entry
        entries.append(entry)
        index = entry.end
    first_break = text.find("\n")
    eol = "\r\n" if first_break > 0 and text[first_break - 1] == "\r" else "\n"
    return DotenvFile(text, tuple(entries), eol)


def _after_line(text: str, index: int) -> int:
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


def _is_key_char(char: str) -> bool:
    return char.isalnum() or char in "_.-[]"


def _statement(
    text: str, line_start: int, index: int, lines: _Lines, error: _ErrorAt
) -> DotenvEntry:
    size = len(text)
    export = _EXPORT.match(text, index)
    key_start = export.end() if export else index
    end = key_start
    while end < size and _is_key_char(text[end]):
        end += 1
    key = text[key_start:end]
    if not key:
        shown = text[key_start : key_start + 1]
        raise error(f"expected a variable name, found {shown!r}", key_start, None)
    line, column = lines.at(key_start)
    after = end
    while after < size and text[after] in _SPACE:
        after += 1
    has_export = export is not None
    if after == size or text[after] == "\n":  # a bare KEY: inherited from the environment
        return DotenvEntry(
            template="",
            quote="",
            interpolated=False,
            inherited=True,
            start=line_start,
            end=_after_line(text, after),
            value_start=end,
            value_end=end,
            key=key,
            export=has_export,
            line=line,
            column=column,
        )
    if text[after] not in "=:":
        raise error(
            f"expected `=` after {key}, found {text[after]!r}: a line must be KEY=value, a "
            "comment or blank",
            after,
            key,
        )
    start = after + 1
    while start < size and text[start] in _SPACE:
        start += 1
    quote = text[start : start + 1]
    if quote in ("'", '"'):
        close = start + 1
        while close < size and not (text[close] == quote and text[close - 1] != "\\"):
            close += 1
        if close == size:
            raise error(f"unterminated quoted value of {key}", start, key)
        inner = text[start + 1 : close]
        rest = close + 1
        while rest < size and text[rest] in _SPACE:
            rest += 1
        if rest < size and text[rest] not in "#\n":
            raise error(
                f"unexpected text after the closing quote of {key}'s value "
                "(only a # comment may follow)",
                rest,
                key,
            )
        return DotenvEntry(
            template=_unescape(inner) if quote == '"' else inner,
            quote=quote,
            interpolated=quote == '"',
            inherited=False,
            start=line_start,
            end=_after_line(text, rest),
            value_start=start,
            value_end=close + 1,
            key=key,
            export=has_export,
            line=line,
            column=column,
        )
    line_end = text.find("\n", start)
    line_end = size if line_end < 0 else line_end
    raw = text[start:line_end].split(" #", 1)[0].rstrip()
    return DotenvEntry(
        template=raw,
        quote="",
        interpolated=True,
        inherited=False,
        start=line_start,
        end=_after_line(text, line_end),
        value_start=start,
        value_end=start + len(raw),
        key=key,
        export=has_export,
        line=line,
        column=column,
    )


def _unescape(inner: str) -> str:
    def one(match: re.Match[str]) -> str:
        escape = match.group()[1:]
        if escape in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[escape]
        if len(escape) == 4 and int(escape[1:], 8) < 256:  # \0ddd: an octal byte
            return chr(int(escape[1:], 8))
        return match.group()  # compose keeps escapes it does not know as written

    return _ESCAPE.sub(one, inner)


# --- writing values --------------------------------------------------------------------------


def _unquoted(value: str) -> str | None:
    if (
        any(char.isspace() for char in value)
        or value[:1] in ("'", '"')
        or " #" in value
        or "$" in value
    ):
        return None
    return value


def _single(value: str) -> str | None:
    # No escape exists inside single quotes, and a `\` before the closing quote hides it.
    if "'" in value or value.endswith("\\") or "\n" in value or "\r" in value:
        return None
    return f"'{value}'"


def _double(value: str) -> str | None:
    if value.endswith("\\"):
        return None  # compose would take the escaped closing quote as part of the value
    body = "".join(_WRITE_ESCAPES.get(char, char) for char in value)
    body = _CONTROL.sub(lambda match: f"\\0{ord(match.group()):03o}", body)
    return f'"{body}"'


_RENDERERS = {"": _unquoted, "'": _single, '"': _double}


def _render(value: str, quote: str | None) -> str | None:
    """`value` written so compose reads it back exactly: in `quote`'s style when possible, else
    another quoting (a quoted line stays quoted); None for a new line (plain when possible, and
    never starting with `#`, which a reader would take for a comment)."""
    if quote is None:
        order = ["", "'", '"'] if not value.startswith("#") else ["'", '"']
    elif quote:
        order = [quote, "'" if quote == '"' else '"', ""]
    else:
        order = ["", "'", '"']
    for style in order:
        rendered = _RENDERERS[style](value)
        if rendered is not None:
            return rendered
    return None


# --- editing ---------------------------------------------------------------------------------


def edit_dotenv(
    text: str, values: Mapping[str, str], absent: Iterable[str] = (), *, source: Path
) -> EditedDotenv:
    """`text` with each key of `values` set and each key of `absent` removed, nothing else.

    A set key keeps its line and quoting (quotes are added or changed only when the value needs
    them); a missing key is appended in the file's line ending, with `export ` when every entry
    has it. The result is parsed again and checked: if anything else would change, InputError.
    """
    parsed = parse_dotenv(text, source=source)
    gone = [key for key in absent if key not in values]
    splices: list[tuple[int, int, str]] = []
    edits: list[DotenvEdit] = []
    appended: list[str] = []
    export = bool(parsed.entries) and all(entry.export for entry in parsed.entries)
    for key, value in values.items():
        entry = parsed.get(key)
        if entry is not None and entry.literal == value:
            continue
        rendered = _render(value, None if entry is None else entry.quote)
        if rendered is None:
            raise InputError(
                f"cannot write this value of {key} so that compose reads it back unchanged "
                "(it ends with a backslash and holds a quote, `$`, a line break or edge spaces)",
                Location(source, key=key),
            )
        if entry is None:
            appended.append(f"{'export ' if export else ''}{key}={rendered}")
        elif entry.inherited:
            splices.append((entry.value_end, entry.value_end, f"={rendered}"))
        else:
            splices.append((entry.value_start, entry.value_end, rendered))
        edits.append(DotenvEdit(key, None if entry is None else _written(text, entry), value))
    for key in gone:
        entry = parsed.get(key)
        if entry is not None:
            splices.append((entry.start, entry.end, ""))
            edits.append(DotenvEdit(key, _written(text, entry), None))
    if not edits:
        return EditedDotenv(text, ())
    new_text = _spliced(text, splices, appended, parsed.eol)
    _verify(parsed, new_text, values, gone, source)
    return EditedDotenv(new_text, tuple(edits))


def _spliced(text: str, splices: list[tuple[int, int, str]], appended: list[str], eol: str) -> str:
    pieces: list[str] = []
    cursor = 0
    for start, end, new in sorted(splices):
        pieces += [text[cursor:start], new]
        cursor = end
    pieces.append(text[cursor:])
    new_text = "".join(pieces)
    if text and not text.endswith("\n") and new_text.endswith("\n"):
        # The last line was removed: drop the line break before it, so the file keeps ending
        # without one.
        new_text = new_text.removesuffix("\n").removesuffix("\r")
    if not appended:
        return new_text
    if new_text.removeprefix("\ufeff") and not new_text.endswith("\n"):
        return new_text + "".join(eol + line for line in appended)  # still no final line break
    return new_text + "".join(line + eol for line in appended)


def _written(text: str, entry: DotenvEntry) -> str:
    return text[entry.value_start : entry.value_end]


def _verify(
    old: DotenvFile, new: str, values: Mapping[str, str], gone: list[str], source: Path
) -> None:
    """The edited text must read as the old one with exactly the intended keys changed."""
    try:
        parsed = parse_dotenv(new, source=source)
    except InputError as exc:
        raise InputError(
            f"internal error: the edited env file no longer parses ({exc}); nothing was changed",
            Location(source),
        ) from exc

    def meaning(entry: DotenvEntry) -> tuple[object, ...]:
        return (entry.key, entry.template, entry.interpolated, entry.inherited)

    changed = set(values) | set(gone)
    want = [meaning(entry) for entry in old.entries if entry.key not in changed]
    got = [meaning(entry) for entry in parsed.entries if entry.key not in changed]
    wrong = [
        key for key in values if (entry := parsed.get(key)) is None or entry.literal != values[key]
    ]
    wrong += [key for key in gone if parsed.get(key) is not None]
    if want != got or wrong:
        raise InputError(
            "internal error: editing the env file would change more than "
            f"{', '.join(sorted(changed))}; nothing was changed",
            Location(source, key=(wrong or sorted(changed))[0]),
        )
