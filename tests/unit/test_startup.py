"""The CLI's start-up path: what it imports, and the `.dockerignore` matcher's light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert "reconciler" in modules  # the probe does see the matcher's imports
    assert not modules.intersection(_NOT_AT_START)
