"""No module of reconciler/ uses another module's private names: a name with a leading
underscore (dunders aside) is for its own module only; what others need is public."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"


def is_private(name: str) -> bool:
    """`_name`, but not `__name__`."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path) -> str:
    """The dotted name of a file under PACKAGE (`reconciler.compose.edit`)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    """Whether a dotted reconciler name is a module or package (not a name inside one)."""
    base = PACKAGE.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The absolute module an import-from names, resolving relative imports."""
    if not node.level:
        return node.module or ""
    parts = here.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join([*parts[:keep], *([node.module] if node.module else [])])


def violations(source: str, here: str, *, is_package: bool = False) -> list[str]:
    """Private names of other reconciler modules that `source` (module `here`) imports or
    reads as `module._name`, as `line: what` strings."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> the reconciler module it is bound to
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            origin = absolute(node, here, is_package)
            if origin != "reconciler" and not origin.startswith("reconciler."):
                continue
            for alias in node.names:
                if is_private(alias.name) and origin != here:
                    found.append(f"{node.lineno}: from {origin} import {alias.name}")
                elif is_module(f"{origin}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{origin}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("reconciler"):
                    bound = alias.asname or alias.name.split(".")[0]
                    modules[bound] = alias.name if alias.asname else bound
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
            continue
        dotted = dotted_name(node.value, modules)
        if dotted is not None and dotted != here and is_module(dotted):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def dotted_name(node: ast.expr, modules: dict[str, str]) -> str | None:
    """The reconciler module an expression like `edit` or `reconciler.compose.edit` names."""
    if isinstance(node, ast.Name):
        return modules.get(node.id)
    if isinstance(node, ast.Attribute):
        base = dotted_name(node.value, modules)
        return None if base is None else f"{base}.{node.attr}"
    return None


def test_no_module_uses_another_modules_private_names() -> None:
    """No `from reconciler.x import _name` and no `x._name` on a reconciler module, anywhere."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the whole package is walked
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in files
        for line in violations(
            path.read_text(encoding="utf-8"),
            module_name(path),
            is_package=path.name == "__init__.py",
        )
    ]
    assert found == []


def test_the_check_finds_each_kind_of_use() -> None:
    """Imports of private names (absolute and relative) and `module._name` reads are caught."""
    source = (
        "from reconciler.compose.edit import _parse, read_services\n"
        "from .load import _to_plain\n"
        "from reconciler.compose import edit, yaml_doc as doc\n"
        "import reconciler.state.load\n"
        "import reconciler.state.fleet as fleet\n"
        "edit._render(doc._EOL, reconciler.state.load._parse, fleet._KIND)\n"
    )
    assert violations(source, "reconciler.state.fleet") == [
        "1: from reconciler.compose.edit import _parse",
        "2: from reconciler.state.load import _to_plain",
        "6: edit._render",
        "6: doc._EOL",
        "6: reconciler.state.load._parse",
    ]


def test_the_check_allows_dunders_own_names_and_other_objects() -> None:
    """Dunder names, a module's own private names and private attributes of objects pass."""
    source = (
        "from reconciler.compose import edit\n"
        "from reconciler.compose.edit import __all__ as names\n"
        "from reconciler.compose.yaml_doc import _NULL_VALUES\n"
        "import reconciler\n"
        "print(edit.__name__, reconciler.__version__, names, _NULL_VALUES)\n"
        "doc = edit.analyse('', None)\n"
        "doc._starts\n"
    )
    assert violations(source, "reconciler.compose.yaml_doc") == []
