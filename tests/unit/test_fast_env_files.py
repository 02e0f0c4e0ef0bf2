"""The compose-file step on env files, through the library, with no docker: plan shows each
dotenv key's diff, apply writes only those bytes, a second plan is empty, secrets never show."""

from __future__ import annotations

import json
from pathlib import Path

import reconciler
from reconciler.compose.dotenv import parse_dotenv
from reconciler.observe.env_files import env_file_values
from reconciler.plans import Step

COMPOSE = "services:\n  backend:\n    image: ghcr.io/kpiteira/ktrdr-backend:${IMAGE_TAG:-latest}\n"
ONLY_FILES = (Step.COMPOSE_FILE,)


def _layout(tmp_path: Path, state: str, files: dict[str, str]) -> Path:
    (tmp_path / "compose.yml").write_text(COMPOSE)
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode("utf-8"))
    (tmp_path / "state.yaml").write_text(state)
    return tmp_path / "state.yaml"


def test_interpolated_pin_edits_the_env_file_and_not_the_compose_file(tmp_path: Path) -> None:
    """A pin of `…:${IMAGE_TAG:-latest}` edits IMAGE_TAG in .env.core only; apply converges."""
    env_core = "# homelab core\r\nIMAGE_TAG=latest  # CI bumps this\r\nPOSTGRES_DB=ktrdr\r\n"
    path = _layout(
        tmp_path,
        "name: homelab\ncompose:\n  file: compose.yml\n  env_files: [.env.core]\n"
        "services:\n  backend: {image: 'ghcr.io/kpiteira/ktrdr-backend:abc123'}\n",
        {".env.core": env_core},
    )
    state = reconciler.load_state(path)
    plan = reconciler.plan(state, steps=ONLY_FILES)
    [change] = plan.changes
    assert (change.target, str(change.action)) == (".env.core:IMAGE_TAG", "edit")
    assert change.diff is not None
    assert "-IMAGE_TAG=latest  # CI bumps this\r\n+IMAGE_TAG=abc123  # CI bumps this\r\n" in (
        change.diff
    )
    result = reconciler.apply(state, steps=ONLY_FILES)
    assert result.succeeded, result.error
    assert (tmp_path / "compose.yml").read_text() == COMPOSE
    assert (tmp_path / ".env.core").read_bytes() == env_core.replace("latest", "abc123").encode()
    assert reconciler.plan(state, steps=ONLY_FILES).empty


def test_files_set_and_absent_apply_byte_minimal_and_then_in_sync(tmp_path: Path) -> None:
    """`files:` set/absent on a BOM, no-final-newline file: only those lines change."""
    path = _layout(
        tmp_path,
        "name: homelab\ncompose:\n  file: compose.yml\nfiles:\n"
        "  app.env: {set: {WORKERS: '8', REGION: eu-west-1}, absent: [LEGACY_MODE]}\n",
        {"app.env": "\ufeffexport WORKERS=4\nexport LEGACY_MODE=on\nexport LOG_LEVEL=info"},
    )
    state = reconciler.load_state(path)
    plan = reconciler.plan(state, steps=ONLY_FILES)
    assert [(c.target, str(c.action)) for c in plan.changes] == [
        ("app.env:WORKERS", "edit"),
        ("app.env:REGION", "insert"),
        ("app.env:LEGACY_MODE", "remove"),
    ]
    assert reconciler.apply(state, steps=ONLY_FILES).succeeded
    assert (tmp_path / "app.env").read_bytes() == (
        "\ufeffexport WORKERS=8\nexport LOG_LEVEL=info\nexport REGION=eu-west-1".encode()
    )
    again = reconciler.plan(state, steps=ONLY_FILES)
    assert again.empty
    assert [row.reason for row in again.ok] == [
        "already WORKERS=8",
        "already REGION=eu-west-1",
        "already absent",
    ]


def test_secret_values_never_appear_in_the_plan(tmp_path: Path) -> None:
    """Old and new values of a secret-looking key are masked in reason, before, after and diff."""
    path = _layout(
        tmp_path,
        "name: homelab\ncompose:\n  file: compose.yml\nfiles:\n"
        "  .env.secrets: {set: {API_TOKEN: n3w-t0ken-value}}\n",
        {".env.secrets": "export API_TOKEN='0ld-t0ken-value'\n"},
    )
    plan = reconciler.plan(reconciler.load_state(path), steps=ONLY_FILES)
    shown = json.dumps(plan.to_dict())
    assert "API_TOKEN" in shown
    assert "t0ken-value" not in shown
    assert "***" in shown


def test_env_file_values_chain_the_files_in_order(tmp_path: Path) -> None:
    """One rule for the interpolation env files (pins and env_file paths share it): each file
    resolves with the ones before it (a later one overrides), missing ones define nothing."""
    texts = {".env.a": "A=one\nC=from-a\n", ".env.b": "B=${A}-two\nC=from-b\n"}
    path = _layout(
        tmp_path,
        "name: chain\ncompose:\n  file: compose.yml\n  env_files: [.env.a, .env.b]\n",
        texts,
    )
    state = reconciler.load_state(path)
    parsed = {
        tmp_path / name: parse_dotenv(text, source=tmp_path / name) for name, text in texts.items()
    }
    assert env_file_values(state, parsed, {}) == {"A": "one", "B": "one-two", "C": "from-b"}
    assert env_file_values(state, parsed, {"D": "env"}) == {
        "A": "one",
        "B": "one-two",
        "C": "from-b",
    }
    missing = {tmp_path / ".env.b": parsed[tmp_path / ".env.b"]}  # .env.a defines nothing
    assert env_file_values(state, missing, {})["B"] == "-two"
