"""Each corpus case pins images in input.yml and must give expected.yml byte for byte, or fail
with an InputError containing error.txt; how.json, when present, lists each edit's `how`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.compose import yaml_doc
from reconciler.compose.edit import pin_images
from reconciler.errors import InputError

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(path for path in CORPUS.iterdir() if path.is_dir())
# Every case runs through each parser this machine has; libyaml is an optional wheel.
PARSERS = ("libyaml", "pure") if yaml_doc.LIBYAML_PARSER is not None else ("pure",)


def read_text(path: Path) -> str:
    """Decode exactly: no newline translation, the BOM stays in the text."""
    return path.read_bytes().decode("utf-8")


def parsers(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    libyaml = yaml_doc.LIBYAML_PARSER
    for parser in PARSERS:
        monkeypatch.setattr(yaml_doc, "LIBYAML_PARSER", libyaml if parser == "libyaml" else None)
        yield parser


def test_corpus_is_big_enough() -> None:
    """The corpus keeps at least 36 cases, each with input, pins and one expected outcome."""
    assert len(CASES) >= 36
    for case in CASES:
        assert (case / "input.yml").is_file(), case.name
        assert (case / "pins.json").is_file(), case.name
        assert (case / "expected.yml").is_file() != (case / "error.txt").is_file(), case.name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pin_images turns input.yml into expected.yml byte for byte, or raises error.txt."""
    text = read_text(case / "input.yml")
    pins = json.loads(read_text(case / "pins.json"))
    source = Path("/srv/shop") / case.name / "compose.yml"
    for parser in parsers(monkeypatch):
        if (case / "error.txt").is_file():
            wanted = read_text(case / "error.txt").rstrip("\n")
            with pytest.raises(InputError) as raised:
                pin_images(text, pins, source=source)
            assert wanted in str(raised.value), parser
            assert raised.value.location is not None, parser
            assert raised.value.location.file == source, parser
            continue
        result = pin_images(text, pins, source=source)
        expected = (case / "expected.yml").read_bytes()
        assert result.text.encode("utf-8") == expected, parser
        if result.text == text:
            assert result.edits == (), parser
        if (case / "how.json").is_file():
            how = json.loads(read_text(case / "how.json"))
            assert {e.service: e.how for e in result.edits} == how, parser
