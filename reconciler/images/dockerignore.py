"""docker-py's `.dockerignore` matcher (`docker.utils.build.exclude_paths`), loaded on its own.

`import docker.utils.build` first runs docker-py's package `__init__`, which imports its whole
HTTP client (requests, urllib3, charset_normalizer, the SSH transport's probes): about 0.1 s of
every CLI start, for a matcher that uses none of it. Here the matcher's own modules
(`utils/build.py`, `utils/fnmatch.py`, `constants.py`, `version.py`) are loaded from docker-py's
installed files under a private package name, on first use. The code that runs is docker-py's
own; the real `docker` package is neither imported nor shadowed, and when it is already
imported its matcher is used as is.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable

__all__ = ["exclude_paths"]

_ALIAS = "_reconciler_docker_py"
_lock = threading.Lock()


def exclude_paths(root: str, patterns: list[str], dockerfile: str | None = None) -> set[str]:
    """The paths under `root` (files and directories, relative, slash-separated) that docker
    sends as the build context, given the `.dockerignore` `patterns`."""
    matcher: Callable[[str, list[str], str | None], Iterable[str]] = _matcher()
    return set(matcher(root, list(patterns), dockerfile))


def _matcher() -> Callable[[str, list[str], str | None], Iterable[str]]:
    loaded = sys.modules.get("docker.utils.build") or sys.modules.get(f"{_ALIAS}.utils.build")
    if loaded is None:
        with _lock:
            loaded = _load()
    return loaded.exclude_paths  # type: ignore[no-any-return]


def _load() -> types.ModuleType:
    name = f"{_ALIAS}.utils.build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("docker")  # finds docker-py without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("docker-py (the `docker` distribution) is not installed")
    root = next(iter(spec.submodule_search_locations))
    for package, path in ((_ALIAS, root), (f"{_ALIAS}.utils", os.path.join(root, "utils"))):
        module = types.ModuleType(package)
        module.__path__ = [path]
        module.__package__ = package
        sys.modules.setdefault(package, module)
    return importlib.import_module(name)
