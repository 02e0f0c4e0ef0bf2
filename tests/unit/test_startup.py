"""The CLI's start-up path: what it imports, and the `.dockerignore` matcher loaded on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths as docker_py_exclude_paths

from reconciler.images.dockerignore import exclude_paths

# docker-py's HTTP client, which the CLI never uses: importing it cost about 0.1 s per run.
_NOT_AT_START = ("docker", "requests", "urllib3", "charset_normalizer", "rich")


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    )
    return {name.partition(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


def test_cli_start_up_imports_no_http_client() -> None:
    # What `python -m reconciler` imports before it runs a command (rich hidden as __main__ does).
    modules = _imported_after(
        "sys.modules['rich'] = None\nimport reconciler.cli.main\ndel sys.modules['rich']"
    )
    assert "python_on_whales" in modules  # the probe does see the start-up imports
    assert not modules.intersection(_NOT_AT_START)


def test_matcher_loads_without_docker_py_package(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    code = (
        "import sys\nfrom pathlib import Path\nfrom reconciler.images.dockerignore import exclude_paths\n"
        f"print(sorted(exclude_paths({str(tmp_path)!r}, [])))\n"
    )
    modules = _imported_after(code)
    assert "_reconciler_docker_py" in modules
    assert not modules.intersection(_NOT_AT_START)


def _tree(root: Path) -> None:
    files = [
        "Dockerfile",
        "app/main.py",
        "app/__pycache__/main.cpython-311.pyc",
        "app/tests/test_main.py",
        "docs/readme.md",
        "docs/keep.md",
        ".git/HEAD",
        "node_modules/x/index.js",
        "data/a.csv",
        "data/sub/b.csv",
        "weird name/[x].txt",
    ]
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    (root / "link").symlink_to("app/main.py")


@pytest.mark.parametrize(
    "patterns",
    [
        [],
        ["**/__pycache__", ".git", "node_modules"],
        ["docs", "!docs/keep.md"],
        ["*", "!app", "app/tests"],
        ["data/**/*.csv", "!data/sub"],
        ["Dockerfile", "weird name/?x?.txt", "/link"],
        ["**", "!**/*.py"],
    ],
)
def test_matcher_is_docker_pys_own(tmp_path: Path, patterns: list[str]) -> None:
    _tree(tmp_path)
    ours = exclude_paths(str(tmp_path), list(patterns), dockerfile="Dockerfile")
    theirs = set(docker_py_exclude_paths(str(tmp_path), list(patterns), dockerfile="Dockerfile"))
    assert ours == theirs
    assert ours  # the tree is never wholly excluded: the Dockerfile is always sent


def test_patterns_list_is_not_changed(tmp_path: Path) -> None:
    _tree(tmp_path)
    patterns = ["docs"]
    exclude_paths(str(tmp_path), patterns)
    assert patterns == ["docs"]
