"""YAML as compose users write it: anchors, aliases, `<<` merges and `x-` keys in state and fleet
files, with errors at the line where the merged content is written; NUL bytes in paths."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML
from ruamel.yaml.constructor import RoundTripConstructor

from reconciler.cli.main import main
from reconciler.errors import InputError
from reconciler.state import load_state
from reconciler.state.fleet import load_fleet
from reconciler.state.load import yaml_key_position
from reconciler.state.schema import fleet_schema, state_schema

COMPOSE = "services:\n  db:\n    image: db:1\n  web:\n    image: web:1\n"


def write(tmp_path: Path, text: str, name: str = "state.yaml") -> Path:
    """`text` as `name` in `tmp_path`, with the compose file it names beside it."""
    (tmp_path / "compose.yml").write_text(COMPOSE)
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        load_state(path)
    return caught.value


def test_merge_loads_and_explicit_keys_win(tmp_path: Path) -> None:
    """`<<: *a` brings the anchored keys in; a key the mapping writes itself wins."""
    state = load_state(
        write(
            tmp_path,
            "name: x\ncompose: {file: compose.yml}\nservices:\n"
            "  db: &d {health_timeout: 30, image: db:2}\n"
            "  web: {<<: *d, image: web:2}\n",
        )
    )
    assert state.services["web"].health_timeout == 30
    assert state.services["web"].image == "web:2"
    assert state.pins() == {"db": "db:2", "web": "web:2"}


def test_explicit_key_before_the_merge_still_wins(tmp_path: Path) -> None:
    """Where the `<<` line sits does not matter: the mapping's own key wins."""
    state = load_state(
        write(
            tmp_path,
            "name: x\ncompose: {file: compose.yml}\nservices:\n"
            "  db: &d {health_timeout: 30}\n"
            "  web:\n    health_timeout: 5\n    <<: *d\n",
        )
    )
    assert state.services["web"].health_timeout == 5


def test_list_of_merges_earlier_maps_win(tmp_path: Path) -> None:
    """`<<: [*a, *b]`: a key in both comes from the earlier map; the others from either."""
    state = load_state(
        write(
            tmp_path,
            "name: x\ncompose: {file: compose.yml}\n"
            "x-fast: &fast {health_timeout: 10}\n"
            "x-slow: &slow {health_timeout: 600, environment: {MODE: slow}}\n"
            "services:\n  web: {<<: [*fast, *slow], image: web:2}\n",
        )
    )
    web = state.services["web"]
    assert web.health_timeout == 10
    assert web.environment == {"MODE": "slow"}


def test_x_keys_hold_anchors_and_are_not_validated_themselves(tmp_path: Path) -> None:
    """A top-level `x-` key is compose's extension field: a place for anchors, left out of the
    state (its content is checked where it is merged); the schemas allow it too."""
    text = (
        "name: x\n"
        "x-defaults: &defaults\n  health_timeout: 45\n  anything: goes here\n"
        "x-note: free text\n"
        "compose: {file: compose.yml}\n"
        "services:\n  web: {<<: *defaults}\n"
    )
    kept = text.replace("  anything: goes here\n", "")
    assert load_state(write(tmp_path, kept)).services["web"].health_timeout == 45
    document = YAML(typ="safe").load(kept)
    jsonschema.validate(document, state_schema())
    fleet = {"fleet": "f", "targets": {"a": {"state": "a.yaml"}}, "x-a": 1}
    jsonschema.validate(fleet, fleet_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "y-a": 1}, state_schema())


def test_unknown_key_in_a_non_x_top_level_key_is_still_an_error(tmp_path: Path) -> None:
    """Only the `x-` prefix is free; a near miss of it is an unknown key."""
    error = error_of(write(tmp_path, "name: x\nx_defaults: 1\ncompose: {file: compose.yml}\n"))
    assert "unknown key" in error.message
    assert error.location is not None
    assert (error.location.line, error.location.key) == (2, "x_defaults")


def test_error_inside_merged_content_points_at_the_anchor_line(tmp_path: Path) -> None:
    """A bad value brought in by `<<` is reported at the line where it is written, under the
    key path it has in the merged result."""
    error = error_of(
        write(
            tmp_path,
            "name: x\n"
            "x-defaults: &defaults\n  health_timeout: -3\n"
            "compose: {file: compose.yml}\n"
            "services:\n  web:\n    <<: *defaults\n    image: web:2\n",
        )
    )
    assert error.location is not None
    assert (error.location.line, error.location.column) == (3, 19)
    assert error.location.key == "services.web.health_timeout"
    assert "greater than 0" in error.message


def test_unknown_key_inside_merged_content_points_at_the_anchor_line(tmp_path: Path) -> None:
    """An unknown key merged in is named at its own line, with a "did you mean"."""
    error = error_of(
        write(
            tmp_path,
            "name: x\ncompose: {file: compose.yml}\nservices:\n"
            "  db: &d\n    helth_timeout: 3\n"
            "  web: {<<: *d, image: web:2}\n",
        )
    )
    assert error.location is not None
    assert (error.location.line, error.location.column) == (5, 5)
    assert error.location.key == "services.db.helth_timeout"
    assert "services.web.helth_timeout" in error.message  # the second error, same source line
    assert "did you mean 'health_timeout'" in error.message


def test_merged_keys_keep_their_source_positions_for_later_errors(tmp_path: Path) -> None:
    """`state.location` of a merged key (used by errors after loading) is its source line,
    through merges of merges."""
    state = load_state(
        write(
            tmp_path,
            "name: x\ncompose: {file: compose.yml}\n"
            "x-a: &a {health_timeout: 9}\n"
            "x-b: &b {<<: *a, environment: {K: v}}\n"
            "services:\n  web: {<<: *b, image: web:2}\n",
        )
    )
    assert state.location("services.web.health_timeout").line == 3
    assert state.location("services.web.environment.K").line == 4
    assert state.location("services.web.image").line == 6


def test_long_merge_chain_loads_without_recursion(tmp_path: Path) -> None:
    """A chain of merges (each map merging the one before) resolves positions iteratively."""
    links = "".join(f"x-m{i}: &m{i} {{<<: *m{i - 1}}}\n" for i in range(1, 150))
    state = load_state(
        write(
            tmp_path,
            "name: x\ncompose: {file: compose.yml}\n"
            "x-m0: &m0 {health_timeout: 7}\n" + links + "services:\n  web: {<<: *m149}\n",
        )
    )
    assert state.services["web"].health_timeout == 7
    assert state.location("services.web.health_timeout").line == 3


def test_merge_bomb_is_refused_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many merges of one anchor (ruamel copies and compares each eagerly) are refused after a
    few hundred of the 5000, before most are copied, as an alias bomb is."""
    keys = ", ".join(f"k{i}: 1" for i in range(50))
    merges = "".join(f"  m{i}: {{<<: *a}}\n" for i in range(5000))
    path = write(tmp_path, f"name: x\nx-a: &a {{{keys}}}\nx-b:\n{merges}")
    flattened: list[object] = []
    original = RoundTripConstructor.flatten_mapping

    def counting(self: RoundTripConstructor, node: object) -> object:
        flattened.append(node)
        return original(self, node)

    monkeypatch.setattr(RoundTripConstructor, "flatten_mapping", counting)
    error = error_of(path)
    assert 0 < len(flattened) < 1000, "the merges were copied past the limit"
    assert "'<<' merges" in error.message
    assert "merge bomb" in error.message


def test_alias_bomb_through_merges_is_still_refused(tmp_path: Path) -> None:
    """Aliases nested inside merged maps still count toward the node limit."""
    lines = ["name: x", "compose: {file: compose.yml}", "x-l0: &l0 [a, a, a, a, a, a, a, a, a]"]
    for level in range(1, 8):
        below = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"x-l{level}: &l{level} [{below}]")
    lines.append("x-m: &m {health_timeout: 1, environment: {A: *l7}}")
    lines.append("services:\n  web: {<<: *m}")
    error = error_of(write(tmp_path, "\n".join(lines) + "\n"))
    assert "alias bomb" in error.message


def test_merge_of_a_non_mapping_is_invalid_yaml_not_a_crash(tmp_path: Path) -> None:
    """`<<: *scalar` is a YAML error (exit 3) at the merged value's line, not a crash."""
    error = error_of(
        write(
            tmp_path,
            "name: x\nx-s: &s just text\ncompose: {file: compose.yml}\n"
            "services:\n  web: {<<: *s}\n",
        )
    )
    assert "invalid YAML" in error.message
    assert "expected a mapping or list of mappings for merging" in error.message
    assert error.location is not None
    assert error.location.line == 2


def test_cli_reports_a_merged_error_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` of a state whose merged content is bad exits 3 with the located message."""
    path = write(
        tmp_path,
        "name: x\ncompose: {file: compose.yml}\nx-d: &d {health_timeout: 0}\n"
        "services:\n  web: {<<: *d}\n",
    )
    assert main(["plan", str(path), "--log-format", "json"]) == 3
    err = capsys.readouterr().err
    assert f"error: {path}:3:26: services.web.health_timeout: " in err
    assert "internal error" not in err


def test_fleet_file_with_merge_and_x_key(tmp_path: Path) -> None:
    """A fleet file may merge target defaults (and keep them under an `x-` key); errors in
    the merged part point at its line."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.yml").write_text("services:\n  s:\n    image: s:1\n")
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\ncompose: {{file: {name}.yml, project: p-{name}}}\n"
        )
    text = (
        "fleet: f\n"
        'x-remote: &remote {engine: "ssh://deploy@core.example"}\n'
        "targets:\n"
        "  a: {<<: *remote, state: a.yaml}\n"
        "  b:\n    <<: *remote\n    state: b.yaml\n"
    )
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    fleet = load_fleet(path)
    assert [target.engine for target in fleet.targets.values()] == ["ssh://deploy@core.example"] * 2
    path.write_text(text.replace("engine:", "engin:"))
    with pytest.raises(InputError) as caught:
        load_fleet(path)
    assert caught.value.location is not None
    assert caught.value.location.line == 2
    assert caught.value.location.key == "targets.a.engin"


def test_nul_in_a_path_is_bad_input_at_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compose: {file: "a\\0b.yml"}` exits 3 at that line and key, not an internal error."""
    path = write(tmp_path, 'name: x\ncompose: {file: "a\\0b.yml"}\n')
    assert main(["plan", str(path), "--log-format", "json"]) == 3
    err = capsys.readouterr().err
    assert f"error: {path}:2:17: compose.file: the path contains a NUL byte" in err
    assert "internal error" not in err


@pytest.mark.parametrize(
    ("text", "line", "column", "key"),
    [
        (
            'name: x\ncompose: {file: compose.yml, env_files: ["e\\0"]}\n',
            2,
            42,
            "compose.env_files.0",
        ),
        (
            'name: x\ncompose: {file: compose.yml}\nfiles:\n  "f\\0.yml": {content: x}\n',
            4,
            3,
            "files.f\0.yml",
        ),
        (
            'name: x\ncompose: {file: compose.yml}\nsecrets:\n  S: {file: "s\\0"}\n',
            4,
            13,
            "secrets.S.file",
        ),
    ],
)
def test_nul_in_other_paths_is_bad_input_at_its_key(
    tmp_path: Path, text: str, line: int, column: int, key: str
) -> None:
    """Every path the loader resolves refuses a NUL byte at its own line."""
    error = error_of(write(tmp_path, text))
    assert "NUL byte" in error.message
    assert error.location is not None
    assert (error.location.line, error.location.column, error.location.key) == (line, column, key)


def test_nul_in_a_fleet_target_state_path_is_bad_input(tmp_path: Path) -> None:
    """A fleet target's `state:` holding a NUL byte is refused at its line."""
    path = tmp_path / "fleet.yaml"
    path.write_text('fleet: f\ntargets:\n  a: {state: "a\\0.yaml"}\n')
    with pytest.raises(InputError) as caught:
        load_fleet(path)
    assert "NUL byte" in caught.value.message
    assert caught.value.location is not None
    assert (caught.value.location.line, caught.value.location.key) == (3, "targets.a.state")


def test_key_position_in_another_tools_file_ignores_the_merge_budget(tmp_path: Path) -> None:
    """A compose file may merge more often than a state file may: positions for errors
    about it are still found (or fall back to 1:1), never replaced by the budget's error."""
    services = "".join(f"  s{i}: {{<<: *d}}\n" for i in range(300))
    text = f"x-d: &d {{image: a:1}}\nservices:\n{services}"
    assert yaml_key_position(text, ["services", "s5"], source=tmp_path / "compose.yml") == (1, 1)
    small = "x-d: &d {image: a:1}\nservices:\n  web: {<<: *d}\n"
    where = yaml_key_position(small, ["services", "web", "image"], source=tmp_path / "c.yml")
    assert where == (1, 10)


@pytest.mark.parametrize(
    "services", ["  db: &a\n    <<: [*a]\n", "  db: &a {b: {<<: *a}}\n", "  db: &a [{<<: *a}]\n"]
)
def test_recursive_merge_is_bad_input(tmp_path: Path, services: str) -> None:
    """A mapping merging itself or a mapping that contains it is exit 3 at its line."""
    error = error_of(
        write(tmp_path, f"name: x\ncompose: {{file: compose.yml}}\nservices:\n{services}")
    )
    assert "a '<<' merge of a mapping that contains it" in error.message
    assert error.location is not None
    assert error.location.line in (4, 5)


# The state loader: valid files load; every bad file names file:line:column and the key.


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


def write_state_load(tree: Path, text: str) -> Path:
    path = tree / "state.yaml"
    path.write_text(text)
    return path


def test_good_state_resolves_paths_against_its_directory(tree: Path) -> None:
    """Relative compose paths resolve against the state file's directory, not the cwd."""
    state = load_state(write_state_load(tree, GOOD))
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
    path = write_state_load(tree, text)
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
    path = write_state_load(tree, "\n".join(lines) + "\n")
    with pytest.raises(InputError, match="alias bomb"):
        load_state(path)


def test_outside_root_is_allowed_when_declared(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`allow_outside_root: true` lets a compose file live outside the state's root."""
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "docker-compose.yml"
    elsewhere.write_text("services: {}\n")
    path = write_state_load(
        tree, f"name: shop\nallow_outside_root: true\ncompose:\n  file: {elsewhere}\n"
    )
    assert load_state(path).compose.file == elsewhere.resolve()


def test_repository_default_state_loads() -> None:
    """The shipped default state, states/canary.yaml, is valid."""
    state = load_state(Path(__file__).resolve().parents[2] / "states" / "canary.yaml")
    assert state.name == "ktrdr-canary"
    assert set(state.services) >= {"backend", "backtest-worker", "training-worker"}
