"""Property-based test of the CLI on generated inputs: state, compose and env files that are
YAML-ish mixtures of valid keys, wrong types, unicode, control characters, anchors and merge
keys, deep nesting and random bytes. Whatever the input, `plan --only compose-file` (and
`validate`, once it exists) run in-process must exit 0-3, never print a traceback or an internal
error, and leave every file as it was when they exit 3.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from reconciler.cli.main import main
from tests.edges.layout import snapshot

# 100 generated inputs in the fast suite (about 2 s); `make test` asks for 1000 (EDGES_EXAMPLES).
settings.register_profile(
    "edges",
    max_examples=int(os.environ.get("EDGES_EXAMPLES", "100")),
    deadline=None,
    # The same examples on every run, so CI stays stable; EDGES_RANDOM=1 explores new ones.
    derandomize=os.environ.get("EDGES_RANDOM") != "1",
    print_blob=False,
    # Shrinking a failure takes about a minute: the run keeps its time budget without it, and a
    # failure shows the example as generated (small files). EDGES_SHRINK=1 shrinks it.
    phases=tuple(Phase) if os.environ.get("EDGES_SHRINK") else (Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EDGES = settings.get_profile("edges")

# Keys some model of a state file knows, keys of compose files, and a few that no one knows.
KEYS = (
    "name", "compose", "file", "project", "env_files", "profiles", "mode", "prune", "engine",
    "services", "image", "environment", "health_timeout", "images", "build", "context",
    "dockerfile", "args", "rootfs", "pull", "files", "set", "content", "source", "format",
    "absent", "secrets", "env", "command", "timeout", "checks", "http", "url", "exec",
    "allow_outside_root", "sensitive_env", "registries", "compare", "web", "db", "x-defaults",
    "services.web", "a.b", "", "<<",
)  # fmt: skip
PLAIN = (
    "web", "db", "web:2", "db:16", "Web:2", "web:${TAG}", "web:$$TAG", "compose.yml", ".env",
    "conf.yml", "../outside.yml", "/dev/null", "/dev/zero", "~", "null", "yes", "no", "true",
    "0", "-5", "1e9", ".nan", "-.inf", "0o17", "0x1F", "2m", "'0644'", "0644", "ssh://h",
    "unix:///x", "tcp://h:0", "[]", "{}", "''", '""', "!!binary aGk=", "!!str 3", "a: b",
    "*a", "*b", "*nope", "&a x", "|", ">-", "- x", "? k", "@", "`", "%", "#c",
)  # fmt: skip
ENV_LINES = (
    "TAG=1", "export TAG=2", "TAG='3'", 'TAG="4\\n"', "TAG=", "# comment", "", "BAD LINE",
    "=x", "TAG=${OTHER}", "OTHER=$TAG", "DB_PASSWORD=s3cr3t", "TAG=1 # note", "\ufeffTAG=5",
    "LOG_LEVEL=debug", "TAG = 6", "export", "TAG",
)  # fmt: skip

# Printable text (quoted or not), and text with control characters: escaped in double quotes
# (valid YAML), raw now and then (which YAML refuses).
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12)
control_text = st.text(st.characters(codec="utf-8"), max_size=12)
scalars = st.one_of(
    st.sampled_from(PLAIN),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    control_text.map(json.dumps),  # a double-quoted YAML scalar: control characters escaped
    text.map(lambda value: "'" + value.replace("'", "''") + "'"),
    text,  # unquoted: often not YAML at all
    st.just(None).flatmap(lambda _: control_text),  # raw control characters: rarely
)
keys_strategy = st.one_of(st.sampled_from(KEYS), text.map(json.dumps))


def _flow_mapping(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"


values: st.SearchStrategy[str] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(keys_strategy, children), max_size=4).map(_flow_mapping),
        st.tuples(st.sampled_from(["&a", "&b"]), children).map(" ".join),
        st.sampled_from(["*a", "*b", "{<<: *a}", "{<<: [*a, *b], image: web:2}"]),
    ),
    max_leaves=12,
)
# Nesting around the loader's limit (100 levels).
deep = st.integers(1, 110).map(lambda depth: "[" * depth + "]" * depth)


# Values each key takes when it is right, so that most examples get past the loader and reach
# the planner; one value in 2**`_WILD_BITS` (8) is random instead.
GOOD = {
    "name": ("edge", "p-1", "'edge'"),
    "file": ("compose.yml", "./compose.yml"),
    "project": ("edge", "p_1"),
    "env_files": ("[.env]", "[]"),
    "profiles": ("[debug]", "[]"),
    "image": ("web:2", "web:1", "db:16", "'web:2'", "registry.example:5000/team/web:2"),
    "health_timeout": ("30", "120.5", "1"),
    "environment": ("{LOG_LEVEL: debug}", "{WORKERS: '4', DB_PASSWORD: hunter2x}", "{}"),
    "compose_image": ("web:1", "web:${TAG}", "web:${TAG:-1}", '"web:$${X}"', "db:16"),
    "compose_environment": ("{LOG_LEVEL: info}", "[LOG_LEVEL=info, WORKERS=2]", "{}"),
    "files": (
        "conf.yml: {set: {a.b: 1}}",
        "conf.yml: {set: {a.b: x, \"'c.d'.e\": true}}",
        ".env: {set: {TAG: '3'}}",
        ".env: {absent: [OLD], set: {NEW: v}}",
        "conf.txt: {content: \"x\\n\", mode: '0644'}",
        "conf.yml: &f {set: {a: 2}}",
    ),
}
_WILD_BITS = 3


def _rare(draw: st.DrawFn, bits: int) -> bool:
    """True with odds 1 in 2**bits (hypothesis draws small integers far more often than others;
    its booleans are fair)."""
    return all(draw(st.booleans()) for _ in range(bits))


def _pick(draw: st.DrawFn, key: str) -> str:
    """A right value for `key`, or now and then a random one."""
    if _rare(draw, _WILD_BITS):
        return draw(st.one_of(values, deep))
    return draw(st.sampled_from(GOOD[key]))


@st.composite
def service(draw: st.DrawFn, name: str, keys: tuple[str, ...], prefix: str = "") -> str:
    """A service entry of a state or compose file, block style, often anchored or merged."""
    anchor = {"db": ["&a", "&a", ""], "web": ["&b", "", ""]}.get(name, ["", "&a", "&b"])
    lines = [f"  {name}: {draw(st.sampled_from(anchor))}".rstrip()]
    if _rare(draw, 2):  # mostly the anchor of the service before (db's &a)
        lines.append(
            "    <<: " + draw(st.sampled_from(["*a", "*a", "[*a]", "[*a, *b]", "*c", "{}"]))
        )
    for key in draw(st.lists(st.sampled_from(keys), max_size=len(keys), unique=True)):
        lines.append(f"    {key}: {_pick(draw, prefix + key)}")
    if len(lines) == 1:
        lines[0] += " " + draw(st.sampled_from(["{}", "{image: web:2}", "*a", "null"]))
    return "\n".join(lines)


@st.composite
def state_text(draw: st.DrawFn) -> str:
    """A state file: mostly the right shape and values, with random ones mixed in."""
    sections = []
    if not _rare(draw, 4):
        sections.append("name: " + _pick(draw, "name"))
    if not _rare(draw, 4):
        compose = "compose:\n  file: " + _pick(draw, "file")
        for key in draw(
            st.lists(st.sampled_from(["project", "env_files", "profiles"]), unique=True)
        ):
            compose += f"\n  {key}: {_pick(draw, key)}"
        sections.append(compose)
    if draw(st.booleans()):
        names = draw(st.sampled_from([["db", "web"], ["db", "web"], ["web"], ["web", "db"]]))
        keys = ("image", "environment", "health_timeout")
        sections.append("services:\n" + "\n".join(draw(service(name, keys)) for name in names))
    if _rare(draw, 1):
        entries = draw(st.lists(st.sampled_from(GOOD["files"]), min_size=1, max_size=2))
        if _rare(draw, _WILD_BITS):
            entries.append(f"{draw(keys_strategy)}: {draw(values)}")
        sections.append("files:\n" + "\n".join("  " + entry for entry in entries))
    if _rare(draw, 2):
        for key, value in draw(
            st.lists(st.tuples(keys_strategy, st.one_of(values, deep)), max_size=2)
        ):
            sections.append(f"{key}: {value}")
    if _rare(draw, 2):
        sections = draw(st.permutations(sections))
    return "\n".join(sections) + "\n"


@st.composite
def compose_text(draw: st.DrawFn) -> str:
    """A compose file: services web and db, extension fields, anchors and merge keys."""
    head = draw(
        st.sampled_from(["", "", "x-common: &c {environment: {A: b}}\n", "name: p\n", "x: &a {}\n"])
    )
    keys = ("image", "environment")
    services = "\n".join(draw(service(name, keys, prefix="compose_")) for name in ("web", "db"))
    return head + "services:\n" + services + "\n"


@st.composite
def env_text(draw: st.DrawFn) -> str:
    """A dotenv file: known line shapes and random text, LF or CRLF."""
    lines = draw(st.lists(st.one_of(st.sampled_from(ENV_LINES), text), max_size=6))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


@st.composite
def mangled(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> bytes:
    """The UTF-8 bytes of a text, sometimes with random bytes spliced in."""
    raw = draw(texts).encode("utf-8")
    if _rare(draw, 3):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    return raw


@dataclass(frozen=True)
class Inputs:
    """One generated example: the bytes of each file of the case directory."""

    state: bytes
    compose: bytes
    env: bytes | None
    conf: bytes | None


inputs = st.builds(
    Inputs,
    state=mangled(state_text()),
    compose=mangled(compose_text()),
    env=st.none() | mangled(env_text()),
    conf=st.none() | mangled(values.map(lambda value: f"a: {value}\n")),
)


@contextlib.contextmanager
def _isolated(root: Path) -> Iterator[None]:
    """No engine reachable, lock and state files and bug reports inside `root`, no CI."""
    env = {
        "DOCKER_HOST": "unix:///nonexistent",
        "RECONCILER_LOCK_DIR": str(root / "lock"),
        "RECONCILER_STATE_DIR": str(root / "state"),
    }
    with mock.patch.dict(os.environ, env), mock.patch.object(tempfile, "tempdir", str(root)):
        for name in ("CI", "COMPOSE_PROJECT_NAME", "DOCKER_CONTEXT", "TAG", "OTHER"):
            os.environ.pop(name, None)
        yield


def _run(argv: list[str]) -> tuple[int, str]:
    """`main(argv)` in-process: its exit code and everything it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = main(argv)
        except SystemExit as stopped:  # argparse
            code = stopped.code
    assert isinstance(code, int), code
    return code, out.getvalue() + err.getvalue()


@functools.cache
def _commands() -> tuple[tuple[str, ...], ...]:
    """The commands to try: plan of the compose-file step, and validate once it exists."""
    found: list[tuple[str, ...]] = [("plan", "--only", "compose-file")]
    if _run(["validate", "--help"])[0] == 0:
        found.append(("validate",))
    return tuple(found)


def _lay_out(case: Path, example: Inputs) -> Path:
    case.mkdir()
    (case / "compose.yml").write_bytes(example.compose)
    if example.env is not None:
        (case / ".env").write_bytes(example.env)
    if example.conf is not None:
        (case / "conf.yml").write_bytes(example.conf)
    state = case / "state.yaml"
    state.write_bytes(example.state)
    return state


# ruamel warns of a reused anchor, which generated files are full of; the warning is not a result.
@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")
@settings(EDGES)
@given(example=inputs)
def test_any_input_exits_0_to_3_without_a_traceback(example: Inputs) -> None:
    """Any generated input: exit 0-3, no traceback nor internal error, no file changed on 3."""
    with tempfile.TemporaryDirectory(prefix="edges-property-") as name, _isolated(Path(name)):
        root = Path(name)
        state = _lay_out(root / "case", example)
        for command in _commands():
            before = snapshot(root)
            code, output = _run([command[0], str(state), *command[1:]])
            event(f"{command[0]} exit {code}")  # the spread, in --hypothesis-show-statistics
            assert code in {0, 1, 2, 3}, (command, code, output)
            assert "Traceback" not in output, (command, output)
            assert "internal error" not in output, (command, output)
            if code == 3:
                assert snapshot(root) == before, (command, output)
