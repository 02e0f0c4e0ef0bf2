"""The state loader: valid files load; every bad file names file:line:column and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import InputError
from reconciler.state import load_state

GOOD = """\
name: shop
compose:
  file: deploy/docker-compose.yml
  project: shop
services:
  api:
    image: registry.local:5000/shop/api:1.2
    health_timeout: 30
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A state directory with a compose file beside it, under deploy/."""
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "docker-compose.yml").write_text("services:\n  api:\n    image: x\n")
    return tmp_path


def write(tree: Path, text: str) -> Path:
    path = tree / "state.yaml"
    path.write_text(text)
    return path


def test_good_state_resolves_paths_against_its_directory(tree: Path) -> None:
    """Relative compose paths resolve against the state file's directory, not the cwd."""
    state = load_state(write(tree, GOOD))
    assert state.compose.file == (tree / "deploy" / "docker-compose.yml").resolve()
    assert state.services["api"].image == "registry.local:5000/shop/api:1.2"
    assert state.pins() == {"api": "registry.local:5000/shop/api:1.2"}
    assert state.location("services.api.image").line == 7


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            GOOD.replace("  project: shop\n", "  project: shop\n  bogus: 1\n"),
            ":5:3: compose.bogus",
            "unknown key",
        ),
        (
            GOOD.replace("    health_timeout: 30", "    health_timeout: '30'"),
            ":8:21: services.api.health_timeout",
            "valid number",
        ),
        (
            GOOD.replace("    health_timeout: 30", "    health_timeout: -1"),
            ":8:21: services.api.health_timeout",
            "greater than 0",
        ),
        (
            GOOD.replace("shop/api:1.2", "Shop/API:1.2"),
            ":7:12: services.api.image",
            "invalid image reference",
        ),
        (GOOD.replace("name: shop\n", ""), ":1:1: name", "required key is missing"),
        (GOOD + "name: again\n", ":9:1", "found duplicate key"),
        (GOOD.replace("  project: shop", "  project: [shop"), ":", "invalid YAML"),
        ("", ":1:1", "state file is empty"),
        ("- a\n- b\n", ":1:1", "must be a mapping"),
        (
            GOOD.replace("deploy/docker-compose.yml", "deploy/missing.yml"),
            ":3:9: compose.file",
            "does not exist",
        ),
        (
            GOOD.replace("deploy/docker-compose.yml", "/etc/hostname"),
            ":3:9: compose.file",
            "outside the state's root",
        ),
        (
            GOOD.replace("allow", "") + "allow_outside_root: 'yes'\n",
            ":9:21: allow_outside_root",
            "valid boolean",
        ),
    ],
)
def test_bad_state_names_file_line_column_and_key(
    tree: Path, text: str, where: str, message: str
) -> None:
    """Each invalid state raises InputError (exit 3) pointing at the offending key."""
    path = write(tree, text)
    with pytest.raises(InputError) as caught:
        load_state(path)
    assert caught.value.exit_code == 3
    rendered = str(caught.value)
    assert rendered.startswith(str(path))
    assert where in rendered, rendered
    assert message in rendered, rendered


def test_non_utf8_state_reports_the_byte_position(tree: Path) -> None:
    """A state file that is not UTF-8 is refused with the line and column of the bad byte."""
    path = tree / "state.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(InputError, match=r":1:10: not UTF-8"):
        load_state(path)


def test_alias_bomb_is_refused(tree: Path) -> None:
    """Aliases that expand into a huge document are refused instead of eating memory."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = write(tree, "\n".join(lines) + "\n")
    with pytest.raises(InputError, match="alias bomb"):
        load_state(path)


def test_outside_root_is_allowed_when_declared(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`allow_outside_root: true` lets a compose file live outside the state's root."""
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "docker-compose.yml"
    elsewhere.write_text("services: {}\n")
    path = write(tree, f"name: shop\nallow_outside_root: true\ncompose:\n  file: {elsewhere}\n")
    assert load_state(path).compose.file == elsewhere.resolve()


def test_repository_default_state_loads() -> None:
    """The shipped default state, states/canary.yaml, is valid."""
    state = load_state(Path(__file__).resolve().parents[2] / "states" / "canary.yaml")
    assert state.name == "ktrdr-canary"
    assert set(state.services) >= {"backend", "backtest-worker", "training-worker"}
