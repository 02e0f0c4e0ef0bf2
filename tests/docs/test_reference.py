"""The generated references in docs/: current with the models and the parser, and complete."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import reference
from reconciler.state.reference import schema_keys
from reconciler.state.schema import fleet_schema, state_schema
from tests.conftest import RECONCILER, REPO

DOCS = REPO / "docs"


@pytest.mark.parametrize("name", sorted(reference.GENERATED))
def test_generated_document_is_current(name: str) -> None:
    """docs/NAME equals what `make docs` would write: regenerate it after editing a model or flag."""
    path = DOCS / name
    assert path.read_text(encoding="utf-8") == reference.expected(DOCS)[path], (
        f"{path} is stale: run `make docs`"
    )


@pytest.mark.parametrize("fleet", [False, True], ids=["state", "fleet"])
def test_every_schema_key_is_in_the_state_file_reference(fleet: bool) -> None:
    """Every property name of `python -m reconciler schema [--fleet]`, $defs included, is documented."""
    argv = [*RECONCILER, "schema", *(["--fleet"] if fleet else [])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    keys = set(schema_keys(json.loads(done.stdout)))
    nested = {"waves", "engine"} if fleet else {"expect_items", "password_secret", "set", "json"}
    assert nested <= keys  # the walk reaches nested $defs and aliases
    text = (DOCS / "state-file.md").read_text(encoding="utf-8")
    missing = sorted(key for key in keys if f"| `{key}` |" not in text)
    assert not missing, f"keys missing from docs/state-file.md: {missing}"


def test_every_field_has_a_description() -> None:
    """Each property of the state and fleet schemas carries the text the reference shows."""

    def undescribed(schema: dict[str, Any]) -> list[str]:
        nodes = [("", schema), *schema.get("$defs", {}).items()]
        return [
            f"{name or 'root'}.{key}"
            for name, node in nodes
            for key, prop in node.get("properties", {}).items()
            if not prop.get("description")
        ]

    assert undescribed(state_schema()) + undescribed(fleet_schema()) == []


def test_check_mode_names_a_stale_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m reconciler.cli.reference --check` exits 1 for an edited table, 0 once regenerated."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    path = docs / "state-file.md"
    path.write_text(
        path.read_text(encoding="utf-8").replace("Compose project name", "Project"),
        encoding="utf-8",
    )
    assert reference.main(["--check", str(docs)]) == 1
    assert f"{path} is stale" in capsys.readouterr().err
    assert reference.main([str(docs)]) == 0
    assert path.read_text(encoding="utf-8") == (DOCS / "state-file.md").read_text(encoding="utf-8")
    assert reference.main(["--check", str(docs)]) == 0


def test_splice_refuses_a_document_without_markers() -> None:
    """A document whose markers were deleted is an error, not silently left as it is."""
    with pytest.raises(ValueError, match="markers"):
        reference.spliced("# prose only\n", "generated")
