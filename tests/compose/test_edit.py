"""Behaviours of reconciler.compose.edit beyond the corpus: reversibility, idempotence, the two
parser paths, rendering rules, read_services, and the error and verification guards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.compose import edit, yaml_doc
from reconciler.compose.edit import ImageEdit, ServiceImage, pin_images, read_services
from reconciler.errors import InputError

CORPUS = Path(__file__).parent / "edit_corpus"
CASES = sorted(path for path in CORPUS.iterdir() if path.is_dir())
SOURCE = Path("/does/not/exist/compose.yml")  # never read: the module only names it in errors
needs_libyaml = pytest.mark.skipif(
    yaml_doc.LIBYAML_PARSER is None, reason="libyaml (ruamel.yaml.clib) is not installed"
)


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def corpus_inputs() -> list[tuple[str, str]]:
    """(case name, input text) of every corpus input that read_services accepts."""
    inputs: list[tuple[str, str]] = []
    for case in CASES:
        text = read_text(case / "input.yml")
        try:
            read_services(text, source=SOURCE)
        except InputError:
            continue
        inputs.append((case.name, text))
    return inputs


def tree(doc: yaml_doc.Doc) -> list[tuple[int, int, int, str]]:
    """Every node of a parsed document as (kind, start, end, value), in document order."""
    out: list[tuple[int, int, int, str]] = []
    stack = [doc.root] if doc.root is not None else []
    while stack:
        node = stack.pop()
        out.append((node.kind, node.start, node.end, node.value))
        stack.extend(reversed(node.items))
    return out


def load(text: str, version: tuple[int, int]) -> object:
    yaml = YAML(typ="safe", pure=True)
    yaml.version = version
    return yaml.load(text)


# --- properties over the whole corpus ------------------------------------------------------------


def test_replace_then_restore_gives_original_bytes() -> None:
    """Pinning a service to a new image and back to its old one restores the original bytes."""
    restored = 0
    for name, text in corpus_inputs():
        for service, image in read_services(text, source=SOURCE).items():
            if image.image is None or image.inherited:
                continue
            try:
                there = pin_images(text, {service: "example.invalid/roundtrip:1"}, source=SOURCE)
            except InputError:
                continue  # a refusal (a shared anchor, say) is covered by the corpus
            (first,) = there.edits
            if first.how != "replaced" or first.note:
                continue  # quoting added or a block scalar flattened: not meant to round-trip
            back = pin_images(there.text, {service: image.image}, source=SOURCE)
            if back.edits[0].note:
                continue
            assert back.text == text, (name, service)
            restored += 1
    assert restored >= 40


def test_pinning_twice_is_idempotent() -> None:
    """Pinning the same images again changes nothing: no edits and the very same text."""
    checked = 0
    for case in CASES:
        if not (case / "expected.yml").is_file():
            continue
        pins = json.loads(read_text(case / "pins.json"))
        once = pin_images(read_text(case / "input.yml"), pins, source=SOURCE)
        twice = pin_images(once.text, pins, source=SOURCE)
        assert twice.edits == (), case.name
        assert twice.text is once.text, case.name
        checked += 1
    assert checked >= 30


def test_every_service_can_take_a_new_image_in_every_corpus_file() -> None:
    """Pinning all services at once either succeeds with a verified text or refuses clearly."""
    refusals: dict[str, str] = {}
    for name, text in corpus_inputs():
        services = read_services(text, source=SOURCE)
        pins = {service: f"example.invalid/{i}:new" for i, service in enumerate(services)}
        try:
            result = pin_images(text, pins, source=SOURCE)
        except InputError as exc:
            refusals[name] = exc.message
            continue
        after = read_services(result.text, source=SOURCE)
        assert {s: i.image for s, i in after.items()} == pins, name
    assert sorted(refusals) == ["35-empty-service-error", "42-alias-service-error"], refusals


# --- the two parsers -----------------------------------------------------------------------------


def test_pure_parser_counts_the_bom_and_libyaml_offsets_shifted_by_one_match() -> None:
    """libyaml's marks skip a leading BOM; the +1 offset makes them equal to the pure parser's."""
    body = read_text(CORPUS / "18-x-extension-anchors" / "input.yml")
    with_bom = yaml_doc.compose(yaml_doc.pure_yaml().parse("\ufeff" + body), 0)
    shifted = yaml_doc.compose(yaml_doc.pure_yaml().parse(body), 1)
    assert with_bom is not None
    assert shifted is not None
    doc_bom = yaml_doc.Doc("\ufeff" + body, with_bom, "pure")
    doc_shifted = yaml_doc.Doc("\ufeff" + body, shifted, "pure")
    assert tree(doc_bom) == tree(doc_shifted)
    assert tree(doc_bom)[1][1] == 1  # the first key starts after the BOM, at offset 1


@needs_libyaml
def test_libyaml_offsets_with_bom_match_the_pure_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a BOM, every node offset from the libyaml path equals the pure parser's offset."""
    text = "\ufeff" + read_text(CORPUS / "18-x-extension-anchors" / "input.yml")
    fast = yaml_doc.parse(text, SOURCE)
    assert fast.parser == "libyaml"
    monkeypatch.setattr(yaml_doc, "LIBYAML_PARSER", None)
    slow = yaml_doc.parse(text, SOURCE)
    assert slow.parser == "pure"
    assert tree(fast) == tree(slow)
    for _kind, start, end, value in tree(fast):
        assert value in text[start:end]


@needs_libyaml
def test_libyaml_rejection_falls_back_to_the_pure_parser() -> None:
    """`[8080:8080]` is an error for libyaml (YAML 1.1), so the pure parser takes over."""
    text = read_text(CORPUS / "21-flow-ports-libyaml-rejects" / "input.yml")
    assert yaml_doc.parse(text, SOURCE).parser == "pure"
    quoted = text.replace("8080:8080, 8443:8443", "'8080:8080'").replace(
        "[./nginx.conf:/etc/nginx/nginx.conf:ro]", "['./nginx.conf:/etc/nginx/nginx.conf:ro']"
    )
    assert yaml_doc.parse(quoted, SOURCE).parser == "libyaml"


def test_pure_parser_alone_edits_the_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml, parsing uses the pure parser and still pins exactly."""
    monkeypatch.setattr(yaml_doc, "LIBYAML_PARSER", None)
    case = CORPUS / "21-flow-ports-libyaml-rejects"
    text = read_text(case / "input.yml")
    assert yaml_doc.parse(text, SOURCE).parser == "pure"
    result = pin_images(text, json.loads(read_text(case / "pins.json")), source=SOURCE)
    assert result.text == read_text(case / "expected.yml")


@pytest.mark.parametrize(
    "text",
    [
        "a: b\t# c\n",
        "a:\t# c\n  b: 1\n",
        'a: "x"\t\n',
        "a: [1]\t\n",
        "a:\n  - x\t\n",
        "\t# c\na: 1\n",
    ],
)
def test_pure_parser_accepts_tabs_that_separate(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """A tab after content (or on a comment line) separates tokens, as in libyaml and compose."""
    monkeypatch.setattr(yaml_doc, "LIBYAML_PARSER", None)
    assert yaml_doc.parse(text, SOURCE).root is not None


def test_pure_parser_still_rejects_tab_indentation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tab used as indentation stays a YAML error, reported with its line."""
    monkeypatch.setattr(yaml_doc, "LIBYAML_PARSER", None)
    with pytest.raises(InputError, match="invalid YAML") as raised:
        read_services("services:\n  web:\n\timage: x\n", source=SOURCE)
    assert raised.value.location is not None
    assert raised.value.location.line == 3


# --- rendering -----------------------------------------------------------------------------------

AWKWARD = [
    "yes",
    "No",
    "on",
    "null",
    "~",
    "1.0",
    "1e3",
    "0x1f",
    "0o17",
    "017",
    "1:20",
    "2024-05-01",
    ".inf",
    "true",
    "",
    " lead",
    "trail ",
    "a: b",
    "a #b",
    "-x",
    "?x",
    "*x",
    "&x",
    "!x",
    "%x",
    "@x",
    "`x",
    "'x",
    '"x',
    "{x",
    "[x",
    "x:",
    "#x",
    "|x",
    ">x",
    "=",
    "<<",
]


@pytest.mark.parametrize("value", AWKWARD)
def test_plain_values_get_quoted_when_they_would_not_load_as_that_string(value: str) -> None:
    """A value that is not a safe plain scalar is single-quoted and loads back exactly."""
    rendered, note = yaml_doc.render(value, None, in_flow=False)
    assert rendered.startswith("'")
    assert note.startswith("single-quoted: ")
    for version in ((1, 1), (1, 2)):
        assert load(f"image: {rendered}\n", version) == {"image": value}


@pytest.mark.parametrize(
    "value", ["nginx:1.27", "localhost:5000/app:1.2", "app@sha256:" + "a" * 64, "a-b_c.d/e"]
)
def test_ordinary_image_references_stay_plain(value: str) -> None:
    """Image references that load as themselves under YAML 1.1 and 1.2 stay unquoted."""
    assert yaml_doc.render(value, None, in_flow=False) == (value, "")
    for version in ((1, 1), (1, 2)):
        assert load(f"image: {value}\n", version) == {"image": value}


def test_plain_values_with_colons_are_quoted_inside_flow_collections() -> None:
    """Inside `{...}` a ':' is quoted, since YAML 1.1 parsers reject it in flow plain scalars."""
    rendered, note = yaml_doc.render("nginx:1.27", None, in_flow=True)
    assert rendered == "'nginx:1.27'"
    assert "flow collection" in note


@pytest.mark.parametrize(
    ("value", "style", "rendered"),
    [
        ("a'b", "'", "'a''b'"),
        ('a"b\\c', '"', '"a\\"b\\\\c"'),
        ("a\nb\x01\u2028", '"', '"a\\nb\\x01\\L"'),
        ("tab\there", "'", "'tab\there'"),
        ("bell\x07", "'", '"bell\\a"'),
    ],
)
def test_quoted_styles_escape_exactly(value: str, style: str, rendered: str) -> None:
    """Single quotes double `'`; double quotes escape `\\`, `"` and control characters."""
    assert yaml_doc.render(value, style, in_flow=False)[0] == rendered
    for version in ((1, 1), (1, 2)):
        assert load(f"image: {rendered}\n", version) == {"image": value}


def test_quoting_is_reported_in_the_edit_note() -> None:
    """An edit that had to add quotes says why in ImageEdit.note."""
    result = pin_images("services:\n  web:\n    image: app\n", {"web": "1.10"}, source=SOURCE)
    assert result.text == "services:\n  web:\n    image: '1.10'\n"
    assert result.edits == (
        ImageEdit(
            "web",
            "app",
            "1.10",
            "replaced",
            "single-quoted: a plain '1.10' would load as float under YAML 1.1",
        ),
    )


# --- edits not in the corpus ---------------------------------------------------------------------


def test_insertion_uses_the_line_ending_of_the_line_it_follows() -> None:
    """In a file with mixed line endings, the inserted line copies the break it follows."""
    text = "services:\n  web:\r\n    build: .\n"
    result = pin_images(text, {"web": "app:1"}, source=SOURCE)
    assert result.text == "services:\n  web:\r\n    image: app:1\r\n    build: .\n"


def test_insertion_after_a_block_merge_value() -> None:
    """An override goes after the whole `<<:` entry, even when it is a nested block mapping."""
    text = (
        "services:\n"
        "  web:\n"
        "    <<:\n"
        "      image: base:1\n"
        "      restart: always\n"
        "\n"
        "    ports: ['80:80']\n"
    )
    result = pin_images(text, {"web": "app:2"}, source=SOURCE)
    assert result.text == text.replace("always\n", "always\n    image: app:2\n")
    assert result.edits[0].how == "override-merge"
    assert result.edits[0].before == "base:1"


def test_insertion_into_a_multiline_flow_mapping() -> None:
    """A flow mapping spread over lines gets ` image: X,` right after its `{`."""
    text = "services:\n  web: {\n    build: .\n  }\n"
    result = pin_images(text, {"web": "app:1"}, source=SOURCE)
    assert result.text == "services:\n  web: { image: 'app:1',\n    build: .\n  }\n"


def test_empty_anchored_image_value_keeps_its_anchor() -> None:
    """`image: &a` with no value gets the new value written after the anchor."""
    result = pin_images("services:\n  web:\n    image: &a\n", {"web": "app:1"}, source=SOURCE)
    assert result.text == "services:\n  web:\n    image: &a app:1\n"


def test_unchanged_text_is_returned_as_is() -> None:
    """When nothing changes, the very input object comes back with no edits."""
    text = "services:\n  web:\n    image: app:1\n"
    result = pin_images(text, {"web": "app:1"}, source=SOURCE)
    assert result.text is text
    assert result.edits == ()
    assert pin_images(text, {}, source=SOURCE).text is text


def test_value_that_only_loads_as_a_string_under_yaml_1_2_is_requoted() -> None:
    """`image: on` is a string only in YAML 1.2, so pinning it to "on" quotes it for 1.1 too."""
    result = pin_images("services:\n  web:\n    image: on\n", {"web": "on"}, source=SOURCE)
    assert result.text == "services:\n  web:\n    image: 'on'\n"


def test_verification_refuses_a_wrong_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a rendering bug produced a value that loads differently, InputError, not bad text."""
    monkeypatch.setattr(edit, "render", lambda value, style, *, in_flow: ("yes", ""))
    with pytest.raises(InputError, match="internal error"):
        pin_images("services:\n  web:\n    image: app\n", {"web": "yes"}, source=SOURCE)


def test_verification_refuses_changes_that_leak_through_a_merge() -> None:
    """Editing an image another service merges in is refused, naming that service."""
    text = read_text(CORPUS / "43-merged-service-shared-error" / "input.yml")
    with pytest.raises(InputError) as raised:
        pin_images(text, {"backend": "ghcr.io/acme/shop-backend:2.4.0"}, source=SOURCE)
    assert raised.value.location is not None
    assert raised.value.location.key == "services.backend-debug.image"
    both = {"backend": "x:1", "backend-debug": "x:2"}
    result = pin_images(text, both, source=SOURCE)
    assert [e.how for e in result.edits] == ["replaced", "override-merge"]


def test_unknown_service_error_points_at_the_services_key() -> None:
    """An unknown service is an InputError at the `services` key, listing the known ones."""
    text = "name: shop\n\nservices:\n  web:\n    image: a\n  db:\n    image: b\n"
    with pytest.raises(InputError) as raised:
        pin_images(text, {"cache": "redis"}, source=SOURCE)
    assert raised.value.location is not None
    assert (raised.value.location.line, raised.value.location.column) == (3, 1)
    assert raised.value.message == (
        "service 'cache' is not defined in the compose file (services: web, db)"
    )


def test_duplicate_key_error_has_line_column_and_key_path() -> None:
    """A duplicate key is refused at its second occurrence, with its full key path."""
    text = "services:\n  web:\n    ports:\n      - x: 1\n        x: 2\n"
    with pytest.raises(InputError, match="duplicate key 'x'") as raised:
        read_services(text, source=SOURCE)
    location = raised.value.location
    assert location is not None
    assert (location.file, location.line, location.column) == (SOURCE, 5, 9)
    assert location.key == "services.web.ports[0].x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the compose file is empty"),
        ("# only a comment\n", "the compose file is empty"),
        ("- a\n", "top level of a compose file must be a mapping"),
        ("name: x\n", "no top-level 'services' mapping"),
        ("services: [web]\n", "'services' must be a mapping"),
        ("services:\n  web: nginx\n", "a service must be a mapping"),
        ("services:\n  web:\n    image: [a]\n", "image must be a string"),
        ("services:\n  web:\n    image: *nope\n", r"alias \*nope refers to an anchor"),
        ("services: {}\n---\nservices: {}\n", "more than one YAML document"),
        ("services:\n  <<: {web: {image: a}}\n", "merge directly under 'services'"),
    ],
)
def test_read_services_refuses_invalid_files(text: str, message: str) -> None:
    """Invalid compose structure is an InputError naming the problem and the file."""
    with pytest.raises(InputError, match=message) as raised:
        read_services(text, source=SOURCE)
    assert raised.value.location is not None
    assert raised.value.location.file == SOURCE


# --- read_services -------------------------------------------------------------------------------


def test_read_services_reports_images_in_file_order() -> None:
    """Services come in file order with own, inherited, alias-given and missing images."""
    text = (
        "\ufeffx-base: &base\n"
        "  image: base:1\n"
        "services:\n"
        "  zeta:\n"
        "    image: &img zeta:1\n"
        "  alpha:\n"
        "    <<: *base\n"
        "  mid:\n"
        "    image: *img\n"
        "  built:\n"
        "    build: .\n"
        "  nothing:\n"
        "  nulled:\n"
        "      image: ~\n"
    )
    assert list(read_services(text, source=SOURCE).values()) == [
        ServiceImage("zeta", "zeta:1", inherited=False, line=4, column=3),
        ServiceImage("alpha", "base:1", inherited=True, line=6, column=3),
        ServiceImage("mid", "zeta:1", inherited=False, line=8, column=3),
        ServiceImage("built", None, inherited=False, line=10, column=3),
        ServiceImage("nothing", None, inherited=False, line=12, column=3),
        ServiceImage("nulled", None, inherited=False, line=13, column=3),
    ]


def test_columns_on_a_bom_first_line_do_not_count_the_bom() -> None:
    """Positions are 1-based and the BOM takes no column on the first line."""
    with pytest.raises(InputError) as raised:
        read_services("\ufeffservices: {a: 1, a: 2}\n", source=SOURCE)
    assert raised.value.location is not None
    assert (raised.value.location.line, raised.value.location.column) == (1, 18)


def test_yaml_error_positions_ignore_a_bom() -> None:
    """A YAML syntax error on a BOM first line is reported at the same column as without it."""
    positions = []
    for text in ("\ufeffservices: c: d\n", "services: c: d\n"):
        with pytest.raises(InputError, match="invalid YAML") as raised:
            read_services(text, source=SOURCE)
        assert raised.value.location is not None
        positions.append((raised.value.location.line, raised.value.location.column))
    assert positions == [(1, 12), (1, 12)]


# Each corpus case pins images in input.yml and must give expected.yml byte for byte, or fail
# with an InputError containing error.txt; how.json, when present, lists each edit's `how`.


PARSERS = ("libyaml", "pure") if yaml_doc.LIBYAML_PARSER is not None else ("pure",)


def read_text_corpus(path: Path) -> str:
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
    text = read_text_corpus(case / "input.yml")
    pins = json.loads(read_text_corpus(case / "pins.json"))
    source = Path("/srv/shop") / case.name / "compose.yml"
    for parser in parsers(monkeypatch):
        if (case / "error.txt").is_file():
            wanted = read_text_corpus(case / "error.txt").rstrip("\n")
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
            how = json.loads(read_text_corpus(case / "how.json"))
            assert {e.service: e.how for e in result.edits} == how, parser
