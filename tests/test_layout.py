"""The tests mirror the packages: each test file names the module of reconciler/ it tests.

`tests/<package>/test_<module>.py` tests `reconciler/<package>/<module>.py` (or the subpackage
`<module>/`), and `tests/test_<module>.py` a top-level module; `test_<module>_<aspect>.py`
holds one aspect of a module when one file would be too long (`cli/test_main_startup.py`).
Fast and slow tests of a module share its file: the `docker` marker alone tells them apart, so
no file is called `test_fast_*`. Every test says in a one-line docstring what it checks.

The documented exceptions are the data-driven suites and shared folders in `NOT_PACKAGES`
(they run the CLI or the planner as a whole, or hold fixtures) and `tests/test_layout.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests import conftest

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "reconciler"

# Folders of tests/ that are no package of reconciler/, each with why.
NOT_PACKAGES = {
    "bad_input": "bad-input corpus, run through the CLI (exit 3 and its message)",
    "docs": "docs/ stays true to the code: its links, its generated references",
    "benchmarks": "timing scripts, no tests",
    "edges": "hostile-input corpus and property test of the CLI's exit codes",
    "facts": "recorded docker answers and the fake docker CLI",
    "faults": "the fault-injecting docker wrapper",
    "fixtures": "the e2e stack and the canary's broken split",
    "mutations": "the mutation run that checks the fast suite catches slips",
    "planner": "planner cases as data: state + facts -> changes, across every step",
    "typing": "the documented library use, type-checked",
}
# Test files at the top of tests/ that test no one module: rules over the whole package.
TOP_LEVEL_EXCEPTIONS = {"test_layout.py", "test_private_names.py", "test_public_names.py"}


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def _misplaced(path: Path) -> str | None:
    """Why the test file at `path` does not mirror a module of reconciler/, or None."""
    relative = path.relative_to(TESTS)
    if relative.parts[0] in NOT_PACKAGES:
        return None
    if len(relative.parts) == 1 and relative.name in TOP_LEVEL_EXCEPTIONS:
        return None
    package = PACKAGE.joinpath(*relative.parts[:-1])
    if not (package / "__init__.py").is_file():
        return f"{relative}: reconciler/{relative.parent} is no package"
    stem = path.stem.removeprefix("test_")
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    if any(stem == module or stem.startswith(module + "_") for module in modules):
        return None
    return f"{relative}: no module {stem!r} (or one it starts with) in {package.relative_to(PACKAGE.parent)}"


def _tests_without_docstring(path: Path, root: Path = TESTS) -> list[str]:
    """`file:line name` of each test function in `path` that has no docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(
            "test"
        ):
            docstring = ast.get_docstring(node)
            if not docstring or not docstring.strip():
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return found


def test_every_test_file_mirrors_a_module() -> None:
    """Each test file under tests/<package>/ names a module of that package of reconciler/."""
    assert [why for path in _test_files() if (why := _misplaced(path))] == []


def test_no_fast_prefix() -> None:
    """No test file is called `test_fast_*`: the `docker` marker tells slow from fast."""
    assert [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_fast_*.py")] == []


def test_every_test_has_a_docstring() -> None:
    """Every test function says in its docstring what it checks."""
    assert [line for path in _test_files() for line in _tests_without_docstring(path)] == []


def test_the_layout_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The placement rule refuses a non-package folder or an unknown module; a bare test is found."""
    assert _misplaced(TESTS / "steps" / "test_checks.py") is None
    assert _misplaced(TESTS / "cli" / "test_main_startup.py") is None
    assert _misplaced(TESTS / "steps" / "probes" / "test_command.py") is None
    assert _misplaced(TESTS / "test_logs.py") is None
    assert (
        _misplaced(TESTS / "unit" / "test_checks.py")
        == "unit/test_checks.py: reconciler/unit is no package"
    )
    why = _misplaced(TESTS / "steps" / "test_nothing.py")
    assert why is not None
    assert why.startswith("steps/test_nothing.py: no module 'nothing'")
    source = tmp_path / "test_x.py"
    source.write_text('def test_a():\n    """Checks a."""\n\n\ndef test_b():\n    pass\n')
    assert _tests_without_docstring(source, root=tmp_path) == ["test_x.py:5 test_b"]


def _item(name: str, *marks: str, fixtures: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(
        nodeid=name,
        fixturenames=fixtures,
        get_closest_marker=lambda mark: mark if mark in marks else None,
    )


def test_engine_stopping_tests_run_last_in_their_order() -> None:
    """`stops_engine` tests are moved after all others; the rest keep their collected order."""
    items = [
        _item("a"),
        _item("stop1", "docker", "stops_engine"),
        _item("b", "docker"),
        _item("stop2", "docker", "stops_engine"),
        _item("c"),
    ]
    conftest.pytest_collection_modifyitems(cast(Any, items))
    assert [item.nodeid for item in items] == ["a", "b", "c", "stop1", "stop2"]


def test_an_engine_test_without_the_docker_mark_is_refused() -> None:
    """A test using the `docker_engine` fixture but not marked `docker` stops the collection."""
    items = [
        _item("ok", "docker", fixtures=("docker_engine",)),
        _item("bad", fixtures=("stack", "docker_engine")),
    ]
    with pytest.raises(pytest.UsageError, match=r"without the docker mark: \['bad'\]"):
        conftest.pytest_collection_modifyitems(cast(Any, items))


def test_the_daemon_stop_test_is_marked_to_run_last() -> None:
    """The test that stops the main engine is marked `stops_engine` (and `docker`)."""
    tree = ast.parse((TESTS / "reconcile" / "test_loop_daemon_stop.py").read_text())
    marks = [
        ast.unparse(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "pytestmark"
    ]
    assert marks == ["[pytest.mark.docker, pytest.mark.stops_engine]"]
