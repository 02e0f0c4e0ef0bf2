"""Each corpus case edits input.env as edit.json says (`set`, `absent`) and must give expected.env
byte for byte, or fail with an InputError containing error.txt at the env file's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.compose.dotenv import edit_dotenv, parse_dotenv
from reconciler.errors import InputError

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(path for path in CORPUS.iterdir() if path.is_dir())


def read_text(path: Path) -> str:
    """Decode exactly: no newline translation, the BOM stays in the text."""
    return path.read_bytes().decode("utf-8")


def test_corpus_is_big_enough() -> None:
    """The corpus keeps at least 30 cases, each with input, edit and one expected outcome."""
    assert len(CASES) >= 30
    for case in CASES:
        assert (case / "input.env").is_file(), case.name
        assert (case / "edit.json").is_file(), case.name
        assert (case / "expected.env").is_file() != (case / "error.txt").is_file(), case.name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(case: Path) -> None:
    """edit_dotenv turns input.env into expected.env byte for byte, or raises error.txt."""
    text = read_text(case / "input.env")
    edit = json.loads(read_text(case / "edit.json"))
    source = Path("/srv/homelab") / case.name / ".env"
    if (case / "error.txt").is_file():
        wanted = read_text(case / "error.txt").rstrip("\n")
        with pytest.raises(InputError) as raised:
            edit_dotenv(text, edit["set"], edit["absent"], source=source)
        assert wanted in str(raised.value)
        assert raised.value.location is not None
        assert raised.value.location.file == source
        assert raised.value.location.line is not None
        return
    result = edit_dotenv(text, edit["set"], edit["absent"], source=source)
    assert result.text.encode("utf-8") == (case / "expected.env").read_bytes()
    if result.text == text:
        assert result.edits == ()
    values = parse_dotenv(result.text, source=source).resolved({})
    for key, value in edit["set"].items():
        assert values[key] == value, key
    for key in edit["absent"]:
        assert key not in values, key
    again = edit_dotenv(result.text, edit["set"], edit["absent"], source=source)
    assert again.text == result.text
    assert again.edits == ()
