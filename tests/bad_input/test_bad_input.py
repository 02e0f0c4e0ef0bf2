"""Bad-input corpus (cases.yaml): exit 3, a message naming file:line:column and the key, no
traceback, and every file and container left exactly as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.cli.main import main

CORPUS: dict[str, Any] = YAML(typ="safe", pure=True).load(
    (Path(__file__).parent / "cases.yaml").read_text()
)
CASES: list[dict[str, Any]] = CORPUS["cases"]


def expand(text: str, case: dict[str, Any]) -> str:
    """`text` with each of the case's `repeat` placeholders replaced by its piece, repeated."""
    for placeholder, (piece, times) in case.get("repeat", {}).items():
        text = text.replace(placeholder, piece * times)
    return text


def write_case(case: dict[str, Any], directory: Path) -> Path:
    """Lay out the case's state and compose files; return the state file."""
    directory.mkdir(parents=True)
    compose = expand(case.get("compose", CORPUS["default_compose"]), case)
    (directory / "compose.yml").write_text(compose)
    for name, text in case.get("files", {}).items():  # env files and the like
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(text.encode("utf-8"))
    state = directory / "state.yaml"
    if "state_hex" in case:
        state.write_bytes(bytes.fromhex(case["state_hex"]))
    elif case.get("generate") == "huge":
        head = "name: x\ncompose:\n  file: compose.yml\n"
        state.write_text(
            head + "".join(f"# padding line {i:07d} " + "x" * 40 + "\n" for i in range(25_000))
        )
    elif case.get("generate") == "alias-bomb":
        lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        state.write_text("\n".join(lines) + "\nname: x\ncompose:\n  file: compose.yml\n")
    else:
        state.write_text(expand(case["state"], case))
    return state


def snapshot(directory: Path) -> dict[str, str]:
    """Every file below `directory` (and its parent, for outside-root cases) by content hash."""
    files = {}
    for root, _, names in os.walk(directory.parent):
        for name in names:
            path = Path(root) / name
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def containers(directory: Path) -> str:
    """Containers of compose projects under `directory` (the case's), or '' without an engine.

    Scoped to the case: other tests on the same engine start and stop their own containers.
    """
    if shutil.which("docker") is None:
        return ""
    row = '{{.ID}} {{.State}} {{.CreatedAt}} {{.Label "com.docker.compose.project.working_dir"}}'
    done = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--format", row],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return ""
    mine = [line for line in done.stdout.splitlines() if f" {directory}" in line]
    return "\n".join(mine)


def test_corpus_is_large_enough() -> None:
    """The corpus holds at least forty cases."""
    assert len(CASES) >= 40


def test_repeat_placeholders_appear_in_their_case() -> None:
    """Every `repeat` placeholder occurs in its case's state or compose text, so none is stale."""
    for case in CASES:
        texts = case.get("state", "") + case.get("compose", "")
        for placeholder in case.get("repeat", {}):
            assert placeholder in texts, (case["id"], placeholder)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case["id"], marks=[pytest.mark.docker] if case.get("docker") else [])
        for case in CASES
    ],
)
def test_bad_input_exits_3_naming_file_line_key_and_changes_nothing(
    case: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """plan and apply both refuse the input with exit 3 and a located message; nothing changes."""
    if case.get("docker"):
        request.getfixturevalue("docker_engine")
    for name, value in case.get("env", {}).items():  # the process environment of the run
        monkeypatch.setenv(name, value)
    state = write_case(case, tmp_path / "case")
    files_before, containers_before = snapshot(state.parent), containers(tmp_path)
    for command in ("plan", "apply"):
        code = main([command, str(state), "--log-format", "json"])
        captured = capsys.readouterr()
        assert code == 3, captured.out + captured.err
        assert "Traceback" not in captured.err + captured.out
        errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
        assert errors, captured.err
        first = errors[0]
        assert f"error: {state.parent}/{case['where']}" in first, first
        if "key" in case:
            assert f": {case['key']}: " in first, first
        assert case["message"] in captured.err, captured.err
        assert len(first) < 600, "short message"
    assert snapshot(state.parent) == files_before
    assert containers(tmp_path) == containers_before
