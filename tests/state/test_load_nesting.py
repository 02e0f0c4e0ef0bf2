"""Hostile nesting: state and compose files nested thousands of levels deep (in the text, or
through chained aliases and `<<` merges) are InputErrors at a line and column, never a
RecursionError; nesting up to the limit still works."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.compose import yaml_doc
from reconciler.compose.edit import pin_images, read_services
from reconciler.errors import InputError
from reconciler.state import load, load_state

DEEP = 3000
LIMIT = 100
HEAD = "name: x\ncompose:\n  file: compose.yml\n"
SERVICES = "services:\n  web:\n    image: web:1\n"
SOURCE = Path("/does/not/exist/compose.yml")  # never read: the module only names it in errors
ENTRY_POINTS: dict[str, Callable[[str], object]] = {
    "read_services": lambda text: read_services(text, source=SOURCE),
    "pin_images": lambda text: pin_images(text, {"web": "web:2"}, source=SOURCE),
}


@pytest.fixture(params=["libyaml", "pure"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each compose test runs with libyaml (when installed) and with the pure parser alone."""
    if request.param == "pure":
        monkeypatch.setattr(yaml_doc, "LIBYAML_PARSER", None)
    elif yaml_doc.LIBYAML_PARSER is None:
        pytest.skip("libyaml (ruamel.yaml.clib) is not installed")
    return str(request.param)


def state_file(tmp_path: Path, body: str) -> Path:
    """A state file holding HEAD + body, with a valid compose file beside it."""
    (tmp_path / "compose.yml").write_text(SERVICES)
    path = tmp_path / "state.yaml"
    path.write_text(HEAD + body)
    return path


def flow_sequences(depth: int) -> str:
    """`depth` nested flow sequences."""
    return "[" * depth + "]" * depth


def flow_mappings(depth: int) -> str:
    """`depth` nested flow mappings."""
    return "{a: " * depth + "b" + "}" * depth


def alias_chain(length: int) -> str:
    """Top-level keys x-a0..: each a sequence holding an alias of the one before."""
    return "x-a0: &a0 [y]\n" + "".join(f"x-a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, length))


def merge_chain(length: int) -> str:
    """Top-level keys x-a0..: each a mapping merging the one before; web merges the last."""
    chain = "x-a0: &a0 {image: web:1}\n"
    chain += "".join(f"x-a{i}: &a{i} {{<<: *a{i - 1}}}\n" for i in range(1, length))
    return chain + f"services:\n  web:\n    <<: *a{length - 1}\n"


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        (f"services: {flow_sequences(DEEP)}\n", 4, 11 + LIMIT - 1),
        (f"services: {flow_mappings(DEEP)}\n", 4, 11 + 4 * (LIMIT - 1)),
        ("services:\n  " + "- " * DEEP + "a\n", 5, 3 + 2 * (LIMIT - 1)),
        # `[` at column 11 is level 2; level 101 is the 50th `{`, 5 columns per `[{a: `
        ("services: " + "[{a: " * (DEEP // 2) + "b" + "}]" * (DEEP // 2) + "\n", 4, 12 + 5 * 49),
    ],
    ids=["flow-sequences", "flow-mappings", "block-sequences", "mixed-flow"],
)
def test_state_nesting_past_the_limit_is_refused_where_it_passes_it(
    tmp_path: Path, body: str, line: int, column: int
) -> None:
    """A deeply nested state file is an InputError at the collection one level too deep."""
    path = state_file(tmp_path, body)
    with pytest.raises(InputError, match=f"nesting deeper than {LIMIT} levels") as caught:
        load_state(path)
    assert caught.value.location is not None
    assert (caught.value.location.file, caught.value.location.line) == (path, line)
    assert caught.value.location.column == column


def test_state_nesting_at_the_limit_reaches_validation(tmp_path: Path) -> None:
    """Exactly the limit (the top-level mapping counts as one) parses; validation then speaks."""
    path = state_file(tmp_path, f"services: {flow_sequences(LIMIT - 1)}\n")
    with pytest.raises(InputError, match="valid dictionary") as caught:
        load_state(path)
    assert caught.value.location is not None
    assert caught.value.location.key == "services"


def test_state_alias_chain_past_the_limit_is_refused(tmp_path: Path) -> None:
    """Aliases nesting deeper than the limit once expanded are refused before validation."""
    path = state_file(tmp_path, alias_chain(2 * LIMIT))
    with pytest.raises(InputError, match="deeper than 100 levels once aliases are expanded"):
        load_state(path)


def test_state_recursion_error_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the depth limit lifted, the RecursionError that follows still becomes InputError."""
    monkeypatch.setattr(load, "_MAX_DEPTH", 10**6)
    path = state_file(tmp_path, f"services: {flow_sequences(DEEP)}\n")
    with pytest.raises(InputError, match="recursion limit") as caught:
        load_state(path)
    assert caught.value.location is not None
    assert caught.value.location.file == path


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        (f"{SERVICES}x-deep: {flow_sequences(DEEP)}\n", 4, 9 + LIMIT - 1),
        (f"{SERVICES}    labels: {flow_mappings(DEEP)}\n", 4, 13 + 4 * (LIMIT - 3)),
        (f"{SERVICES}x-deep:\n  " + "- " * DEEP + "a\n", 5, 3 + 2 * (LIMIT - 1)),
    ],
    ids=["flow-sequences", "flow-mappings-in-a-service", "block-sequences"],
)
@pytest.mark.parametrize("call", ["read_services", "pin_images"])
def test_compose_nesting_past_the_limit_is_refused_where_it_passes_it(
    parser: str, call: str, text: str, line: int, column: int
) -> None:
    """Both entry points refuse a deeply nested compose file at the collection too deep."""
    with pytest.raises(InputError, match=f"compose file has nesting deeper than {LIMIT}") as caught:
        ENTRY_POINTS[call](text)
    assert caught.value.location is not None
    location = caught.value.location
    assert (location.file, location.line, location.column) == (SOURCE, line, column)


def test_compose_nesting_past_the_limit_stops_reading_events_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check runs on the event stream: each parse stops one level past the limit."""
    seen = 0
    real_compose = yaml_doc.compose

    def counting(events: Iterable[Any], offset: int) -> yaml_doc.Node | None:
        """_compose, counting the events it reads."""

        def counted() -> Iterator[Any]:
            """The events, counted."""
            nonlocal seen
            for event in events:
                seen += 1
                yield event

        return real_compose(counted(), offset)

    monkeypatch.setattr(yaml_doc, "compose", counting)
    with pytest.raises(InputError, match="nesting deeper"):
        read_services(f"{SERVICES}x-deep: {flow_sequences(DEEP)}\n", source=SOURCE)
    assert seen < 3 * LIMIT  # libyaml, then the pure parser: about LIMIT events each


def test_compose_nesting_at_the_limit_reads_and_pins(parser: str) -> None:
    """Exactly the limit (the top-level mapping counts as one) still reads and pins exactly."""
    text = f"{SERVICES}x-deep: {flow_sequences(LIMIT - 1)}\n"
    assert read_services(text, source=SOURCE)["web"].image == "web:1"
    result = pin_images(text, {"web": "web:2"}, source=SOURCE)
    assert result.text == text.replace("web:1", "web:2")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (alias_chain(DEEP) + SERVICES, LIMIT + 1),
        (merge_chain(DEEP), LIMIT + 1),
    ],
    ids=["alias-chain", "merge-chain"],
)
@pytest.mark.parametrize("call", ["read_services", "pin_images"])
def test_compose_chains_past_the_limit_are_refused_before_docker_sees_them(
    parser: str, call: str, text: str, line: int
) -> None:
    """Alias and `<<` chains past the limit are refused, by read_services too (before docker)."""
    # docker compose itself spins for minutes on a long alias chain, so docker must not see it.
    with pytest.raises(InputError, match="once aliases and '<<' merges are expanded") as caught:
        ENTRY_POINTS[call](text)
    assert caught.value.location is not None
    assert (caught.value.location.line, caught.value.location.column) == (line, 9)


def test_compose_chains_at_the_limit_read_and_pin(parser: str) -> None:
    """A merge chain just inside the limit still reads the inherited image and pins it."""
    text = merge_chain(LIMIT - 3)  # the top level, services and web make it LIMIT deep
    service = read_services(text, source=SOURCE)["web"]
    assert (service.image, service.inherited) == ("web:1", True)
    result = pin_images(text, {"web": "web:2"}, source=SOURCE)
    assert result.edits[0].how == "override-merge"


@pytest.mark.parametrize(
    ("call", "text"),
    [("read_services", merge_chain(DEEP)), ("pin_images", alias_chain(DEEP) + SERVICES)],
    ids=["read_services-merge-chain", "pin_images-alias-chain"],
)
def test_compose_recursion_error_is_an_input_error(
    monkeypatch: pytest.MonkeyPatch, call: str, text: str
) -> None:
    """With the depth limit lifted, the RecursionError that follows still becomes InputError."""
    monkeypatch.setattr(yaml_doc, "MAX_DEPTH", 10**6)
    with pytest.raises(InputError, match="recursion limit") as caught:
        ENTRY_POINTS[call](text)
    assert caught.value.location is not None
    assert caught.value.location.file == SOURCE
