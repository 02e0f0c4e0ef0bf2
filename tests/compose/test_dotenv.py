"""The dotenv reader gives the values compose-go's reader gives (no docker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.compose.dotenv import edit_dotenv, parse_dotenv
from reconciler.errors import InputError

SOURCE = Path("/srv/.env")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB=two words\n", {"A": "1", "B": "two words"}),
        ("export A=1\nexport  B=2\n", {"A": "1", "B": "2"}),
        ("A=1 # comment\nB=x#y\nC= #z\n", {"A": "1", "B": "x#y", "C": "#z"}),
        (
            "A='$HOME literal'\nB=\"$A and \\$A\"\n",
            {"A": "$HOME literal", "B": "$HOME literal and $A"},
        ),
        ('A="tab\\there\\nnew"\n', {"A": "tab\there\nnew"}),
        ("A=x\r\nB='y'\r\n", {"A": "x", "B": "y"}),
        ("\ufeffA=1", {"A": "1"}),
        ("A=\nB=''\nC=\"\"\n", {"A": "", "B": "", "C": ""}),
        ("A=a=b\n", {"A": "a=b"}),
        ("A: yaml style\n", {"A": "yaml style"}),
        ("BASE=v1\nTAG=${BASE}-${MISSING:-x}\n", {"BASE": "v1", "TAG": "v1-x"}),
        ('A="multi\nline"\nB=2\n', {"A": "multi\nline", "B": "2"}),
        ("INHERITED\nA=1\n", {"A": "1"}),
        ("A=ünïcödé 🚀\n", {"A": "ünïcödé 🚀"}),
    ],
)
def test_values_read_as_compose_reads_them(text: str, expected: dict[str, str]) -> None:
    """Quotes, escapes, export, comments, CRLF, BOM, empty values and variables read as compose's."""
    assert parse_dotenv(text, source=SOURCE).resolved({}) == expected


def test_bare_key_takes_the_environment_value() -> None:
    """A bare KEY line is defined only when the process environment has it."""
    assert parse_dotenv("HOME\n", source=SOURCE).resolved({"HOME": "/root"}) == {"HOME": "/root"}


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("A=1\nB=2\nA=3\n", (3, 1), r"duplicate key A \(first defined on line 1\)"),
        ("A=1\nnot a line\n", (2, 5), "expected `=` after not"),
        ("A='open\n", (1, 3), "unterminated quoted value of A"),
        ('A="x" y\n', (1, 7), "unexpected text after the closing quote"),
        ("=1\n", (1, 1), "expected a variable name"),
        ("\ufeffA=1\nA=2", (2, 1), "duplicate key A"),
    ],
)
def test_unreadable_text_names_line_and_column(
    text: str, where: tuple[int, int], message: str
) -> None:
    """Duplicates and unparseable lines are InputErrors at the file's line and column."""
    with pytest.raises(InputError, match=message) as raised:
        parse_dotenv(text, source=SOURCE)
    location = raised.value.location
    assert location is not None
    assert (location.file, location.line, location.column) == (SOURCE, *where)


# Each corpus case edits input.env as edit.json says (`set`, `absent`) and must give expected.env
# byte for byte, or fail with an InputError containing error.txt at the env file's line.


CORPUS = Path(__file__).parent / "dotenv_corpus"


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
