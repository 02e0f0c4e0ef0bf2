"""Mutation check of the fast suite: each mutation, tried alone, must make it fail.

    .venv/bin/python tests/mutations/run_mutations.py [--jobs N]

Copies the repository (without .venv, .git and caches) to a temporary directory once per
run, applies one small textual patch to `reconciler/` there, and runs the fast suite in the
copy with the copy first on PYTHONPATH (checked: `reconciler` must import from the copy).
The unmutated copy runs too and must pass, or no kill means anything. A patch whose text is not
found exactly once fails the script before anything runs. Exit 0 only when the baseline passes
and every mutation is killed.

The runs point DOCKER_HOST at a socket that does not exist: the fast suite needs no engine, and
this proves it (and keeps other people's containers out of tests that compare `docker ps`).
Each run has its own TMPDIR and RECONCILER_LOCK_DIR, so parallel runs cannot meet.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
PYTEST = [str(PYTHON), "-m", "pytest", "-q", "-m", "not docker", "-x", "-p", "no:cacheprovider"]
IGNORED = shutil.ignore_patterns(
    ".venv", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache", "__pycache__", "*.egg-info"
)


@dataclass(frozen=True)
class Mutation:
    """A plausible slip: replace `old` (found exactly once in `path`) with `new`."""

    name: str
    path: str
    old: str
    new: str


MUTATIONS = (
    Mutation(
        "1 migrations diff inverted",
        "reconciler/steps/migrations.py",
        "        if status.up_to_date:\n            ok.append(",
        "        if not status.up_to_date:\n            ok.append(",
    ),
    Mutation(
        "2 checks.matches always true",
        "reconciler/steps/checks.py",
        "    return bool(actual == wanted)\n",
        "    return True\n",
    ),
    Mutation(
        "3 readiness: unhealthy is ready",
        "reconciler/steps/services.py",
        '            return Readiness(service, False, True, "unhealthy")\n',
        "            return None\n",
    ),
    Mutation(
        "4 JUnit check failures not counted",
        "reconciler/report.py",
        'suite.set("failures", str(sum(case.find("failure") is not None for case in suite)))',
        'suite.set("failures", "0")',
    ),
    Mutation(
        "5 rollback disabled",
        "reconciler/reconcile.py",
        "        if rollback and made and",
        "        if False and made and",
    ),
    Mutation(
        "6 checks step lists nothing",
        "reconciler/steps/checks.py",
        "    return Plan((), tuple(rows))\n",
        "    return Plan((), ())\n",
    ),
)


@dataclass(frozen=True)
class Outcome:
    """How the fast suite did on one copy."""

    name: str
    passed: bool
    failures: tuple[str, ...]
    seconds: float
    tail: str


def check_patches() -> None:
    """Every mutation's text is in the source exactly once; otherwise stop here, loudly."""
    problems = []
    for mutation in MUTATIONS:
        text = (REPO / mutation.path).read_text()
        count = text.count(mutation.old)
        if count != 1:
            problems.append(
                f"{mutation.name}: {mutation.old!r} found {count} times in {mutation.path}"
            )
    if problems:
        sys.exit("mutation patches no longer apply (update them):\n  " + "\n  ".join(problems))


def environment(copy: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"CI", "PYTHONPATH"}}
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["DOCKER_HOST"] = "unix:///nonexistent/mutfx-no-engine.sock"
    # Runs go in parallel: each gets its own lock directory and temporary files.
    env["RECONCILER_LOCK_DIR"] = str(copy.parent / "locks")
    env["TMPDIR"] = str(copy.parent / "tmp")
    (copy.parent / "tmp").mkdir(exist_ok=True)
    return env


def make_copy(parent: Path, mutation: Mutation | None) -> Path:
    """A copy of the repository with `mutation` applied; checked to be the `reconciler` imported."""
    copy = parent / (re.sub(r"\W+", "-", mutation.name) if mutation else "baseline") / "repo"
    shutil.copytree(REPO, copy, ignore=IGNORED, symlinks=True)
    # The state loader's root is the git work tree holding a state file (states/canary.yaml
    # reaches ../deploy). An empty repository makes the copy one; the real .git is not copied.
    subprocess.run(["git", "init", "--quiet", str(copy)], check=True)
    if mutation is not None:
        target = copy / mutation.path
        text = target.read_text()
        assert text.count(mutation.old) == 1, mutation.name
        target.write_text(text.replace(mutation.old, mutation.new))
    where = subprocess.run(
        [str(PYTHON), "-c", "import reconciler; print(reconciler.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=copy,
        env=environment(copy),
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"the copy's reconciler is not the one imported: {where}")
    return copy


def run_suite(parent: Path, mutation: Mutation | None, logs: Path | None) -> Outcome:
    copy = make_copy(parent, mutation)
    started = time.monotonic()
    done = subprocess.run(
        PYTEST, capture_output=True, text=True, check=False, cwd=copy, env=environment(copy)
    )
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{copy.parent.name}.log").write_text(done.stdout + done.stderr)
    failures = tuple(
        line.split(" - ")[0].split(" ", 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith(("FAILED ", "ERROR "))
    )
    tail = "\n".join(done.stdout.strip().splitlines()[-15:])
    name = mutation.name if mutation else "(none: baseline)"
    return Outcome(name, done.returncode == 0, failures, time.monotonic() - started, tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4))
    parser.add_argument("--logs", type=Path, help="keep each run's pytest output here")
    parser.add_argument("--only", help="run only the mutations whose name contains this")
    args = parser.parse_args()
    check_patches()
    with tempfile.TemporaryDirectory(prefix="mutfx-mutations-") as temp:
        parent = Path(temp)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            chosen = [m for m in MUTATIONS if args.only is None or args.only in m.name]
            outcomes = list(pool.map(lambda m: run_suite(parent, m, args.logs), [None, *chosen]))
    baseline, *mutated = outcomes
    width = max(len(o.name) for o in outcomes)
    print(f"{'mutation':<{width}}  {'killed?':<8}  {'seconds':>7}  by")
    for outcome in outcomes:
        if outcome is baseline:
            verdict = "passes" if outcome.passed else "FAILS"
        else:
            verdict = "no" if outcome.passed else "yes"
        killers = ", ".join(outcome.failures) or ("-" if outcome.passed else "(see output)")
        print(f"{outcome.name:<{width}}  {verdict:<8}  {outcome.seconds:7.1f}  {killers}")
    ok = True
    if not baseline.passed:
        print(f"\nthe unmutated copy fails, so kills mean nothing:\n{baseline.tail}")
        ok = False
    survivors = [o.name for o in mutated if o.passed]
    if survivors:
        print(f"\nsurvived: {', '.join(survivors)}")
        ok = False
    for outcome in mutated:
        if not outcome.passed and not outcome.failures:
            print(f"\n{outcome.name}: the suite failed without naming a test:\n{outcome.tail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
