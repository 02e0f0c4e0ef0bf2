"""Dotted key paths of `files: {PATH: {set: {dotted.path: value}}}`, and compose interpolation.

Plain text rules shared by the state loader (which refuses a bad path or an interpolated
environment pin before anything runs) and the YAML editor in `reconciler.compose.yaml_set`.
"""

from __future__ import annotations

import re

__all__ = ["INTERPOLATION", "YamlPath", "format_path", "parse_path"]

YamlPath = tuple[str, ...]

# compose interpolates `${VAR...}` and `$VAR`; `$$` is a literal dollar sign.
INTERPOLATION = re.compile(r"(?<!\$)(?:\$\$)*\$(?:\{|[A-Za-z_])")


def parse_path(dotted: str) -> YamlPath:
    """`global.scrape_interval` -> ("global", "scrape_interval"); a key holding dots is quoted:
    `'a.b'.c` or `"a.b".c`. Raises ValueError for an empty key or an unclosed quote."""
    keys: list[str] = []
    index = 0
    while True:
        if index < len(dotted) and dotted[index] in "'\"":
            quote = dotted[index]
            end = dotted.find(quote, index + 1)
            if end < 0:
                raise ValueError(f"unclosed {quote} in path {dotted!r}")
            keys.append(dotted[index + 1 : end])
            index = end + 1
            if index < len(dotted) and dotted[index] != ".":
                raise ValueError(f"a quoted key must be followed by '.' in path {dotted!r}")
        else:
            end = dotted.find(".", index)
            end = len(dotted) if end < 0 else end
            key = dotted[index:end]
            if not key:
                raise ValueError(f"empty key in path {dotted!r}")
            keys.append(key)
            index = end
        if index >= len(dotted):
            return tuple(keys)
        index += 1  # the dot
        if index >= len(dotted):
            raise ValueError(f"path {dotted!r} ends with '.'")


def format_path(path: YamlPath) -> str:
    """The dotted form of a path, quoting keys that hold a dot (the inverse of parse_path)."""
    return ".".join(f"'{key}'" if "." in key or not key else key for key in path)
