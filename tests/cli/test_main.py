"""Arguments checked before anything changes: output paths, numbers, step selections, references,
engines, plan files, and every echoed text escaped. No docker: `--only compose-file` runs and
plan files need none, the rest is refused before docker would be asked."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from reconciler.cli.main import _error_text, _printable_values, main, printable
from reconciler.docker.adapter import manifest_digest
from reconciler.errors import HealthTimeoutError, InputError, PermanentDockerError, PlanFileError
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.saved_plan import body_digest, is_plan_file, load_plan
from reconciler.secrets.redact import Secrets
from reconciler.state import load_state
from reconciler.state.engine import parse_engine
from reconciler.state.model import valid_image_reference

COMPOSE = "services:\n  a:\n    image: 'a:1'\n"
EDITED = "services:\n  a:\n    image: 'a:2'\n"
BASELINE = {"format": "reconciler-result", "state": "s", "succeeded": True}


def write_state(tmp_path: Path, extra: str = "") -> Path:
    """A state pinning a:2 over a compose file running a:1 (one compose-file change), + extra."""
    (tmp_path / "c.yml").write_text(COMPOSE)
    state = tmp_path / "s.yaml"
    state.write_text("name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n" + extra)
    return state


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """main(argv) in-process: its exit code and its stderr."""
    code = main([*argv, "--log-format", "json"])
    return code, capsys.readouterr().err


def errors(err: str) -> list[str]:
    """The `error: ` lines of stderr."""
    return [line for line in err.splitlines() if line.startswith("error: ")]


def save(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """`plan --only compose-file --out` of `write_state`: the state file and the plan file."""
    state = write_state(tmp_path)
    out = tmp_path / "s.plan"
    assert main(["plan", str(state), "--only", "compose-file", "--out", str(out)]) == 2
    capsys.readouterr()
    return state, out


# --- 1. output paths: checked before the first change, written atomically -----------------


def test_report_onto_a_directory_exits_3_before_the_compose_file_is_edited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply --report DIR: exit 3 naming the option, and the compose file keeps its bytes."""
    state = write_state(tmp_path)
    (tmp_path / "reports").mkdir()
    code, err = run(
        ["apply", str(state), "--only", "compose-file", "--report", str(tmp_path / "reports")],
        capsys,
    )
    assert code == 3
    assert errors(err) == [
        f"error: {tmp_path / 'reports'}: --report: report is a directory; only a regular file "
        "is ever replaced"
    ]
    assert (tmp_path / "c.yml").read_text() == COMPOSE


@pytest.mark.parametrize(
    ("option", "name"),
    [
        ("--out", "s.yaml"),
        ("--out", "c.yml"),
        ("--out", ".env"),
        ("--out", "app.env"),
        ("--out", "conf.yml"),
        ("--out", "conf.src"),
        ("--out", "base.json"),
        ("--report", "s.yaml"),
        ("--junit", "c.yml"),
        ("--save-result", "base.json"),
    ],
)
def test_an_output_onto_one_of_the_runs_inputs_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, name: str
) -> None:
    """No output may replace a state, compose, env, `files:` or --baseline file: exit 3."""
    (tmp_path / "app.env").write_text("X=1\n")
    (tmp_path / "conf.src").write_text("a: 1\n")
    (tmp_path / "conf.yml").write_text("a: 0\n")
    (tmp_path / "base.json").write_text(json.dumps(BASELINE))
    state = write_state(tmp_path, "files:\n  conf.yml: {source: conf.src}\n")
    state.write_text(state.read_text().replace("c.yml\n", "c.yml\n  env_files: [app.env]\n"))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    command = "plan" if option == "--out" else "apply"
    baseline = str(tmp_path / "base.json")
    argv = [command, str(state), "--only", "compose-file", "--baseline", baseline]
    code, err = run([*argv, option, str(tmp_path / name)], capsys)
    assert code == 3, err
    assert f"{option}: " in err
    assert "one of this run's own inputs" in err
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_plan_out_onto_a_character_device_exits_3_and_leaves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan --out /dev/null: exit 3 naming the device; /dev/null is still a device."""
    state = write_state(tmp_path)
    code, err = run(["plan", str(state), "--only", "compose-file", "--out", os.devnull], capsys)
    assert code == 3
    assert "--out: plan file is a character device" in err
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_an_output_in_a_missing_directory_or_through_a_symlink_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--junit in a directory that does not exist, --report through a symlink: both exit 3."""
    state = write_state(tmp_path)
    code, err = run(
        ["apply", str(state), "--only", "compose-file", "--junit", str(tmp_path / "no" / "j.xml")],
        capsys,
    )
    assert (code, "does not exist" in err) == (3, True)
    (tmp_path / "link.md").symlink_to(tmp_path / "elsewhere.md")
    code, err = run(
        ["apply", str(state), "--only", "compose-file", "--report", str(tmp_path / "link.md")],
        capsys,
    )
    assert (code, "is a symlink" in err) == (3, True)
    assert (tmp_path / "c.yml").read_text() == COMPOSE
    assert not (tmp_path / "elsewhere.md").exists()


def test_two_options_naming_one_file_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--report and --junit on one path: exit 3 before anything changes."""
    state = write_state(tmp_path)
    out = str(tmp_path / "r.txt")
    code, err = run(
        ["apply", str(state), "--only", "compose-file", "--report", out, "--junit", out], capsys
    )
    assert code == 3
    assert "--report and --junit name the same file" in err
    assert (tmp_path / "c.yml").read_text() == COMPOSE


def test_reports_are_written_atomically_keeping_their_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply writes report, JUnit and result; an existing report keeps its 0600 mode."""
    state = write_state(tmp_path)
    report = tmp_path / "r.md"
    report.write_text("old\n")
    report.chmod(0o600)
    code, err = run(
        [
            "apply",
            str(state),
            "--only",
            "compose-file",
            "--report",
            str(report),
            "--junit",
            str(tmp_path / "j.xml"),
            "--save-result",
            str(tmp_path / "result.json"),
        ],
        capsys,
    )
    assert code == 0, err
    assert "old" not in report.read_text()
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert (tmp_path / "j.xml").read_text().startswith("<?xml")
    assert json.loads((tmp_path / "result.json").read_text())["state"] == "s"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_plan_file_is_saved_0644(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plan --out writes the plan file with mode 0644, as before."""
    _, out = save(tmp_path, capsys)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_apply_planfile_report_onto_the_plan_or_its_state_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply PLANFILE --report PLANFILE (or onto its state file): exit 3, nothing applied."""
    state, out = save(tmp_path, capsys)
    for target in (out, state, tmp_path / "c.yml"):
        code, err = run(["apply", str(out), "--report", str(target)], capsys)
        assert code == 3, err
        assert "one of this run's own inputs" in err
    assert (tmp_path / "c.yml").read_text() == COMPOSE


def test_library_save_plan_refuses_an_input_as_out(tmp_path: Path) -> None:
    """reconcile.save_plan(state, out=the state file): InputError before docker is asked."""
    state = load_state(write_state(tmp_path))
    before = state.source.read_bytes()
    with pytest.raises(InputError, match="one of this run's own inputs"):
        reconcile.save_plan(state, state.source, only=["compose-file"])
    assert state.source.read_bytes() == before


def test_state_input_files_name_every_input(tmp_path: Path) -> None:
    """State.input_files: state, compose, env files and .env, files: targets and sources."""
    state = write_state(tmp_path, "files:\n  conf.yml: {source: conf.src}\n")
    (tmp_path / "conf.src").write_text("a: 1\n")
    inputs = load_state(state).input_files()
    names = [path.name for path in inputs]
    assert names == ["s.yaml", "c.yml", ".env", "conf.yml", "conf.src"]
    assert all(path.is_absolute() for path in inputs)


# --- 2. numbers: finite and in range ---------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "86401"])
def test_lock_timeout_not_a_finite_number_in_range_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """--lock-timeout nan (which waited forever), inf, negative, over a day: exit 3 naming it."""
    state = write_state(tmp_path)
    code, err = run(
        ["apply", str(state), "--only", "compose-file", f"--lock-timeout={value}"], capsys
    )
    assert code == 3
    assert errors(err)[0].startswith("error: --lock-timeout must be a number of seconds")
    assert (tmp_path / "c.yml").read_text() == COMPOSE


def test_library_apply_refuses_a_nan_lock_timeout(tmp_path: Path) -> None:
    """reconcile.apply(lock_timeout=nan): InputError, nothing changed."""
    state = load_state(write_state(tmp_path))
    with pytest.raises(InputError, match="lock_timeout must be a number of seconds"):
        reconcile.apply(state, lock_timeout=math.nan)
    assert (tmp_path / "c.yml").read_text() == COMPOSE


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("    health_timeout: .nan\n", "services.a.health_timeout", "finite number"),
        ("    health_timeout: -5\n", "services.a.health_timeout", "greater than 0"),
        (
            "checks:\n  - {name: c, deadline: .inf, http: {url: 'http://x/'}}\n",
            "checks.0.deadline",
            "finite number",
        ),
        (
            "migrations:\n  - {name: m, service: a, alembic: {}, timeout: .nan}\n",
            "migrations.0.timeout",
            "finite number",
        ),
        ("images:\n  'a:2': {size_budget_mb: -.inf}\n", "images.a:2.size_budget_mb", "finite"),
        (
            "compare:\n  size_reduction_pct: {'a:2': .nan}\n",
            "compare.size_reduction_pct.a:2",
            "finite number",
        ),
        ("secrets:\n  P: {command: [x], timeout: .inf}\n", "secrets.P.timeout", "finite number"),
        (
            "checks:\n  - {name: c, exec: {service: a, command: [x], expect_exit: -1}}\n",
            "checks.0.exec.expect_exit",
            "an exit code is from 0 to 255",
        ),
        (
            "checks:\n  - {name: c, http: {url: 'http://x/', expect_items: {min: -1}}}\n",
            "checks.0.http.expect_items.min",
            "greater than or equal to 0",
        ),
    ],
)
def test_state_file_numbers_must_be_finite_and_in_range(
    tmp_path: Path, extra: str, key: str, message: str
) -> None:
    """NaN, infinities and out-of-range numbers in a state file: InputError at the key."""
    with pytest.raises(InputError, match=re.escape(message)) as raised:
        load_state(write_state(tmp_path, extra))
    assert raised.value.location is not None
    assert raised.value.location.key == key
    assert raised.value.location.line is not None


# --- 3. --only / --skip ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--only", "compose-file", "--skip", "compose-file"], "the step selection is empty"),
        (["--only", ","], "--only names no step"),
        (["--only", ""], "--only names no step"),
        (["--skip", ","], "--skip names no step"),
        (["--only", "compose-file,,images"], "has an empty step name"),
        (["--only", "compose-file,"], "has an empty step name"),
        (["--only", "imagez"], "unknown step 'imagez'"),
    ],
)
def test_a_step_selection_naming_or_leaving_nothing_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    """--only X --skip X, `--only ,`, an empty name, an unknown step: exit 3, nothing changed."""
    state = write_state(tmp_path)
    for command in ("plan", "apply"):
        code, err = run([command, str(state), *options], capsys)
        assert code == 3, err
        assert message in err
    assert (tmp_path / "c.yml").read_text() == COMPOSE


def test_library_select_steps_refuses_an_empty_selection() -> None:
    """select_steps(only, skip) leaving no step: InputError."""
    with pytest.raises(InputError, match="leaves no step to run"):
        reconcile.select_steps(["checks"], ["checks"])


# --- 4. references matched whole --------------------------------------------------------


@pytest.mark.parametrize("text", ["web:2\n", "web:2\n\n", "web\n:2", "web:ü", "web:2 "])
def test_image_reference_with_a_final_newline_is_refused(text: str) -> None:
    """Python's `$` matches before a final newline: references are matched whole instead."""
    with pytest.raises(ValueError, match="invalid image reference"):
        valid_image_reference(text)
    assert valid_image_reference("web:2") == "web:2"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('name: "s\\n"\ncompose:\n  file: c.yml\n', "name"),
        ('name: s\ncompose:\n  file: c.yml\n  project: "p\\n"\n', "compose.project"),
        (
            'name: s\ncompose:\n  file: c.yml\nservices:\n  b: {image: "b:1\\n"}\n',
            "services.b.image",
        ),
        ('name: s\ncompose:\n  file: c.yml\nservices:\n  "b\\n": {image: "b:1"}\n', "services.b\n"),
        (
            'name: s\ncompose:\n  file: c.yml\nfiles:\n  .env.app:\n    set: {"KEY\\n": v}\n',
            "files..env.app.set.KEY\n",
        ),
    ],
)
def test_state_references_and_names_are_matched_whole(tmp_path: Path, text: str, key: str) -> None:
    """A name, a project, an image, a service name, a dotenv key ending in a newline: refused."""
    (tmp_path / "c.yml").write_text(COMPOSE)
    (tmp_path / ".env.app").write_text("KEY=u\n")
    state = tmp_path / "s.yaml"
    state.write_text(text)
    with pytest.raises(InputError) as raised:
        load_state(state)
    assert raised.value.location is not None
    assert raised.value.location.key == key


def test_a_manifest_digest_with_a_final_newline_is_refused() -> None:
    """A registry digest is matched whole: `sha256:...\\n` is not a digest."""
    digest = "sha256:" + "a" * 64
    assert manifest_digest(json.dumps({"digest": digest}), "x:1") == digest
    with pytest.raises(PermanentDockerError):
        manifest_digest(json.dumps({"digest": digest + "\n"}), "x:1")


# --- 5. engines ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ssh://-oProxyCommand=touch", "ssh would read it as an option"),
        ("ssh://-oProxyCommand=touch@core.example", "ssh would read it as an option"),
        ("ssh://-Fcfg@host", "the user '-Fcfg' is not a login name"),
        ("ssh://deploy@-host", "the host '-host' is not a host name"),
        ("tcp://-h:2376", "the host '-h' is not a host name"),
        ("ssh://%2DoProxyCommand@host", "is not a login name"),
        ("ssh://a@b@host", "is not a login name"),
        ("ssh://deploy@core.example\n-oProxyCommand=x", "control character '\\n'"),
        ("ssh://deploy@core\x1b[2J.example", "control character '\\x1b'"),
        ("ctx\n", "control character '\\n' at position 4"),
        ("tcp://core.example:2376 ", "it contains whitespace"),
        (" ssh://core.example", "neither a docker context name"),
        ("-ctx", "neither a docker context name"),
        ("unix:///run/docker sock", "it contains whitespace"),
        ("http://core.example", "unknown engine URL scheme 'http'"),
    ],
)
def test_option_like_or_unprintable_engines_are_refused(text: str, fragment: str) -> None:
    """An engine whose user or host starts with `-`, holds a control character or a space."""
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_engine(text)


@pytest.mark.parametrize(
    "text",
    ["ssh://deploy@core.example:2222", "ssh://d.e_p@[::1]:22", "tcp://10.0.0.5:2376", "ctx-b"],
)
def test_ordinary_engines_are_accepted(text: str) -> None:
    """Host names, IPv6 literals, logins with dots and context names still pass."""
    assert str(parse_engine(text)) == text


def test_bad_state_engine_names_file_line_column_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`engine: ssh://-oProxyCommand=...` in a state: exit 3 at its line, column and key."""
    state = write_state(tmp_path)
    state.write_text(
        state.read_text().replace("name: s\n", "name: s\nengine: 'ssh://-oProxyCommand=x@h'\n")
    )
    code, err = run(["plan", str(state)], capsys)
    assert code == 3
    assert errors(err)[0].startswith(f"error: {state}:2:9: engine: malformed ssh URL")


def test_bad_engine_option_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--engine with a newline in it: exit 3 naming --engine, shown escaped."""
    state = write_state(tmp_path)
    code, err = run(["plan", str(state), "--engine", "ctx\nerror: forged"], capsys)
    assert code == 3
    assert errors(err) == [
        "error: --engine: the engine contains the control character '\\n' at position 4; give a "
        "docker context name or an ssh://, tcp://, unix:// URL on one line"
    ]


def test_fleet_target_engine_is_checked_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fleet target's engine `ssh://-Fcfg@host`: exit 3 at targets.core.engine."""
    write_state(tmp_path)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("fleet: f\ntargets:\n  core: {state: s.yaml, engine: 'ssh://-Fcfg@host'}\n")
    code, err = run(["plan", str(fleet)], capsys)
    assert code == 3
    assert errors(err)[0].startswith(f"error: {fleet}:3:33: targets.core.engine: malformed ssh")


# --- 6. plan files --------------------------------------------------------------------------


def edited(out: Path, edit: Callable[[dict[str, Any]], object], *, seal: bool) -> Path:
    """A copy of the plan file `out` changed by `edit`; its digest made again when `seal`."""
    data = json.loads(out.read_text())
    edit(data)
    if seal:
        data["digest"] = body_digest(data)
    bad = out.with_name("edited.plan")
    bad.write_text(json.dumps(data))
    return bad


def test_plan_file_with_no_steps_is_refused_not_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`"steps": []` (which applied nothing and exited 0): exit 3 PlanFileError, nothing changed."""
    _, out = save(tmp_path, capsys)
    for seal in (False, True):
        bad = edited(out, lambda d: d.update(steps=[]), seal=seal)
        code, err = run(["apply", str(bad)], capsys)
        assert code == 3, err
        assert f"error: {bad}: steps: invalid plan file: the steps [] are not those" in err
        with pytest.raises(PlanFileError):
            load_plan(bad)
    assert (tmp_path / "c.yml").read_text() == COMPOSE


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (lambda d: d["state"].update(given="other.yaml"), "digest", "the plan file was edited"),
        (lambda d: d["plan"]["changes"].clear(), "digest", "the plan file was edited"),
        (lambda d: d.update(digest="sha256:" + "0" * 64), "digest", "the plan file was edited"),
        (lambda d: d.pop("digest"), "digest", "Field required"),
        (lambda d: d["fingerprints"]["facts"].clear(), "fingerprints.facts", "not the plan's"),
        (lambda d: d["selection"].update(only=[]), "steps", "are not those its selection"),
        (
            lambda d: d["plan"]["changes"][0].update(step="checks"),
            "plan.changes.0.step",
            "does not run",
        ),
        (
            lambda d: d["plan"]["changes"][0].update(action="explode"),
            "plan.changes.0.action",
            "unknown action",
        ),
        (lambda d: d["plan"]["changes"][0].update(extra=1), "plan.changes.0.extra", "Extra inputs"),
        (lambda d: d["fingerprints"]["files"].pop(0), "fingerprints.files", "one state file"),
        (
            lambda d: d["fingerprints"]["files"][0].update(digest="x"),
            "fingerprints.files.0.digest",
            "sha256",
        ),
        (lambda d: d.update(created_at="yesterday"), "created_at", "not a date and time"),
        (lambda d: d["state"].update(name=""), "state.name", "at least 1 character"),
    ],
)
def test_an_edited_plan_file_is_refused_as_such(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], object],
    key: str,
    message: str,
) -> None:
    """Any edit: by the digest, or (digest made again) by the strict structure checks; exit 3."""
    _, out = save(tmp_path, capsys)
    bad = edited(out, edit, seal=key != "digest")
    code, err = run(["apply", str(bad)], capsys)
    assert code == 3, err
    assert f"error: {bad}: {key}: " in err
    assert message in err
    assert (tmp_path / "c.yml").read_text() == COMPOSE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "reconciler-plan", "version": 2, "version": 2}', "appears twice"),
        ('{"format": "reconciler-plan", "version": NaN}', "NaN is not a number a plan file"),
    ],
)
def test_plan_file_json_a_writer_never_makes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """A repeated key (the last would win silently) or NaN: exit 3."""
    bad = tmp_path / "bad.plan"
    bad.write_text(text)
    code, err = run(["apply", str(bad)], capsys)
    assert (code, message in err) == (3, True), err


@pytest.mark.parametrize(
    "wrap",
    [
        lambda text: b"\xef\xbb\xbf" + text.encode(),
        lambda text: b"\n \t\n" + text.encode(),
        lambda text: "\ufeff\n".encode() + text.encode(),
        lambda text: text.encode("utf-16"),
        lambda text: text.encode("utf-32"),
    ],
    ids=["utf8-bom", "whitespace", "bom-then-newline", "utf16", "utf32"],
)
def test_plan_file_with_a_byte_order_mark_is_a_plan_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wrap: Callable[[str], bytes]
) -> None:
    """A BOM or leading whitespace: still told as a plan file (not read as a state), applied."""
    _, out = save(tmp_path, capsys)
    marked = tmp_path / "marked.plan"
    marked.write_bytes(wrap(out.read_text()))
    assert is_plan_file(marked)
    assert load_plan(marked).steps == load_plan(out).steps
    code, err = run(["plan", str(marked)], capsys)
    assert (code, "this is a plan file: give it to `apply`" in err) == (3, True), err
    code, err = run(["apply", str(marked)], capsys)
    assert code == 0, err
    assert (tmp_path / "c.yml").read_text() == EDITED


def test_plan_file_reads_go_through_the_bounded_reader(tmp_path: Path) -> None:
    """load_plan of a FIFO or a directory: PlanFileError naming its kind, never a block."""
    fifo = tmp_path / "fifo.plan"
    os.mkfifo(fifo)
    with pytest.raises(PlanFileError, match="FIFO"):
        load_plan(fifo)
    assert not is_plan_file(fifo)
    with pytest.raises(PlanFileError, match="directory"):
        load_plan(tmp_path)


# --- 7. echoed text escaped -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("x\nerror: forged", "x\\nerror: forged"),
        ("first\n  continued", "first\n  continued"),
        ("tab\tcr\rdel\x7fc1\x9b", "tab\\tcr\\rdel\\x7fc1\\x9b"),
        ("bidi\u202eline\u2028", "bidi\\u202eline\\u2028"),
        ("trailing\n", "trailing\\n"),
        ("plain ü text", "plain ü text"),
    ],
)
def test_printable_escapes_control_characters(text: str, shown: str) -> None:
    """printable: controls escaped; a newline kept only before an indented continuation line."""
    assert printable(text) == shown


def test_plan_file_given_with_escapes_and_a_forged_line_prints_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan's `given` holding ANSI escapes, a newline and `error: forged`: shown escaped."""
    state = write_state(tmp_path)
    out = tmp_path / "s.plan"
    given = "x\x1b[2J\x1b[31m\nerror: forged\rline"
    reconcile.save_plan(load_state(state), out, only=["compose-file"], given=given)
    state.write_text(state.read_text() + "# edited\n")  # stale: the message names `given`
    code, err = run(["apply", str(out)], capsys)
    assert code == 1
    assert "\x1b" not in err
    assert "\r" not in err
    assert "state file x\\x1b[2J\\x1b[31m\\nerror: forged\\rline changed since" in err
    shown = [line for line in err.splitlines() if "forged" in line and line[:1] != "{"]
    assert len(shown) == 1
    assert shown[0].startswith("error: plan file")
    assert not any(line.startswith("error: forged") for line in err.splitlines())


def test_a_path_with_control_characters_is_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state path holding an escape sequence and a newline: the error line shows them escaped."""
    path = tmp_path / "s\x1b]0;title\x07\nerror: forged.yaml"
    code, err = run(["apply", str(path)], capsys)
    assert code == 3
    assert errors(err) == [
        f"error: {tmp_path}/s\\x1b]0;title\\x07\\nerror: forged.yaml: state file not found"
    ]


def test_argparse_errors_are_shown_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown option holding an escape sequence: exit 3, shown escaped."""
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--no\x1b[2J"])
    assert caught.value.code == 3
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "--no\\x1b[2J" in err


def test_multi_line_messages_keep_their_indented_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two validation errors: the second stays on its own indented line."""
    state = write_state(tmp_path, "checks:\n  - {name: c, deadline: .nan, http: {url: 'x'}}\n")
    code, err = run(["plan", str(state)], capsys)
    assert code == 3
    lines = err.splitlines()
    assert lines[-2].startswith("error: ")
    assert lines[-1].startswith(f"  {state}:")


def test_health_diagnostics_are_indented_and_escaped() -> None:
    """A container's log line `error: forged` with escapes: indented under its service, escaped."""
    error = HealthTimeoutError(
        "api unhealthy", {"api\x1b": "state: unhealthy\nerror: forged \x1b[31mred"}
    )
    text = _error_text(error, Secrets())
    assert text == (
        "error: api unhealthy\n--- api\\x1b\n  state: unhealthy\n  error: forged \\x1b[31mred\n"
    )


def test_console_log_values_are_escaped() -> None:
    """With the console renderer, every text value of a log event goes through printable."""
    event = {"event": "apply failed", "error": "x\x1b[2J\nerror: forged", "count": 2}
    assert _printable_values(None, "error", event) == {
        "event": "apply failed",
        "error": "x\\x1b[2J\\nerror: forged",
        "count": 2,
    }


# CLI contract: exit codes for bad input, and --json on stdout with logs on stderr.


def test_bad_arguments_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown options are invalid input: exit 3, not argparse's 2 (which means changes pending)."""
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--no-such-option"])
    assert caught.value.code == 3
    assert "unrecognized arguments" in capsys.readouterr().err


def test_unknown_step_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--only with a step that does not exist is invalid input naming the valid steps."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "imagez"]) == 3
    err = capsys.readouterr().err
    assert "unknown step 'imagez'" in err
    assert "compose-file, images, services, migrations, checks" in err


def test_missing_state_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state path that does not exist: exit 3 and the path in the message."""
    assert main(["apply", str(tmp_path / "nope.yaml")]) == 3
    assert "nope.yaml: state file not found" in capsys.readouterr().err


def test_plan_only_compose_file_json_needs_no_docker(tmp_path: Path) -> None:
    """plan --only compose-file --json: contract JSON on stdout, exit 2, file untouched."""
    compose = tmp_path / "c.yml"
    compose.write_bytes(b"services:\r\n  a:\r\n    image: 'a:1'  # keep\r\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "plan",
            str(tmp_path / "s.yaml"),
            "--only",
            "compose-file",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    payload = json.loads(done.stdout)
    assert [
        (c["step"], c["target"], c["action"], c["before"], c["after"]) for c in payload["changes"]
    ] == [("compose-file", "c.yml:services.a.image", "edit", "a:1", "a:2")]
    assert set(payload["changes"][0]) >= {"step", "target", "action", "reason"}
    assert compose.read_bytes() == b"services:\r\n  a:\r\n    image: 'a:1'  # keep\r\n"


def test_apply_only_compose_file_edits_minimally_and_then_is_in_sync(tmp_path: Path) -> None:
    """apply --only compose-file changes just the value, keeps the mode; a second apply is a no-op."""
    compose = tmp_path / "c.yml"
    original = (
        b"# ops file\r\nservices:\r\n  a:\r\n    image: 'a:1'  # keep\r\n    ports: [8080:8080]"
    )
    compose.write_bytes(original)
    compose.chmod(0o640)
    (tmp_path / "s.yaml").write_text(
        "name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n"
    )
    assert main(["apply", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert compose.read_bytes() == original.replace(b"'a:1'", b"'a:2'")
    assert compose.stat().st_mode & 0o777 == 0o640
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert not list(tmp_path.glob(".c.yml.*")), "no temp file left behind"


def test_main_leaves_no_global_state(tmp_path: Path) -> None:
    """In-process main() restores stdout/stderr, signal handlers and structlog's defaults."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    streams = (sys.stdout, sys.stderr)
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert (sys.stdout, sys.stderr) == streams
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert not structlog.is_configured()


def test_main_keeps_the_callers_structlog_configuration(tmp_path: Path) -> None:
    """A caller's own structlog configuration is the same after an in-process main()."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    processors = [structlog.processors.KeyValueRenderer()]
    structlog.configure(processors=processors, cache_logger_on_first_use=True)
    before = structlog.get_config()
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert structlog.get_config() == before


def test_unexpected_error_is_one_line_naming_a_bug_and_a_traceback_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug prints one line naming it as a bug and the file holding its traceback; exit 1."""
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("reconciler.compose.edit.pin_images", broken)
    monkeypatch.setattr("reconciler.steps.compose_file.pin_images", broken)
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "internal error (a bug in reconciler): ZeroDivisionError" in lines[0]
    assert "Traceback" not in err
    saved = Path(lines[0].rsplit("traceback written to ", 1)[1])
    assert "ZeroDivisionError" in saved.read_text()
    saved.unlink()


def test_non_utf8_compose_file_exits_3_at_the_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A compose file that is not UTF-8 is refused at the bad byte's line and column."""
    compose = tmp_path / "c.yml"
    compose.write_bytes(b"services:\n  a:\n    image: caf\xe9\n")
    (tmp_path / "s.yaml").write_text("name: s\ncompose:\n  file: c.yml\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 3
    assert f"{compose}:3:15: not UTF-8: byte 0xe9" in capsys.readouterr().err
    assert compose.read_bytes() == b"services:\n  a:\n    image: caf\xe9\n"
