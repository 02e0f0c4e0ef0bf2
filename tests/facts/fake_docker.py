"""A `docker` CLI that replays recorded outputs, so tests drive the real adapter with no engine.

A scenario is a directory holding `scenario.json`:

    {"calls": [{"argv": "compose config --format json", "rc": 0,
                "stdout": "01-compose-config.stdout", "stderr": null}, ...]}

`argv` is the command after `docker`, as `shlex.join` writes it, with compose's `--file` and
`--project-name` dropped and the stack directory written `@@DIR@@` (in outputs too). An `argv`
may also be an fnmatch pattern (`buildx build *`). Several entries for one argv are answers
to its first, second, ... call (the last one repeats). Output files are relative to the
scenario directory. A call with nothing recorded exits 99 saying so, so a test never passes on
a guess.

`on_path(...)` puts a replaying `docker` first on PATH for a test; `install(...)` writes one.
With `real=` it records instead: it runs the real CLI and appends what it answered to the
scenario (tests/facts/record_mutfx.py).
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not imported at run time: the fake starts on every docker call
    import pytest

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ROOT_MARK = "@@DIR@@"
_COMPOSE_GLOBALS = ("--file", "--project-name")


def install(
    bin_dir: Path, scenario: Path, *, root: Path, log: Path, real: str | None = None
) -> Path:
    """Write `bin_dir/docker` replaying `scenario` (recording into it when `real` is given)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "FAKE_DOCKER_SCENARIO": str(scenario),
        "FAKE_DOCKER_ROOT": str(root),
        "FAKE_DOCKER_LOG": str(log),
        "FAKE_DOCKER_REAL": real or "",
    }
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in settings.items())
    script = bin_dir / "docker"
    script.write_text(
        f'#!/bin/sh\n{exports} exec {shlex.quote(sys.executable)} {shlex.quote(__file__)} "$@"\n'
    )
    script.chmod(0o755)
    return script


def first_on_path(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `bin_dir/docker` the docker every call runs: first on PATH, compose included.

    reconciler runs `compose config` through the compose plugin itself when it finds one
    (reconciler.docker.adapter._compose_plugin), which a `docker` on PATH would not see.
    """
    for key, value in path_env(bin_dir).items():
        monkeypatch.setenv(key, value)


def path_env(bin_dir: Path) -> dict[str, str]:
    """The variables `first_on_path` sets, for a child's environment."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RECONCILER_COMPOSE_VIA_DOCKER": "1",
    }


def compose_plugin(
    directory: Path, monkeypatch: pytest.MonkeyPatch, *, present: bool = True
) -> Path:
    """Make `directory/plugins/docker/cli-plugins/docker-compose` the only place the adapter
    looks for the compose plugin (reconciler.docker.adapter._compose_plugin), and write an
    executable one there unless `present` is False; return its path."""
    from reconciler.docker import adapter  # noqa: PLC0415 - not in the fake's start-up

    plugin = directory / "plugins" / "docker" / "cli-plugins" / "docker-compose"
    if present:
        plugin.parent.mkdir(parents=True)
        plugin.write_text("compose 1")
        plugin.chmod(0o755)
    monkeypatch.setattr(adapter, "_PLUGIN_ROOTS", (str(directory / "plugins"),))
    monkeypatch.setenv("DOCKER_CONFIG", str(directory / "no-user-plugins"))
    monkeypatch.delenv("RECONCILER_COMPOSE_VIA_DOCKER", raising=False)
    return plugin


def on_path(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, root: Path | None = None
) -> Path:
    """Put a `docker` replaying scenarios/`scenario` first on PATH; return its call log.

    `root` is the directory recorded as @@DIR@@ (the stack's copy); `tmp_path` by default.
    """
    log = tmp_path / "fake-docker" / "calls.log"
    bin_dir = tmp_path / "fake-docker" / "bin"
    install(bin_dir, SCENARIOS / scenario, root=root or tmp_path, log=log)
    first_on_path(bin_dir, monkeypatch)
    return log


def calls(log: Path) -> list[str]:
    """The normalised argv of every call the fake answered, in order."""
    return log.read_text().splitlines() if log.exists() else []


def normalize(args: list[str], root: str) -> str:
    """The scenario key of a docker command line (see the module docstring)."""
    args = list(args)
    if args[:1] == ["compose"]:
        while len(args) > 2 and args[1] in _COMPOSE_GLOBALS:
            del args[1:3]
    key = shlex.join(args)
    return key.replace(root, ROOT_MARK) if root else key


def _locked_append(path: Path, line: str) -> int:
    """Append `line` to `path` and return how many earlier lines were equal to it."""
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        seen = handle.read().splitlines().count(line)
        handle.write(line + "\n")
    return seen


def _replay(key: str, scenario: Path, root: str, seen: int) -> int:
    recorded: list[dict[str, Any]] = json.loads((scenario / "scenario.json").read_text())["calls"]
    answers = [c for c in recorded if c["argv"] == key] or [
        c for c in recorded if fnmatch.fnmatchcase(key, c["argv"])
    ]
    if not answers:
        sys.stderr.write(f"fake docker: nothing recorded in {scenario.name} for: {key}\n")
        return 99
    answer = answers[min(seen, len(answers) - 1)]
    for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        if answer.get(name):
            stream.write((scenario / answer[name]).read_text().replace(ROOT_MARK, root))
    return int(answer.get("rc", 0))


def _record(key: str, args: list[str], scenario: Path, root: str, real: str) -> int:
    done = subprocess.run([real, *args], capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    index_file = scenario / "scenario.json"
    with (scenario / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = json.loads(index_file.read_text()) if index_file.exists() else {"calls": []}
        entry: dict[str, Any] = {"argv": key, "rc": done.returncode}
        number = len(index["calls"]) + 1
        slug = re.sub(r"[^a-z0-9]+", "-", " ".join(key.split()[:3]).lower()).strip("-")[:24]
        for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
            entry[name] = None
            if text:
                entry[name] = f"{number:02d}-{slug}.{name}"
                (scenario / entry[name]).write_text(text.replace(root, ROOT_MARK))
        previous = [c for c in index["calls"] if c["argv"] == key]
        if previous and _same(previous[-1], entry, scenario):
            for name in ("stdout", "stderr"):
                if entry[name]:
                    (scenario / entry[name]).unlink()
        else:
            index["calls"].append(entry)
            index_file.write_text(json.dumps(index, indent=2) + "\n")
    return done.returncode


def _same(old: dict[str, Any], new: dict[str, Any], scenario: Path) -> bool:
    def text(entry: dict[str, Any], name: str) -> str:
        return (scenario / entry[name]).read_text() if entry.get(name) else ""

    return old["rc"] == new["rc"] and all(
        text(old, name) == text(new, name) for name in ("stdout", "stderr")
    )


def main() -> int:
    scenario = Path(os.environ["FAKE_DOCKER_SCENARIO"])
    root = os.environ.get("FAKE_DOCKER_ROOT", "")
    args = sys.argv[1:]
    key = normalize(args, root)
    seen = _locked_append(Path(os.environ["FAKE_DOCKER_LOG"]), key)
    real = os.environ.get("FAKE_DOCKER_REAL")
    if real:
        return _record(key, args, scenario, root, real)
    return _replay(key, scenario, root, seen)


if __name__ == "__main__":
    sys.exit(main())
