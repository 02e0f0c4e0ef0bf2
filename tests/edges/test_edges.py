"""Hostile-input corpus (cases.yaml): `python -m reconciler` as a subprocess against special
files, symlinks, temp-file neighbours, secrets, arguments and YAML edge cases; each case checks
the exit code, a hang bound, no traceback, the message, every file left as it was (special
files keep their kind), nothing new outside the case directory, and no leaked secret.

The cases run as subprocesses several at once (the first test to need one runs every selected
case), each in its own process group, killed after `TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.reconcile.saved_plan import body_digest
from tests.edges.layout import Tree, expand, lay_out, snapshot
from tests.edges.runner import HANG_BOUND_SECONDS, TIMEOUT_SECONDS, Outcome, Run, run_all

CORPUS: dict[str, Any] = YAML(typ="safe", pure=True).load(
    (Path(__file__).parent / "cases.yaml").read_text(encoding="utf-8")
)
CASES: list[dict[str, Any]] = CORPUS["cases"]
DEFAULTS: dict[str, Any] = CORPUS["defaults"]
CLASSES = ("yaml", "special", "symlink", "tempfile", "secret", "argument")
KNOWN_KEYS = {
    "id", "class", "why", "argv", "files", "outside", "lockdir", "plan_file", "after_plan",
    "repeat", "exit", "expect", "forbid", "may_change", "expect_files", "secrets", "env",
    "root", "xfail",
}  # fmt: skip
# Areas of a case's temporary root: `case` is its working directory; nothing may appear or
# change in the others; `lock` and `state` are reconciler's own (scanned for secrets only).
CHECKED_AREAS = ("case", "outside", "tmp", "home")
OWN_AREAS = ("lock", "state")
PARALLEL = 8  # most slow cases sleep (a FIFO, a hang): they hold a slot, not a core
_MAX_SCAN = 64 << 20


@dataclass
class Prepared:
    """A case laid out in its temporary root, with its run and the snapshots around it."""

    case: dict[str, Any]
    root: Path
    placeholders: dict[str, str]
    run: Run | None = None
    before: dict[str, Tree] = field(default_factory=dict)
    after: dict[str, Tree] = field(default_factory=dict)
    outcome: Outcome | None = None
    setup_error: str | None = None

    def area(self, name: str) -> Path:
        """The directory of one area (`case`, `outside`, `lock`, ...)."""
        return self.root / name


def _environment(root: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """A small, explicit environment: no engine reachable, no CI, nothing of the caller's."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "RECONCILER_LOCK_DIR": str(root / "lock"),
        "RECONCILER_STATE_DIR": str(root / "state"),
        "DOCKER_HOST": "unix:///nonexistent",
        "DOCKER_CONFIG": str(root / "home" / ".docker"),
    }
    env.update(extra)
    return env


def _argv(args: list[str], placeholders: Mapping[str, str]) -> list[str]:
    return [expand(str(arg), placeholders) for arg in args]


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value


def _prepare(case: dict[str, Any], root: Path) -> Prepared:
    """Lay out the case: its files over the defaults, the outside directory, the lock dir."""
    placeholders = {
        "@CASE@": str(root / "case"),
        "@OUTSIDE@": str(root / "outside"),
        "@LOCK@": str(root / "lock"),
    }
    for placeholder, (piece, times) in case.get("repeat", {}).items():
        placeholders[placeholder] = piece * times
    prepared = Prepared(case, root, placeholders)
    for name in ("tmp", "home", "lock", "state"):
        prepared.area(name).mkdir(parents=True)
    lay_out(prepared.area("case"), {**DEFAULTS["files"], **case.get("files", {})}, placeholders)
    lay_out(
        prepared.area("outside"), {**DEFAULTS["outside"], **case.get("outside", {})}, placeholders
    )
    lay_out(prepared.area("lock"), case.get("lockdir", {}), placeholders)
    return prepared


def _setup_run(prepared: Prepared) -> Run:
    spec = prepared.case["plan_file"]
    return Run(
        key=prepared.case["id"],
        argv=_argv(spec["argv"], prepared.placeholders),
        cwd=prepared.area("case"),
        env=_environment(prepared.root, prepared.case.get("env", {})),
        io_dir=prepared.root / "io-setup",
    )


def _finish_plan_file(prepared: Prepared, made: Outcome) -> None:
    """Edit the plan file a real `plan --out` made, then lay out `after_plan`."""
    spec = prepared.case["plan_file"]
    path = prepared.area("case") / spec["out"]
    if made.code not in (0, 2) or not path.is_file():
        prepared.setup_error = (
            f"setup `plan --out` exited {made.code} (timed out: {made.timed_out}):\n{made.stderr}"
        )
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    for dotted, value in spec.get("set", {}).items():
        _set_dotted(data, dotted, value)
    if spec.get("reseal"):  # an edit whose author also made the digest again
        data.pop("digest", None)
        data["digest"] = body_digest(data)
    text = json.dumps(data, indent=2) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if spec.get("bom") else b"") + text.encode("utf-8"))
    lay_out(prepared.area("case"), prepared.case.get("after_plan", {}), prepared.placeholders)


def _snapshots(prepared: Prepared) -> dict[str, Tree]:
    return {name: snapshot(prepared.area(name)) for name in (*CHECKED_AREAS, *OWN_AREAS)}


def _selected(session: pytest.Session) -> list[dict[str, Any]]:
    """The cases of this module's tests that pytest selected (all of them by default)."""
    wanted = set()
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and item.path == Path(__file__):
            case = callspec.params.get("case")
            if isinstance(case, dict):
                wanted.add(case["id"])
    return [case for case in CASES if case["id"] in wanted]


@pytest.fixture(scope="session")
def edge_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Prepared]:
    """Every selected case laid out and run (several at once); by case id."""
    prepared: dict[str, Prepared] = {}
    for case in _selected(request.session):
        if case.get("root") and os.geteuid() != 0:
            continue  # mknod needs root; the test skips
        prepared[case["id"]] = _prepare(case, tmp_path_factory.mktemp(case["id"]))
    with_plan = [item for item in prepared.values() if "plan_file" in item.case]
    made = run_all([_setup_run(item) for item in with_plan], parallel=PARALLEL)
    for item in with_plan:
        _finish_plan_file(item, made[item.case["id"]])
    ready = [item for item in prepared.values() if item.setup_error is None]
    for item in ready:
        item.before = _snapshots(item)
        item.run = Run(
            key=item.case["id"],
            argv=_argv(item.case["argv"], item.placeholders),
            cwd=item.area("case"),
            env=_environment(item.root, item.case.get("env", {})),
            io_dir=item.root / "io",
        )
    outcomes = run_all([item.run for item in ready if item.run is not None], parallel=PARALLEL)
    for item in ready:
        item.outcome = outcomes[item.case["id"]]
        item.after = _snapshots(item)
    return prepared


# --- the contract ---------------------------------------------------------------------------


def _exit_codes(case: dict[str, Any]) -> list[int]:
    wanted = case["exit"]
    return list(wanted) if isinstance(wanted, list) else [wanted]


def _tail(text: str, lines: int = 12) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join("    | " + line[:300] for line in kept)


def _outcome_problems(
    case: dict[str, Any], outcome: Outcome, placeholders: dict[str, str]
) -> list[str]:
    problems = []
    if outcome.timed_out:
        problems.append(
            f"hang: killed after {TIMEOUT_SECONDS:g} s (process group SIGKILLed); "
            f"expected exit {_exit_codes(case)}"
        )
    elif outcome.code not in _exit_codes(case):
        problems.append(f"exit {outcome.code}, expected {_exit_codes(case)}")
    if not outcome.timed_out and outcome.elapsed >= HANG_BOUND_SECONDS:
        problems.append(
            f"took {outcome.elapsed:.1f} s: over the hang bound {HANG_BOUND_SECONDS:g} s"
        )
    output = outcome.stdout + outcome.stderr
    for marker in ("Traceback", "internal error"):
        if marker in output:
            problems.append(f"{marker!r} in the output")
    for fragment in case.get("expect", []):
        if expand(fragment, placeholders) not in output:
            problems.append(f"the output lacks {expand(fragment, placeholders)!r}")
    for fragment in case.get("forbid", []):
        if expand(fragment, placeholders) in "\n" + output:
            problems.append(f"the output holds {expand(fragment, placeholders)!r}")
    return problems


def _tree_problems(area: str, before: Tree, after: Tree, allowed: set[str]) -> list[str]:
    problems = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new or path in allowed:
            continue
        shown = f"{area}/{path}"
        if old is None:
            problems.append(f"{shown} appeared ({new.kind if new else '?'})")
        elif new is None:
            problems.append(f"{shown} was removed (was a {old.kind})")
        elif old.kind != new.kind:
            problems.append(f"{shown} was a {old.kind}, is now a {new.kind}")
        else:
            problems.append(f"{shown} changed ({old.kind})")
    return problems


def _file_problems(prepared: Prepared) -> list[str]:
    case, outcome = prepared.case, prepared.outcome
    assert outcome is not None
    exited_3 = outcome.code == 3
    allowed = (
        set()
        if exited_3
        else {expand(p, prepared.placeholders) for p in case.get("may_change", [])}
    )
    problems = []
    for area in CHECKED_AREAS:
        problems += _tree_problems(
            area,
            prepared.before[area],
            prepared.after[area],
            allowed if area == "case" else set(),
        )
    if not exited_3 and not outcome.timed_out:
        for name, text in case.get("expect_files", {}).items():
            path = prepared.area("case") / expand(name, prepared.placeholders)
            if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
                problems.append(f"case/{name} does not hold {text!r} after the run")
    return problems


def _written_files(prepared: Prepared) -> list[Path]:
    """Regular files that are new or changed in any area after the run."""
    written = []
    for area in (*CHECKED_AREAS, *OWN_AREAS):
        before, after = prepared.before[area], prepared.after[area]
        for path, entry in after.items():
            if entry.kind == "file" and before.get(path) != entry:
                written.append(prepared.area(area) / path)
    return written


def _secret_problems(prepared: Prepared) -> list[str]:
    outcome = prepared.outcome
    assert outcome is not None
    problems = []
    for index, secret in enumerate(prepared.case.get("secrets", [])):
        forms = {
            "value": secret.encode("utf-8"),
            "sha256": hashlib.sha256(secret.encode()).hexdigest().encode(),
        }
        for form, needle in forms.items():
            for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
                if needle.decode() in text:
                    problems.append(f"secret #{index} ({form}) appears in {stream}")
            for path in _written_files(prepared):
                with path.open("rb") as handle:
                    if needle in handle.read(_MAX_SCAN):
                        shown = path.relative_to(prepared.root)
                        problems.append(f"secret #{index} ({form}) appears in written file {shown}")
    return problems


def contract_problems(prepared: Prepared) -> list[str]:
    """Every way the run broke the contract of its case; empty when it kept it."""
    outcome = prepared.outcome
    assert outcome is not None
    problems = _outcome_problems(prepared.case, outcome, prepared.placeholders)
    problems += _file_problems(prepared)
    problems += _secret_problems(prepared)
    return problems


def _params() -> list[Any]:
    params = []
    for case in CASES:
        marks = []
        if case.get("xfail"):
            marks.append(pytest.mark.xfail(reason=case["xfail"], strict=False))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


# --- tests ----------------------------------------------------------------------------------


def test_corpus_is_well_formed() -> None:
    """Case ids are unique; each case has a known class, argv, exit, why and only known keys."""
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for case in CASES:
        assert set(case) <= KNOWN_KEYS, (case["id"], set(case) - KNOWN_KEYS)
        assert case["class"] in CLASSES, case["id"]
        assert case["argv"], case["id"]
        assert case["why"], case["id"]
        assert "exit" in case, case["id"]


def test_corpus_covers_every_class() -> None:
    """Every class of hostile input has at least five cases."""
    for name in CLASSES:
        assert sum(case["class"] == name for case in CASES) >= 5, name


def test_only_a_missing_command_is_xfail() -> None:
    """xfail marks only cases whose command does not exist yet, never a product bug."""
    for case in CASES:
        if case.get("xfail"):
            assert case["argv"][0] == "validate", case["id"]


@pytest.mark.parametrize("case", _params())
def test_hostile_input_keeps_the_contract(
    case: dict[str, Any], edge_runs: dict[str, Prepared]
) -> None:
    """The CLI keeps the case's contract: exit, hang bound, message, files untouched, no leak."""
    if case["id"] not in edge_runs:
        pytest.skip("needs root (mknod)")
    prepared = edge_runs[case["id"]]
    assert prepared.setup_error is None, prepared.setup_error
    outcome = prepared.outcome
    assert outcome is not None
    problems = contract_problems(prepared)
    assert not problems, (
        f"{case['id']} ({case['why']}): {' '.join(outcome.argv)!r} "
        f"exit {outcome.code} in {outcome.elapsed:.1f} s\n"
        + "\n".join(f"  - {problem}" for problem in problems)
        + f"\n  stdout:\n{_tail(outcome.stdout)}\n  stderr:\n{_tail(outcome.stderr)}"
    )
