"""The `files:` YAML editor and the environment pins over a corpus of real-looking files.

Each case directory holds input.yml and either set.json (dotted path -> value, for
`set_values`) or env.json (service -> {KEY: value}, for `pin_environment`); then expected.yml,
which the result must equal byte for byte, or error.txt: `line:column` of the InputError,
then a fragment of its message. Every case runs through each parser this machine has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.compose import yaml_doc
from reconciler.compose.yaml_set import SetResult, pin_environment, set_values
from reconciler.errors import InputError
from reconciler.state.paths import parse_path

CORPUS = Path(__file__).parent / "yaml_set_corpus"
CASES = sorted(path for path in CORPUS.iterdir() if path.is_dir())
PARSERS = ("libyaml", "pure") if yaml_doc.LIBYAML_PARSER is not None else ("pure",)


def parsers(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    libyaml = yaml_doc.LIBYAML_PARSER
    for parser in PARSERS:
        monkeypatch.setattr(yaml_doc, "LIBYAML_PARSER", libyaml if parser == "libyaml" else None)
        yield parser


def run(case: Path, text: str, source: Path) -> SetResult:
    """The case's edit: environment pins when it has env.json, else set_values."""
    if (case / "env.json").is_file():
        pins = json.loads((case / "env.json").read_text(encoding="utf-8"))
        return pin_environment(text, pins, source=source)
    values = json.loads((case / "set.json").read_text(encoding="utf-8"))
    return set_values(
        text, {parse_path(key): value for key, value in values.items()}, source=source
    )


def test_corpus_is_big_enough() -> None:
    """At least 25 YAML-file cases and 8 environment cases, each with one expected outcome."""
    assert sum((case / "set.json").is_file() for case in CASES) >= 25
    assert sum((case / "env.json").is_file() for case in CASES) >= 8
    for case in CASES:
        assert (case / "input.yml").is_file(), case.name
        assert (case / "set.json").is_file() != (case / "env.json").is_file(), case.name
        assert (case / "expected.yml").is_file() != (case / "error.txt").is_file(), case.name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """input.yml edited gives expected.yml byte for byte, or the located error of error.txt."""
    text = (case / "input.yml").read_bytes().decode("utf-8")
    source = Path("/srv/conf") / case.name / "input.yml"
    for parser in parsers(monkeypatch):
        if (case / "error.txt").is_file():
            where, message = (case / "error.txt").read_text(encoding="utf-8").splitlines()[:2]
            with pytest.raises(InputError) as raised:
                run(case, text, source)
            location = raised.value.location
            assert location is not None, parser
            assert (location.file, f"{location.line}:{location.column}") == (source, where), parser
            assert message in raised.value.message, parser
            continue
        result = run(case, text, source)
        assert result.text.encode("utf-8") == (case / "expected.yml").read_bytes(), parser
        assert (result.text == text) == (not result.edits), parser
        again = run(case, result.text, source)
        assert again.text == result.text, f"{parser}: a second run changes the file again"
        assert not again.edits, parser


def test_set_values_reports_before_after_and_how() -> None:
    """Each edit says the value before (None when missing or null), after, and how."""
    text = "a:\n  b: 1\n  c:\n"
    result = set_values(text, {("a", "b"): 2, ("a", "c"): "x", ("a", "d"): True}, source=Path("f"))
    assert [(e.before, e.after, e.how) for e in result.edits] == [
        ("1", "2", "replaced"),
        (None, "x", "replaced"),
        (None, "true", "inserted"),
    ]


def test_values_already_set_are_reported_same() -> None:
    """A value equal to the file's (same type under YAML 1.2) is `same`, not an edit."""
    text = "a: 1\nb: '1'\nc: true\n"
    result = set_values(text, {("a",): 1, ("b",): 1, ("c",): True}, source=Path("f"))
    assert result.same == (("a",), ("c",))
    assert [e.path for e in result.edits] == [("b",)]
    assert result.text == "a: 1\nb: 1\nc: true\n"


@pytest.mark.parametrize(
    ("dotted", "keys"),
    [
        ("a.b.c", ("a", "b", "c")),
        ("'a.b'.c", ("a.b", "c")),
        ('x."k8s.io/name"', ("x", "k8s.io/name")),
        ("single", ("single",)),
    ],
)
def test_parse_path(dotted: str, keys: tuple[str, ...]) -> None:
    """Dotted paths split on dots; a quoted key keeps its dots."""
    assert parse_path(dotted) == keys


@pytest.mark.parametrize("dotted", ["", "a..b", "a.", "'a.b", "'a'b", ".a"])
def test_parse_path_refuses_malformed_paths(dotted: str) -> None:
    """Empty keys, a trailing dot and unclosed or misplaced quotes are refused."""
    with pytest.raises(ValueError, match="path"):
        parse_path(dotted)
