"""`validate STATE|FLEET|PLANFILE`: every input check with no Docker engine, nothing changed.

compose's own `config` (and `docker stack config`) parse files without an engine: these tests
run the real compose plugin with DOCKER_HOST pointing nowhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

import reconciler
from reconciler.cli.main import main
from reconciler.errors import InputError
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.validate import ValidationResult, validate
from reconciler.state import load_state

COMPOSE = """\
services:
  web:
    image: web:${WEB_TAG:-1}
    environment:
      TOKEN: ${API_TOKEN:?the token is required}
  db:
    image: db:16
"""
STATE = """\
name: shop
compose: {file: compose.yml}
services:
  db: {image: "db:17"}
secrets:
  API_TOKEN: {file: token.txt}
"""


@pytest.fixture(autouse=True)
def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No engine is reachable: validate must not need one."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A valid state (a secret from a file, used by the compose file's interpolation)."""
    directory = tmp_path / "shop"
    directory.mkdir()
    (directory / "compose.yml").write_text(COMPOSE)
    (directory / "token.txt").write_text("s3cret\n")
    state = directory / "state.yaml"
    state.write_text(STATE)
    return state


def run(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    """`python -m reconciler validate PATH` in process: exit code, stdout, stderr."""
    code = main(["validate", str(path), "--log-format", "json", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and directory under `roots`, with its mode and content digest."""
    seen: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for directory, names, files in os.walk(root):
            for name in [*names, *files]:
                path = Path(directory) / name
                info = path.lstat()
                digest = (
                    hashlib.sha256(path.read_bytes()).hexdigest()
                    if stat.S_ISREG(info.st_mode)
                    else ""
                )
                seen[str(path)] = f"{stat.filemode(info.st_mode)} {digest}"
    return seen


def test_valid_state_exits_0_with_no_engine(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid state exits 0 and says what was checked, with DOCKER_HOST unreachable."""
    code, out, err = run(shop, capsys)
    assert code == 0, err
    assert out == (f"Valid: {shop} (state shop: 2 services in compose.yml, 1 pinned, 1 secret)\n")
    assert "s3cret" not in out + err


def test_validate_json(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints the result as data."""
    code, out, _ = run(shop, capsys, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["valid"] is True
    assert data["kind"] == "state"
    assert data["states"][0]["services"] == 2


def test_library_validate_returns_a_result(shop: Path) -> None:
    """`reconciler.validate(path)` is the library's door; it returns a ValidationResult."""
    result = reconciler.validate(shop)
    assert isinstance(result, ValidationResult)
    assert (result.kind, result.name, result.states[0].pins) == ("state", "shop", 1)


def test_validate_calls_no_docker_but_compose_config(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only program run is compose's `config` (the plugin itself): a `docker` first on
    PATH that records its calls is never run, and no secret command is either."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker-calls.log"
    for name in ("docker", "get-token"):
        program = bin_dir / name
        program.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit 1\n')
        program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    shop.write_text(STATE.replace("{file: token.txt}", "{command: [get-token, --now]}"))
    assert validate(shop).states[0].secrets == 1
    assert not log.exists()


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        (('"db:17"}', '"db:17", helth_timeout: 3}'), ":4:24: services.db.helth_timeout", "unknown"),
        (("name: shop", "name: shop\nservices: {}"), ":", "duplicate key"),
    ],
)
def test_bad_state_exits_3_at_its_key(
    shop: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], where: str, message: str
) -> None:
    """A state the loader refuses exits 3 with its file:line:column and key."""
    shop.write_text(STATE.replace(*edit))
    code, out, err = run(shop, capsys)
    assert code == 3
    assert out == ""
    assert f"error: {shop}{where}" in err
    assert message in err


def test_service_missing_from_the_compose_file_exits_3(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pinned service the compose file does not define is bad input at the state's key."""
    shop.write_text(STATE.replace("  db:", "  cache:"))
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"{shop}:4:3: services.cache: service 'cache' is not defined" in err


def test_compose_file_rejected_by_compose_config_exits_3(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What compose's own `config` rejects is bad input naming the compose file."""
    compose = shop.parent / "compose.yml"
    compose.write_text(COMPOSE + "    ports: [not-a-port]\n")
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"error: {compose}" in err
    assert "docker compose rejects the file" in err


def test_missing_env_files_exit_3_naming_them(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing `compose.env_files` entry, and a missing service `env_file:` (found by
    compose's config), both exit 3 naming the file."""
    shop.write_text(STATE.replace("compose.yml}", "compose.yml, env_files: [prod.env]}"))
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"{shop}:2:42: compose.env_files.0: {shop.parent / 'prod.env'} does not exist" in err
    shop.write_text(STATE)
    (shop.parent / "compose.yml").write_text(COMPOSE + "    env_file: [web.env]\n")
    code, _, err = run(shop, capsys)
    assert code == 3
    assert "web.env" in err


def test_implicit_dotenv_is_read_for_interpolated_pins(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pin of an interpolated image is checked against the `.env` compose reads: a `.env`
    that is not dotenv is bad input at its line."""
    shop.write_text(STATE.replace('  db: {image: "db:17"}', '  web: {image: "web:2"}'))
    (shop.parent / ".env").write_text("WEB_TAG=1\nthis is not dotenv\n")
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"{shop.parent / '.env'}:2:" in err
    (shop.parent / ".env").write_text("WEB_TAG=1\n")
    code, _, err = run(shop, capsys)
    assert code == 0, err
    assert (shop.parent / ".env").read_text() == "WEB_TAG=1\n"  # checked, never edited


def test_missing_files_source_exits_3(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A `files:` entry whose `source:` does not exist exits 3 at that key."""
    shop.write_text(STATE + "files:\n  conf/app.ini: {source: templates/app.ini}\n")
    (shop.parent / "conf").mkdir()
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"{shop}:8:26: files.conf/app.ini.source:" in err
    assert "does not exist or is not a file" in err


def test_files_set_needs_its_target_and_an_edit_that_applies(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`set:` on a YAML file: a missing target, or a path the file cannot take, exits 3."""
    shop.write_text(STATE + "files:\n  prometheus.yml: {set: {global.scrape_interval: 15s}}\n")
    code, _, err = run(shop, capsys)
    assert code == 3
    assert "the file does not exist; `set` edits an existing YAML file" in err
    target = shop.parent / "prometheus.yml"
    target.write_text("global: [a, b]\n")
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"error: {target}:" in err
    target.write_text("global:\n  scrape_interval: 30s\n")
    code, _, err = run(shop, capsys)
    assert code == 0, err
    assert target.read_text() == "global:\n  scrape_interval: 30s\n"


def test_missing_secret_file_exits_3(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A secret whose file is missing exits 3 at the secret's key."""
    (shop.parent / "token.txt").unlink()
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"{shop}:6:21: secrets.API_TOKEN.file:" in err
    assert "token.txt does not exist or is not a file" in err


def test_unset_secret_env_var_exits_3_naming_it(
    shop: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret from an unset environment variable exits 3 naming the variable."""
    monkeypatch.delenv("SHOP_API_TOKEN", raising=False)
    shop.write_text(STATE.replace("{file: token.txt}", "{env: SHOP_API_TOKEN}"))
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"{shop}:6:3: secrets.API_TOKEN: secret API_TOKEN: environment variable " in err
    assert "SHOP_API_TOKEN is not set" in err
    monkeypatch.setenv("SHOP_API_TOKEN", "value")
    assert run(shop, capsys)[0] == 0


def test_secret_command_program_must_exist_and_is_not_run(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret command's program must be found (on PATH, or beside the state for ./x);
    it is never run."""
    shop.write_text(STATE.replace("{file: token.txt}", "{command: [no-such-vault-cli, read]}"))
    code, _, err = run(shop, capsys)
    assert code == 3
    assert "secrets.API_TOKEN.command: secret API_TOKEN: program no-such-vault-cli not found" in err
    marker = shop.parent / "ran"
    script = shop.parent / "get-token"
    script.write_text(f"#!/bin/sh\ntouch {marker}\necho token\n")
    shop.write_text(STATE.replace("{file: token.txt}", "{command: [./get-token]}"))
    code, _, err = run(shop, capsys)
    assert code == 3
    assert "program ./get-token is not executable" in err
    script.chmod(0o755)
    code, _, err = run(shop, capsys)
    assert code == 0, err
    assert not marker.exists()


def test_profile_leaving_out_a_pinned_service_exits_3(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """compose's model is checked as observation checks it: a pinned service outside the
    active profiles is bad input."""
    (shop.parent / "compose.yml").write_text(COMPOSE + "    profiles: [maintenance]\n")
    code, _, err = run(shop, capsys)
    assert code == 3
    assert "service 'db' is not in the active profiles" in err


def test_swarm_state_is_checked_by_stack_config_with_no_engine(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In swarm mode the file is also read as stack deploy reads it (`docker stack config`,
    no engine either)."""
    shop.write_text(STATE.replace("compose.yml}", "compose.yml, mode: swarm}"))
    code, _, err = run(shop, capsys)
    assert code == 0, err
    compose = shop.parent / "compose.yml"
    compose.write_text(COMPOSE + "    depends_on: {web: {condition: service_started}}\n")
    code, _, err = run(shop, capsys)
    assert code == 3
    assert f"error: {compose}:8:5: services.db.depends_on: docker stack deploy rejects" in err
    compose.write_text(COMPOSE.replace("image: web:${WEB_TAG:-1}", "build: ."))
    code, _, err = run(shop, capsys)
    assert code == 3
    assert "service 'web' has `build:` but no `image:`" in err


def write_fleet(directory: Path, text: str) -> Path:
    path = directory / "fleet.yaml"
    path.write_text(text)
    return path


def test_fleet_file_validates_every_target(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet validates each target's state; a bad one exits 3 naming the target."""
    directory = shop.parent
    (directory / "other.yml").write_text("services:\n  job:\n    image: job:1\n")
    (directory / "other.yaml").write_text("name: other\ncompose: {file: other.yml}\n")
    fleet = write_fleet(
        directory,
        "fleet: pair\ntargets:\n  a: {state: state.yaml}\n"
        '  b: {state: other.yaml, engine: "ssh://deploy@b.example"}\n',
    )
    code, out, err = run(fleet, capsys)
    assert code == 0, err
    assert out.splitlines() == [
        f"Valid: {fleet} (fleet pair, 2 targets)",
        "  target a: state shop: 2 services in compose.yml, 1 pinned, 1 secret",
        "  target b: state other: 1 service in other.yml",
    ]
    (directory / "other.yml").write_text("services:\n  job:\n    image: job:1\n    ports: [x]\n")
    code, _, err = run(fleet, capsys)
    assert code == 3
    assert f"(the state of target 'b' of {fleet})" in err


def test_plan_file_is_validated_with_its_state(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan file: its structure, then the state it names; a state changed since the plan
    is still valid input, with a note that apply would refuse the plan."""
    plan_file = shop.parent / "shop.plan"
    reconcile.save_plan(load_state(shop), plan_file, only=["compose-file"])
    code, out, err = run(plan_file, capsys)
    assert code == 0, err
    assert out.splitlines() == [
        f"Valid: {plan_file} (plan file for state shop)",
        "  state shop: 2 services in compose.yml, 1 pinned, 1 secret",
    ]
    shop.write_text(STATE + "# edited\n")
    code, out, err = run(plan_file, capsys)
    assert code == 0, err
    assert "note: state file" in out
    assert "would refuse it as stale" in out
    shop.write_text(STATE.replace("db:17", "DB:17"))
    assert run(plan_file, capsys)[0] == 3
    data = json.loads(plan_file.read_text())
    del data["steps"]
    plan_file.write_text(json.dumps(data))
    code, _, err = run(plan_file, capsys)
    assert code == 3
    assert "invalid plan file" in err


def test_validate_never_writes_anything(
    shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid or not, validate leaves the state's directory, the records directory and the
    lock directory exactly as they were (no lock, record, cache or edit)."""
    (shop.parent / "prometheus.yml").write_text("global:\n  scrape_interval: 30s\n")
    shop.write_text(
        STATE.replace('"db:17"', '"db:18"')
        + "files:\n  prometheus.yml: {set: {global.scrape_interval: 15s}}\n"
    )
    plan_file = tmp_path / "saved.plan"
    reconcile.save_plan(load_state(shop), plan_file, only=["compose-file"])
    roots = (
        tmp_path,
        Path(os.environ["RECONCILER_STATE_DIR"]),
        Path(os.environ["RECONCILER_LOCK_DIR"]),
    )
    before = snapshot(*roots)
    assert run(shop, capsys)[0] == 0
    assert run(plan_file, capsys)[0] == 0
    (shop.parent / "token.txt").unlink()
    before.pop(str(shop.parent / "token.txt"))
    assert run(shop, capsys)[0] == 3
    assert snapshot(*roots) == before


def test_validate_raises_input_error_for_library_callers(shop: Path) -> None:
    """The library raises InputError (exit code 3) with the location, as plan would."""
    shop.write_text(STATE.replace("db:17", "DB:17"))
    with pytest.raises(InputError) as caught:
        validate(shop)
    assert caught.value.exit_code == 3
    assert caught.value.location is not None
    assert caught.value.location.key == "services.db.image"
