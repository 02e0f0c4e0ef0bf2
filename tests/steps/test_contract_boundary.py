"""The step boundary: outside `reconciler/steps/`, steps are reached only through the one list.

Every module under reconciler/ outside steps/ is parsed with `ast`: its imports (lazy ones in
functions and `TYPE_CHECKING` blocks too) and its string constants naming a module (the lazy
`_WHERE` table of `reconciler/__init__.py`, `importlib.import_module` arguments) may name
`reconciler.steps.registry` (which lists the steps) and `reconciler.steps.contract` (their
shape), never a step module, a steps-internal helper, or a step's facts type.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import reconciler
from reconciler.steps import registry

PACKAGE = Path(reconciler.__file__).parent
STEPS_DIR = PACKAGE / "steps"
ALLOWED = frozenset({"reconciler.steps.registry", "reconciler.steps.contract"})
_MODULE_NAME = re.compile(r"reconciler\.steps(\.[A-Za-z_][A-Za-z0-9_.]*)?")


def _facts_types() -> set[str]:
    """The facts types the step modules define (classes named `...Facts`)."""
    names: set[str] = set()
    for path in STEPS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Facts"):
                names.add(node.name)
    return names


def _violations(source: str, facts_types: set[str]) -> list[str]:
    """What in `source` (a module outside steps/) crosses the boundary."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"import {alias.name}"
                for alias in node.names
                if _MODULE_NAME.fullmatch(alias.name) and alias.name not in ALLOWED
            ]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [alias.name for alias in node.names]
            if node.module == "reconciler.steps":
                found += [
                    f"from reconciler.steps import {name}"
                    for name in names
                    if f"reconciler.steps.{name}" not in ALLOWED
                ]
            elif _MODULE_NAME.fullmatch(node.module) and node.module not in ALLOWED:
                found.append(f"from {node.module} import {', '.join(names)}")
            found += [f"{name} (a step's facts type)" for name in names if name in facts_types]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _MODULE_NAME.fullmatch(node.value)
            and node.value not in ALLOWED
        ):
            found.append(f"lazy import of {node.value!r}")
    return found


def test_no_module_outside_steps_names_a_step_module_or_facts_type() -> None:
    """Only steps.registry (and steps.contract) are imported from outside reconciler/steps/."""
    facts_types = _facts_types()
    assert {"ServicesFacts", "StackFacts", "ChecksFacts"} <= facts_types
    crossing = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if STEPS_DIR not in path.parents
        and (found := _violations(path.read_text(encoding="utf-8"), facts_types))
    }
    assert crossing == {}


def test_the_checker_sees_each_way_of_crossing() -> None:
    """Direct, from-package, lazy-string and facts-type imports are each reported."""
    facts = {"ServicesFacts"}
    source = (
        "import reconciler.steps.services\n"
        "from reconciler.steps import checks, registry\n"
        "from reconciler.steps.probes.junit import CaseResult\n"
        "from reconciler.steps.registry import ServicesFacts\n"
        "def later():\n"
        "    from reconciler.steps.stack import overlay\n"
        "_WHERE = {'CheckResult': 'reconciler.steps.checks', 'x': 'reconciler.steps.registry'}\n"
    )
    assert sorted(_violations(source, facts)) == sorted(
        [
            "import reconciler.steps.services",
            "from reconciler.steps import checks",
            "from reconciler.steps.probes.junit import CaseResult",
            "ServicesFacts (a step's facts type)",
            "lazy import of 'reconciler.steps.checks'",
            "from reconciler.steps.stack import overlay",
        ]
    )


def test_the_registry_lists_every_step_module() -> None:
    """Each step module (one exporting `STEP`) is in the registry's lists, in one mode or both."""
    modules = {
        path.stem
        for path in STEPS_DIR.glob("*.py")
        if re.search(r"^STEP\b", path.read_text(encoding="utf-8"), re.MULTILINE)
    }
    listed = {
        definition.observe.__module__.rsplit(".", 1)[-1]
        for definition in (*registry.STEPS, *registry.SWARM_STEPS)
    }
    assert (
        listed == modules == {"compose_file", "images", "services", "stack", "migrations", "checks"}
    )
