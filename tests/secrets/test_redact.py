"""Masking by meaning: secrets in JSON and flow-style YAML, short and multi-line secrets, and plan
files that hold no secret value nor a plain digest of one.

The compose-file cases need no docker; the image-tag case observes the mutfx stack through the
fake docker CLI (tests/facts/fake_docker.py) replaying a copy of scenarios/converged/ whose api
image is tagged with a secret.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.errors import StalePlanError
from reconciler.plans import Change, Plan, Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.saved_plan import load_plan
from reconciler.secrets.redact import RedactingStream, Secrets
from reconciler.state import State, load_state
from reconciler.steps import compose_file
from reconciler.steps.compose_file import ComposeFileFacts, unified_diff
from tests.conftest import Stack, run_cli
from tests.facts import fake_docker

STACK = Path(fake_docker.__file__).parent / "mutfx_stack"
COMPOSE = """\
services:
  web:
    image: web:1
    environment:
      DB_PASSWORD: old0
"""
OLD_JSON = '{"db_password": "oldpass1x", "user": "bob"}\n'
NEW_JSON = '{"db_password": "hunter2xx", "user": "bob"}\n'
OLD_FLOW = "db: {password: oldflow1x, host: a}\n"
NEW_FLOW = "db: {password: newflow2x, host: b}\n"
# Every secret value the project below holds, old and new.
SECRETS = ("old0", "s3cr", "oldpass1x", "hunter2xx", "oldflow1x", "newflow2x")


def state_text(pin: str = "s3cr", json_file: str = "content: '" + NEW_JSON[:-1] + "'") -> str:
    """The project's state: a flow-style secret environment pin, a JSON and a flow YAML file."""
    return (
        "name: masking\n"
        "compose: {file: compose.yml}\n"
        f"services: {{web: {{environment: {{DB_PASSWORD: {pin}}}}}}}\n"
        "files:\n"
        f"  app.json: {{{json_file}}}\n"
        f"  db.yml: {{content: '{NEW_FLOW[:-1]}'}}\n"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A state whose compose file, app.json and db.yml all hold secrets that must change."""
    (tmp_path / "compose.yml").write_text(COMPOSE)
    (tmp_path / "app.json").write_text(OLD_JSON)
    (tmp_path / "db.yml").write_text(OLD_FLOW)
    (tmp_path / "state.yaml").write_text(state_text())
    return tmp_path


class Written:
    """Every file under some directories as it is now, to tell which ones a run wrote."""

    def __init__(self, *roots: Path) -> None:
        self.roots = roots
        self.before = self._contents()

    def _contents(self) -> dict[Path, bytes]:
        return {
            path: path.read_bytes()
            for root in self.roots
            for path in root.rglob("*")
            if path.is_file()
        }

    def since(self) -> dict[Path, bytes]:
        """The files written (made or changed) since this was made."""
        return {
            path: data for path, data in self._contents().items() if self.before.get(path) != data
        }


def forms(values: Iterable[str]) -> list[str]:
    """Each value, and the sha256 hex of it with and without a trailing newline."""
    return [
        form
        for value in values
        for form in (
            value,
            hashlib.sha256(value.encode()).hexdigest(),
            hashlib.sha256(f"{value}\n".encode()).hexdigest(),
        )
    ]


def assert_no_leak(values: Iterable[str], written: Written, *streams: str) -> None:
    """No value, nor its sha256 hex, in any file written since `written`, nor in any stream."""
    leaks = forms(values)
    files = written.since()
    assert files, "the run wrote nothing to scan"
    for path, data in files.items():
        text = data.decode("latin-1")
        assert not [form for form in leaks if form in text], path
    for stream in streams:
        assert not [form for form in leaks if form in stream], stream


def state_dir() -> Path:
    return Path(os.environ["RECONCILER_STATE_DIR"])


def change(changes: Iterable[Change], target: str) -> Change:
    (found,) = [c for c in changes if c.target == target]
    return found


@pytest.mark.parametrize("given", ["content", "source"])
def test_json_file_target_diff_is_masked(project: Path, given: str) -> None:
    """A password inside a JSON `files:` target (content: or source:) shows as *** in its diff."""
    if given == "source":
        (project / "app.src.json").write_text(NEW_JSON)
        (project / "state.yaml").write_text(state_text(json_file="source: app.src.json"))
    plan = reconcile.plan(load_state(project / "state.yaml"), steps=[Step.COMPOSE_FILE])
    diff = change(plan.changes, "app.json").diff or ""
    assert '-{"db_password": "***", "user": "bob"}\n' in diff
    assert '+{"db_password": "***", "user": "bob"}\n' in diff
    text = json.dumps(plan.to_dict())
    assert not [form for form in forms(SECRETS) if form in text]


def test_flow_yaml_values_are_masked_in_diffs(project: Path) -> None:
    """A password in a flow-style YAML map (`db: {password: x}`) shows as *** in its diff."""
    plan = reconcile.plan(load_state(project / "state.yaml"), steps=[Step.COMPOSE_FILE])
    diff = change(plan.changes, "db.yml").diff or ""
    assert "-db: {password: ***, host: a}\n" in diff
    assert "+db: {password: ***, host: b}\n" in diff
    assert "oldflow1x" not in diff
    assert "newflow2x" not in diff
    shown = unified_diff(
        '{"a": {"api_token": "t0k3n"}}', '{"a": {"api_token": "t0k4n"}}', "x", Secrets()
    )
    assert shown.endswith(
        '-{"a": {"api_token": "***"}}\n\\ No newline at end of file\n'
        '+{"a": {"api_token": "***"}}\n\\ No newline at end of file\n'
    )


def test_second_line_of_a_multi_line_secret_is_masked_in_any_message() -> None:
    """Each line of a multi-line secret is masked on its own, as when an error quotes one line."""
    secrets = Secrets()
    secrets.register("first-line-x\n\n   \nsecond-line-y\n")
    message = "service web: invalid value 'second-line-y' for DB_PASSWORD"
    assert secrets.redact(message) == "service web: invalid value '***' for DB_PASSWORD"
    assert secrets.redact("first-line-x\nsecond-line-y") == "***\n***"
    assert not [value for value in secrets.values if not value.strip()], "blank lines skipped"


def test_two_character_secret_is_masked() -> None:
    """A 2-character secret is masked where it stands alone, and *** is never masked again."""
    secrets = Secrets(["q7"])
    sink = io.StringIO()
    RedactingStream(sink, secrets).write("login failed: password q7 rejected\n")
    assert sink.getvalue() == "login failed: password *** rejected\n"
    assert secrets.redact("q7x and xq7") == "q7x and xq7", "not inside a longer word"
    stars = Secrets(["*", "**", "key-*"])
    assert stars.redact("a * b ** c *** d key-*") == "a *** b *** c *** d ***"
    flow = Secrets()
    assert flow.mask_text("web: {environment: {API_TOKEN: q8}}\n", "yaml") == (
        "web: {environment: {API_TOKEN: ***}}\n"
    )
    assert flow.redact("token q8.") == "token ***."


def test_plan_file_holds_no_secret_nor_its_digest(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan file (library and CLI) and every output hold no secret value nor its sha256 hex."""
    written = Written(project, state_dir())
    out = project / "saved.plan"
    state = load_state(project / "state.yaml")
    the_plan = reconcile.save_plan(state, out, only=["compose-file"])
    assert {c.target for c in the_plan.changes} >= {"app.json", "db.yml"}
    assert_no_leak(SECRETS, written)
    saved = load_plan(out)
    assert saved.plan["changes"], "the plan itself is in the file, masked"
    cli_out = project / "cli.plan"
    streams = []
    for extra in ([], ["--json"]):
        assert (
            main(
                [
                    "plan",
                    str(project / "state.yaml"),
                    "--only",
                    "compose-file",
                    "--out",
                    str(cli_out),
                    *extra,
                ]
            )
            == 2
        )
        captured = capsys.readouterr()
        streams += [captured.out, captured.err]
    assert "DB_PASSWORD: ***" in streams[0]
    assert_no_leak(SECRETS, written, *streams)
    assert (project / "app.json").read_text() == OLD_JSON, "plan changed nothing"


def test_state_file_digest_is_keyed_not_plain(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state file's digest hashes its secret keyed (another machine key, another digest)."""
    out = project / "saved.plan"

    def state_digest() -> str:
        reconcile.save_plan(load_state(project / "state.yaml"), out, only=["compose-file"])
        return {f.kind: f.digest for f in load_plan(out).fingerprints.files}["state file"]

    first = state_digest()
    assert state_digest() == first, "the same key, the same digest"
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(project / "other-machine"))
    assert state_digest() != first
    key = project / "other-machine" / "_machine" / "secrets.key"
    assert key.stat().st_mode & 0o777 == 0o600
    (project / "compose.yml").write_text("services:\n  web:\n    image: web:1\n")
    (project / "state.yaml").write_text(
        "name: masking\ncompose: {file: compose.yml}\nservices: {web: {environment: {LOG: x}}}\n"
    )
    plain = state_digest()
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(project / "third-machine"))
    assert state_digest() == plain, "no secret, nothing keyed"
    assert not (project / "third-machine").exists(), "a plan file of no secret needs no key"


@pytest.mark.parametrize(
    ("edit", "moved"),
    [
        ("state", "state file state.yaml changed since the plan was made"),
        ("file", "observed facts of step compose-file changed since the plan was made: app.json"),
    ],
)
def test_changed_secret_makes_the_saved_plan_stale(project: Path, edit: str, moved: str) -> None:
    """A secret changed since the plan (in the state, or in a file) makes the plan stale."""
    out = project / "saved.plan"
    reconcile.save_plan(
        load_state(project / "state.yaml"), out, only=["compose-file"], given="state.yaml"
    )
    if edit == "state":
        (project / "state.yaml").write_text(state_text(pin="s3cX"))
    else:
        (project / "app.json").write_text(OLD_JSON.replace("oldpass1x", "oldpass2x"))
    result = reconcile.apply_plan(out, lock=False)
    assert isinstance(result.error, StalePlanError), result.error
    assert moved in str(result.error)
    assert result.applied == ()


def secret_tag_scenario(tmp_path: Path, secret: str) -> Path:
    """scenarios/converged/ with the api image tagged `secret`; each image inspected alone, as
    an interpolated `image:` is resolved only by compose's model."""
    scenario = tmp_path / "scenario-secret-tag"
    shutil.copytree(fake_docker.SCENARIOS / "converged", scenario)
    for recorded in scenario.iterdir():
        recorded.write_text(recorded.read_text().replace("mutfxrb-api:1", f"mutfxrb-api:{secret}"))
    index = json.loads((scenario / "scenario.json").read_text())
    for image in json.loads((scenario / "04-image-inspect-mutfxrb-ap.stdout").read_text()):
        (tag,) = image["RepoTags"]
        output = f"inspect-{tag.split(':')[0]}.stdout"
        (scenario / output).write_text(json.dumps([image]))
        index["calls"].append(
            {"argv": f"image inspect {tag}", "rc": 0, "stdout": output, "stderr": None}
        )
    (scenario / "scenario.json").write_text(json.dumps(index))
    return scenario


def test_image_tag_secret_is_not_in_the_plan_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image tagged with a secret: the plan file names it masked, holds no value nor digest."""
    secret = "s3cr3t-tag"
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    compose = directory / "docker-compose.yml"
    compose.write_text(compose.read_text().replace('"mutfxrb-api:1"', '"mutfxrb-api:${API_TOKEN}"'))
    state_file = directory / "state.yaml"
    state_file.write_text(state_file.read_text().replace("    image: mutfxrb-api:1\n", ""))
    scenario = secret_tag_scenario(tmp_path, secret)
    log = tmp_path / "fake-docker" / "calls.log"
    fake_docker.install(tmp_path / "fake-docker" / "bin", scenario, root=directory, log=log)
    fake_docker.first_on_path(tmp_path / "fake-docker" / "bin", monkeypatch)
    monkeypatch.setenv("API_TOKEN", secret)
    # Everything but the fake docker's own call log (the argv docker is given names the image).
    written = Written(directory, state_dir())
    out = directory / "secret-tag.plan"
    reconcile.save_plan(load_state(state_file), out, skip=["checks"])
    images = load_plan(out).fingerprints.facts["images"]
    assert set(images) == {"mutfxrb-api:***", "mutfxrb-db:1"}
    assert main(
        ["plan", str(state_file), "--skip", "checks", "--out", str(directory / "cli.plan")]
    ) in (0, 2)
    captured = capsys.readouterr()
    assert_no_leak([secret], written, captured.out, captured.err)


# Secret redaction: what counts as secret, and that masking keeps the text readable.


def test_secret_looking_keys_and_url_passwords_are_masked() -> None:
    """Values under PASSWORD/TOKEN/KEY/DSN keys and URL passwords are replaced by ***."""
    secrets = Secrets()
    secrets.register_mapping(
        {"DB_PASSWORD": "hunter22", "LOG_LEVEL": "info", "URL": "https://u:p4ss@h/x"}
    )
    assert secrets.redact("pw=hunter22 level=info") == "pw=*** level=info"
    assert secrets.redact("https://u:p4ss@h/x and p4ss") == "https://u:***@h/x and ***"
    assert secrets.redact("postgres://app:other@db/app") == "postgres://app:***@db/app"


def test_compose_lines_with_secret_keys_are_masked_in_diffs() -> None:
    """A diff line keeps its key and layout; only the secret value becomes ***."""
    secrets = Secrets()
    assert (
        secrets.mask_line("      API_TOKEN: abc123xyz  # rotate monthly\n")
        == "      API_TOKEN: ***  # rotate monthly\n"
    )
    assert secrets.mask_line('      - "SECRET_KEY=s3cr3t"\n') == '      - "SECRET_KEY=***"\n'
    assert secrets.mask_line("      DB_PASSWORD: 'quoted-pw'\n") == "      DB_PASSWORD: '***'\n"
    assert secrets.mask_line("    image: api:2\n") == "    image: api:2\n"


def test_interpolated_values_are_not_registered_literally() -> None:
    """`${VAR}` placeholders are not secrets themselves; their values come from sensitive_env."""
    secrets = Secrets()
    secrets.register_compose_text("  PASSWORD: ${DB_PASSWORD}\n  TOKEN: literal-token\n")
    assert secrets.redact("${DB_PASSWORD}") == "${DB_PASSWORD}"
    assert secrets.redact("literal-token") == "***"


def test_redacting_stream_masks_every_write() -> None:
    """Everything written through the CLI's streams is redacted."""
    secrets = Secrets(["stream-secret"])
    inner = io.StringIO()
    stream = RedactingStream(inner, secrets)
    stream.write("a stream-secret b\n")
    assert inner.getvalue() == "a *** b\n"


def test_runs_do_not_share_secrets() -> None:
    """A value one run registered is not masked by another run's registry."""
    first, second = Secrets(), Secrets()
    first.register("only-in-the-first")
    assert second.redact("only-in-the-first") == "only-in-the-first"


def test_diff_text_depends_only_on_its_inputs(tmp_path: Path) -> None:
    """The same state and facts give the same diff text, whatever another run registered."""
    compose = "services:\n  a:\n    image: app:1\n    environment:\n      NOTE: app:1\n"
    state = State.model_validate(
        {
            "name": "s",
            "compose": {"file": str(tmp_path / "c.yml")},
            "services": {"a": {"image": "app:2"}},
        }
    )
    facts = ComposeFileFacts(tmp_path / "c.yml", compose)
    before = compose_file.diff(state, facts, Plan())
    Secrets().register("app:1")  # another run, in the same process
    assert compose_file.diff(state, facts, Plan()) == before
    assert "image: app:1" in (before.changes[0].diff or "")
    masked = compose_file.diff(
        state, ComposeFileFacts(tmp_path / "c.yml", compose, secrets=frozenset({"app:1"})), Plan()
    )
    assert "app:1" not in (masked.changes[0].diff or "")


# Secrets never appear in logs, plans, diffs, reports or JSON: every channel is searched.


@pytest.mark.docker
def test_secret_values_never_printed(stack: Stack) -> None:
    """Env secrets, build-arg tokens, DSN passwords and sensitive_env values stay masked everywhere."""
    token, npm, password, from_env = (
        f"{kind}-{uuid.uuid4().hex[:12]}" for kind in ("tok", "npm", "pw", "env")
    )
    text = stack.compose_file.read_text()
    # The token sits right above the api image line, so the pin's diff context includes it.
    text = text.replace(
        f'    image: "{stack.image("api")}"   # pinned by the state\n',
        "    environment:\n"
        f"      DATABASE_URL: postgres://app:{password}@db:5432/app\n"
        "      SETTING: ${RTEST_SECRET}\n"
        f"      API_TOKEN: {token}\n"
        f'    image: "{stack.image("api")}"   # pinned by the state\n',
    )
    text = text.replace("        ROLE: api\n", f"        ROLE: api\n        NPM_TOKEN: {npm}\n")
    stack.compose_file.write_text(text)
    state = stack.state_file.read_text().replace(stack.image("api"), stack.image("api", "2"))
    state += (
        "sensitive_env: [RTEST_SECRET]\nchecks:\n"
        '  - name: token is set\n    exec: {service: api, command: [sh, -c, "echo \\"$API_TOKEN\\""]}\n'
        '  - name: setting is set\n    exec: {service: api, command: [sh, -c, "echo \\"$SETTING\\""]}\n'
        '  - name: dsn is set\n    exec: {service: api, command: [sh, -c, "echo \\"$DATABASE_URL\\""]}\n'
    )
    stack.state_file.write_text(state)
    env = {**os.environ, "RTEST_SECRET": from_env}

    outputs = []
    for args in (
        ["plan", "-v", "--json"],
        ["plan", "--log-format", "console"],
        ["apply", "-v", "--json", "--report", "r.md", "--junit", "j.xml"],
        ["apply", "--log-format", "console"],
    ):
        done = run_cli(args[0], stack.state_file, *args[1:], env=env, cwd=stack.directory)
        assert done.returncode in {0, 2}, done.stderr[-2000:]
        outputs += [done.stdout, done.stderr]
    outputs += [(stack.directory / "r.md").read_text(), (stack.directory / "j.xml").read_text()]
    everything = "\n".join(outputs)
    for secret in (token, npm, password, from_env):
        assert secret not in everything, f"{secret} leaked"
    assert "API_TOKEN: ***" in everything, "the diff keeps the line, masked"
    assert "postgres://app:***@" in everything
    assert "exit 0: ***" in everything, "check details are masked too"
