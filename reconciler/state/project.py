"""The compose project name a state governs, by compose's own rules; the lock is keyed on it.

Precedence, as `docker compose` applies it: the project given to it (`compose.project` in the
state, passed as `-p`), then `COMPOSE_PROJECT_NAME`, then the compose file's top-level `name:`,
then the name of the compose file's directory, each normalised as compose-go's
`NormalizeProjectName` does (lower case; only a-z, 0-9, `_` and `-` kept; leading `_`/`-` cut).
Two states that drive the same project thus share one lock, whatever their file paths.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler.errors import InputError
from reconciler.runtime.files import read_text

__all__ = ["normalize_project_name", "project_name"]

_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")


def normalize_project_name(name: str) -> str:
    """compose-go's normalisation of a project name."""
    return _NOT_ALLOWED.sub("", name.lower()).lstrip("_-")


def project_name(
    compose_file: Path, given: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The project name compose uses for `compose_file` (see the module doc for the order)."""
    environ = os.environ if environ is None else environ
    for candidate in (given, environ.get("COMPOSE_PROJECT_NAME"), _top_level_name(compose_file)):
        if candidate:
            name = normalize_project_name(candidate)
            if name:
                return name
    return normalize_project_name(compose_file.resolve().parent.name) or "default"


def _top_level_name(compose_file: Path) -> str | None:
    """The file's top-level `name:`, when it is a plain string (no interpolation)."""
    try:
        text = read_text(compose_file, "compose file").removeprefix("\ufeff")
    except (OSError, InputError):
        return None  # observation reads the file again and reports what is wrong with it
    if not re.search(r"^name\s*:", text, re.MULTILINE):
        return None  # most files have none: skip the parse
    try:
        data = YAML(typ="safe", pure=False).load(text)
    except (YAMLError, RecursionError, ValueError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and "$" not in name else None
