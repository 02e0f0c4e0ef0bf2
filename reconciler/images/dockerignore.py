"""`.dockerignore` matching as docker does it: moby's patternmatcher, ported.

What the docker CLI does with a `.dockerignore`, in three parts, each as moby has it:

- reading the file (`read_patterns`, moby's `ignorefile.ReadAll`): a UTF-8 byte order mark is
  dropped; a line starting with `#` is a comment (only at the very start of the line); each
  line is trimmed; a leading `!` marks an exception; the rest goes through Go's
  `filepath.Clean` (`a/./b/../c` is `a/c`, `a.py/` is `a.py`), and a leading `/` is dropped.
- matching (`PatternMatcher`, moby's `patternmatcher.New` and `MatchesOrParentMatches`): each
  pattern is checked with Go's `filepath.Match` syntax (`[` unclosed, `[]`, `[-x]`, a trailing
  `\\` are errors: `DockerignoreError`), then turned into a regular expression: `*` and `?` stop
  at `/`, `**` crosses it (`**/x` also matches `x`), `\\` makes the next character plain,
  `[...]` are classes. A path matches a pattern when it or one of its parent directories
  does; the last pattern that matches decides, an exception (`!`) re-including. Matching is
  case-sensitive.
- walking the context (`exclude_paths`, the CLI's archive walk): an excluded directory is not
  entered unless an exception names a path under it (`!dir/keep`, by its text: a wildcard
  exception such as `!**/*.py` does not open excluded directories, as in docker); the
  Dockerfile and the `.dockerignore` itself are always sent.

The cases are docker's own: moby's patternmatcher tests and docker-py's `exclude_paths` tests
(tests/images/test_dockerignore.py); where docker-py differs from moby (it folds case and drops a
leading `..`), moby is followed, for it is what the engine's build receives.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "DockerignoreError",
    "PatternMatcher",
    "exclude_paths",
    "go_clean",
    "matches",
    "normalize",
    "read_patterns",
]

_BOM = "\ufeff"
_WILDCARDS = {"*": "[^/]*", "?": "[^/]"}  # neither crosses a `/`


class DockerignoreError(ValueError):
    """A pattern docker refuses: `!` alone, or one `filepath.Match` calls malformed."""


def go_clean(path: str) -> str:
    """Go's `path/filepath.Clean` on a slash path: one slash between names, no `.` names, a
    `..` removing the name before it (at the root, nothing), `.` for nothing."""
    rooted = path.startswith("/")
    names: list[str] = []
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if names and names[-1] != "..":
                names.pop()
            elif not rooted:
                names.append(name)
            continue
        names.append(name)
    cleaned = "/".join(names)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_patterns(text: str) -> list[str]:
    """The patterns of a `.dockerignore` file's text, as moby's `ignorefile.ReadAll` reads them."""
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):  # Go's lines: `\r` is trimmed space
        if number == 0:
            line = line.removeprefix(_BOM)  # noqa: PLW2901 - the first line only
        if line.startswith("#"):
            continue
        pattern = normalize(line)
        if pattern:
            patterns.append(pattern)
    return patterns


def normalize(line: str) -> str:
    """One line as `ReadAll` keeps it: trimmed, cleaned, without a leading `/` (`!` kept)."""
    pattern = line.strip()
    if not pattern:
        return ""
    invert = pattern.startswith("!")
    if invert:
        pattern = pattern[1:].strip()
    if pattern:
        pattern = go_clean(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern[1:]
    return "!" + pattern if invert else pattern


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEXP = "regexp"


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the `!`
    exclusion: bool
    kind: _Kind
    regexp: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])  # the trailing `**` stripped
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]  # the leading `**` stripped
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.fullmatch(path) is not None


class PatternMatcher:
    """Moby's `PatternMatcher` over slash paths relative to the context."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise DockerignoreError('illegal exclusion pattern: "!"')
                text = text[1:]
            _check_syntax(text)
            self.patterns.append(_compile(text, exclusion))

    @property
    def exclusions(self) -> bool:
        """True when a pattern is an exception (`!`)."""
        return any(pattern.exclusion for pattern in self.patterns)

    def matches_exact(self, path: str) -> bool:
        """True when `path` itself is excluded, its parents not considered (`MatchesExact`)."""
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion == matched and pattern.match(path):
                matched = not pattern.exclusion
        return matched

    def matches(self, path: str) -> bool:
        """True when `path` is excluded: the last pattern matching it or a parent is not an
        exception (moby's `MatchesOrParentMatches`)."""
        matched = False
        parent = os.path.dirname(path)
        parents = parent.split("/") if parent else []
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # cannot change the answer
            match = pattern.match(path) or any(
                pattern.match("/".join(parents[: index + 1])) for index in range(len(parents))
            )
            if match:
                matched = not pattern.exclusion
        return matched


def matches(path: str, patterns: Iterable[str]) -> bool:
    """Moby's `Matches(file, patterns)`: whether `path` is excluded; `.` never is."""
    matcher = PatternMatcher(patterns)
    cleaned = go_clean(path)
    return cleaned != "." and matcher.matches(cleaned)


def exclude_paths(root: str, patterns: list[str], dockerfile: str | None = None) -> set[str]:
    """The paths under `root` (files and directories, relative, slash-separated) that docker
    sends as the build context, given the `.dockerignore` `patterns`; `dockerfile` (relative
    to `root`, `Dockerfile` when None) and `.dockerignore` are always sent."""
    dockerfile_path = go_clean(dockerfile or "Dockerfile")
    kept = [normalize(pattern) for pattern in patterns]
    matcher = PatternMatcher([*kept, "!" + dockerfile_path, "!.dockerignore"])
    return set(_walk(root, "", matcher))


def _walk(root: str, relative: str, matcher: PatternMatcher) -> Iterator[str]:
    directory = os.path.join(root, relative) if relative else root
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        path = f"{relative}/{name}" if relative else name
        excluded = matcher.matches(path)
        if not excluded:
            yield path
        full = os.path.join(root, path)
        if os.path.islink(full) or not os.path.isdir(full):
            continue
        if excluded and not _exception_under(path, matcher):
            continue
        yield from _walk(root, path, matcher)


def _exception_under(directory: str, matcher: PatternMatcher) -> bool:
    """True when an exception's text lies under `directory` (the archive walk's test)."""
    prefix = directory + "/"
    return any(
        pattern.exclusion and (pattern.text + "/").startswith(prefix)
        for pattern in matcher.patterns
    )


def _compile(text: str, exclusion: bool) -> _Pattern:
    """Moby's `Pattern.compile` for `/`: the kind of match, and the expression if one."""
    parts: list[str] = []
    kind = _Kind.EXACT
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        index += 1
        if char == "*" and text[index : index + 1] == "*":
            first = index == 1
            index += 2 if text[index + 1 : index + 2] == "/" else 1  # `**/` is `**`
            if index < end:
                parts.append("(.*/)?")
                kind = _Kind.REGEXP
            elif kind is _Kind.EXACT:
                kind = _Kind.PREFIX
            else:
                parts.append(".*")
                kind = _Kind.REGEXP
            if first:
                kind = _Kind.SUFFIX
            continue
        piece, index, regexp = _piece(text, char, index)
        parts.append(piece)
        if regexp:
            kind = _Kind.REGEXP
    if kind is not _Kind.REGEXP:
        return _Pattern(text, exclusion, kind, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # `[[` reads as in Go: a literal
            expression = re.compile("".join(parts))
    except re.error as error:
        raise DockerignoreError(f"syntax error in pattern {text!r}: {error}") from None
    return _Pattern(text, exclusion, kind, expression)


def _piece(text: str, char: str, index: int) -> tuple[str, int, bool]:
    """The expression for `char` (at `index - 1`), where the scan goes on, and whether the
    pattern is a regular expression from here on."""
    if char in _WILDCARDS:
        return _WILDCARDS[char], index, True
    if char in ".+()|{}$":  # plain in a pattern, special in an expression
        return "\\" + char, index, False
    if char == "\\":
        if index < len(text):  # an escaped character is itself
            return re.escape(text[index]), index + 1, True
        return "\\\\", index, False
    if char in "[]":
        return char, index, True
    return char, index, False


def _check_syntax(pattern: str) -> None:
    """Go's `filepath.Match(pattern, ".")` error: a malformed class or a trailing `\\`."""
    index, end = 0, len(pattern)
    while index < end:
        char = pattern[index]
        index += 1
        if char == "\\":
            if index == end:
                raise _bad(pattern)
            index += 1
        elif char == "[":
            if index < end and pattern[index] == "^":
                index += 1
            ranges = 0
            while True:
                if index < end and pattern[index] == "]" and ranges > 0:
                    index += 1
                    break
                index = _class_char(pattern, index)
                if index < end and pattern[index] == "-":
                    index = _class_char(pattern, index + 1)
                ranges += 1


def _class_char(pattern: str, index: int) -> int:
    """Past one character of a class (Go's `getEsc`); a malformed class is an error."""
    end = len(pattern)
    if index >= end or pattern[index] in "-]":
        raise _bad(pattern)
    if pattern[index] == "\\":
        index += 1
        if index >= end:
            raise _bad(pattern)
    index += 1
    if index >= end:
        raise _bad(pattern)  # the class is never closed
    return index


def _bad(pattern: str) -> DockerignoreError:
    return DockerignoreError(f"syntax error in pattern {pattern!r}")
