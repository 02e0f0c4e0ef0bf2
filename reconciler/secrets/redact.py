"""Secrets never shown: a registry of secret values, and the masking every output goes through.

The masking rule. A value is masked, as `***`, when it is

- the value of a secret-looking key (PASSWORD, PASSWD, PASSPHRASE, SECRET, TOKEN, KEY, DSN,
  CREDENTIAL, AUTH), found by meaning: `mask_text` parses a text in its format (`text_format`:
  JSON with the json module's exact offsets, YAML through ruamel's event stream, flow style
  `db: {password: x}` included, dotenv through `reconciler.compose.dotenv`) and masks the span
  of each such scalar, of a `KEY=value` item under it (compose's list-form `environment`), and
  of the items of a list under it. Text that does not parse, ini-like `key = value` files, and
  the text inside a scalar (a `content: |` block, a JSON string) are scanned tolerantly as
  well: line-shaped `KEY: value` / `KEY=value`, `"key": "value"` pairs anywhere, `key: value`
  inside `{...}`, and `KEY=value` words (`--api-key=x`, `ENV TOKEN=x`, `?token=x`);
- a registered value, wherever it appears (`redact`): the values found as above, environment
  and build-arg values under secret-looking keys, the variables a state lists in
  `sensitive_env`, a state's `secrets:`. A multi-line value is registered line by line too
  (blank lines skipped), so each of its lines is masked wherever it appears on its own, such
  as in an error message quoting one line;
- a password inside a URL (`scheme://user:password@host`).

Short values are secrets too: a value of 1 to 3 characters is masked wherever it stands alone
(not inside a longer run of letters and digits), so a 2-character password is masked in any
message while the letters of ordinary words are left alone; longer values are masked wherever
they appear. Empty and blank values are ignored, and so are, for registration only, YAML's
plain `true`/`false`/`null` and a `${VAR}` reference (its value comes from `sensitive_env`).
Redaction is one pass, the longest value first, and never masks `***` itself again.

Values are registered when observed (`reconciler.observe.snapshot`): it records them in its snapshot
(`Snapshot.secrets`, passed on in `ComposeFileFacts.secrets`), so a diff masks them from its
inputs alone, and adds them to the run's `Secrets`. The CLI wraps stdout and stderr in
`RedactingStream` over its run's `Secrets`, and reports are redacted before they are written,
so a changed secret shows as changed (`***`) but never in clear. A `Secrets` made with another
`mask` puts that in place of `***`: plan files digest text masked with a keyed hash of each
value (`reconciler.reconcile.saved_plan`), so that a changed secret still changes a digest that
nobody without the machine's key can test a guess against.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from ruamel.yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from reconciler.compose.dotenv import parse_dotenv
from reconciler.compose.yaml_doc import event_streams
from reconciler.errors import InputError

__all__ = ["MASK", "RedactingStream", "Secrets", "TextFormat", "looks_secret", "text_format"]

MASK = "***"
# Secret-bearing YAML nests a few levels; past this a text is hostile and only scanned.
_MAX_DEPTH = 100


TextFormat = Literal["json", "yaml", "dotenv", "ini"]

_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|KEY|DSN|CREDENTIAL|AUTH", re.I)
_URL_CREDENTIALS = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]+:)(?P<password>[^@\s'\"]+)(?P<at>@)"
)
_ASSIGNMENT = re.compile(
    r"^\s*-?\s*(?:export\s+)?['\"]?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)['\"]?\s*[:=]\s*"
    r"(?P<q>['\"]?)(?P<value>.*?)(?P=q)['\"]?\s*(?:#.*)?$"
)
# The tolerant scan, beside the line-shaped assignment: `"key": "value"` (or a bare value)
# anywhere, the same with escaped quotes (JSON inside a YAML or JSON string), `key: value`
# after `{` or `,` (a flow map), and a `KEY=value` word.
_QUOTED_PAIR = re.compile(
    r"(?P<q>[\"'])(?P<name>[A-Za-z_][\w.-]*)(?P=q)\s*:\s*"
    r"(?:(?P<vq>[\"'])(?P<value>(?:\\.|(?!(?P=vq))[^\\\n])*)(?P=vq)"
    r"|(?P<bare>[^\s\"',}\]{\[][^,}\]\n]*?)(?=\s*(?:[,}\]]|$)))",
    re.M,
)
_ESCAPED_PAIR = re.compile(
    r"\\(?P<q>[\"'])(?P<name>[A-Za-z_][\w.-]*)\\(?P=q)\s*:\s*\\(?P=q)(?P<value>[^\\\n]*?)\\(?P=q)"
)
_FLOW_PAIR = re.compile(
    r"[{,]\s*(?P<name>[A-Za-z_][\w.-]*)\s*:\s+"
    r"(?:(?P<vq>[\"'])(?P<value>[^\n]*?)(?P=vq)|(?P<bare>[^\s\"',{}\[\]][^,{}\n]*?))\s*(?=[,}])"
)
_WORD = re.compile(
    r"(?<![\w$.])(?P<name>[A-Za-z_][\w-]*)=(?:(?P<vq>[\"'])(?P<value>[^\n]*?)(?P=vq)"
    r"|(?P<bare>[^\s\"'&;,)\]}]+))"
)
_ITEM = re.compile(r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)\s*=(?P<value>.*)", re.S)
# Not a value of its own: a YAML block indicator, the start of a flow collection (their
# content is scanned in its own right), or a YAML alias.
_INDICATOR = re.compile(r"[|>][-+0-9]*|[\[{].*|\*[\w.-]+", re.S)
_PROPERTIES = re.compile(r"(?:[&!]\S*[ \t]+)+")  # a YAML node's anchor and tag
# Never registered (they would mask every `true` of every output); their span is still masked.
_LITERALS = frozenset({"true", "false", "null", "~", "yes", "no", "on", "off"})
_JSON_SKIP = frozenset(" \t\r\n,:")  # between JSON nodes: `:` and `,` only separate them
_EOL = re.compile(r"\r\n|\r|\n")
_SHORT = 4  # values shorter than this are masked only where they stand alone
# compose's service-level `secrets:` lists the names of secrets, not their values.
_NAME_LISTS = frozenset({"secrets"})
_SUFFIX_FORMATS: dict[str, TextFormat] = {
    ".json": "json",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".env": "dotenv",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "ini",
    ".properties": "ini",
    ".toml": "ini",
}


def looks_secret(name: str) -> bool:
    """True for a key such as DB_PASSWORD, API_TOKEN, SECRET_KEY or SENTRY_DSN."""
    return bool(_SECRET_NAME.search(name))


def text_format(path: str | Path) -> TextFormat | None:
    """A file's format by its name (json, yaml, dotenv or ini-like), or None when unknown."""
    name = Path(path).name.lower()
    if name == ".env" or name.startswith(".env."):
        return "dotenv"
    return _SUFFIX_FORMATS.get(Path(name).suffix)


def _fixed_mask(_: str) -> str:
    return MASK


class Secrets:
    """The secret values one run has seen, and the masking of its output.

    Each run (each CLI invocation, each library call given one) owns its own: nothing leaks
    between runs in one process, and a plan's text never depends on what ran before. `mask`
    gives what stands for a secret value (`***` by default).
    """

    def __init__(
        self, values: Iterable[str] = (), *, mask: Callable[[str], str] | None = None
    ) -> None:
        self._values: set[str] = set()
        self._mask = mask or _fixed_mask
        # Output is redacted from several threads (logs, the live view) while observation
        # registers values: the compiled pattern must never miss a registered value.
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self.update(values)

    @property
    def values(self) -> frozenset[str]:
        """The registered values (a multi-line value's lines included)."""
        with self._lock:
            return frozenset(self._values)

    def register(self, value: str) -> None:
        """Never show `value`, nor any line of it on its own (empty and blank ones ignored)."""
        if not value.strip():
            return
        pieces = {value}
        lines = value.splitlines()
        if lines != [value]:
            pieces.update(line.strip() for line in lines if line.strip())
        with self._lock:
            if not pieces <= self._values:
                self._values |= pieces
                self._pattern = None

    def update(self, values: Iterable[str]) -> None:
        """Register every value of `values`."""
        for value in values:
            self.register(value)

    def register_mapping(self, mapping: Mapping[str, object]) -> None:
        """Register values under secret-looking keys (not flags such as `true`), and passwords
        inside any URL value."""
        for key, value in mapping.items():
            if not isinstance(value, str):
                continue
            if looks_secret(str(key)) and _registrable(value, plain=True):
                self.register(value)
            for match in _URL_CREDENTIALS.finditer(value):
                self.register(match.group("password"))

    def register_environment(self, names: Iterable[str]) -> None:
        """Register the current values of these environment variables."""
        for name in names:
            value = os.environ.get(name)
            if value:
                self.register(value)

    def register_text(self, text: str, fmt: TextFormat | None = None) -> None:
        """Register the secret values a text holds, found by meaning (see `mask_text`)."""
        self.update(_scan(text, fmt).values)

    def register_compose_text(self, text: str) -> None:
        """Register the secret values a compose file holds (`register_text` as YAML)."""
        self.register_text(text, "yaml")

    def mask_value(self, value: str) -> str:
        """What stands for the secret `value` in masked output (`***` by default)."""
        return self._mask(value)

    def redact(self, text: str) -> str:
        """`text` with every registered secret and every URL password masked."""
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(self._replace, text)
        return _URL_CREDENTIALS.sub(self._replace_password, text)

    def mask_text(self, text: str, fmt: TextFormat | None = None) -> str:
        """`text` with secret values masked by meaning, then every registered value redacted.

        `fmt` says how to read it (`text_format` of its file name; None: JSON or YAML when it
        parses as either, else the tolerant scan). The values found are registered, so they
        are masked wherever else they appear. Lines are kept: a multi-line value is masked
        line by line, so the result has the same lines as `text`.
        """
        return "".join(self.mask_lines(text, fmt))

    def mask_lines(self, text: str, fmt: TextFormat | None = None) -> list[str]:
        """`text.splitlines(keepends=True)`, each line masked as `mask_text` masks it."""
        found = _scan(text, fmt)
        self.update(found.values)
        spans = found.spans
        masked: list[str] = []
        start = first = 0
        for line in text.splitlines(keepends=True):
            end = start + len(line.splitlines()[0])
            while first < len(spans) and spans[first][1] <= start:
                first += 1
            parts: list[str] = []
            cursor = start
            index = first
            while index < len(spans) and spans[index][0] < end:
                low, high = max(spans[index][0], start), min(spans[index][1], end)
                parts += [self.redact(text[cursor:low]), self._masked_piece(text[low:high])]
                cursor = high
                index += 1
            parts += [self.redact(text[cursor:end]), line[end - start :]]
            masked.append("".join(parts))
            start += len(line)
        return masked

    def mask_line(self, line: str) -> str:
        """A line with the value of a line-shaped secret-looking key masked, then redacted."""
        match = _ASSIGNMENT.match(line.rstrip("\r\n"))
        if match and looks_secret(match.group("name")) and match.group("value"):
            start, end = match.span("value")
            return line[:start] + self.mask_value(match.group("value")) + line[end:]
        return self.redact(line)

    def _masked_piece(self, piece: str) -> str:
        """One line's part of a secret span, its surrounding blanks kept."""
        core = piece.strip()
        if not core:
            return piece
        lead = len(piece) - len(piece.lstrip())
        return piece[:lead] + self.mask_value(core) + piece[lead + len(core) :]

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._values:
                self._pattern = _alternatives(self._values)
            return self._pattern

    def _replace(self, match: re.Match[str]) -> str:
        value = match.group()
        return value if value == MASK else self.mask_value(value)

    def _replace_password(self, match: re.Match[str]) -> str:
        password = match.group("password")
        masked = password if password == MASK else self.mask_value(password)
        return match.group("head") + masked + match.group("at")


def _alternatives(values: Iterable[str]) -> re.Pattern[str]:
    """One pattern for every single-line value and `***`, longest first, so one pass masks
    each occurrence once and a mask already in the text is matched as itself."""
    single = {value for value in values if value.splitlines() == [value]}
    ordered = sorted(single | {MASK}, key=lambda value: (-len(value), value))
    return re.compile(
        "|".join(
            re.escape(value)
            if len(value) >= _SHORT or value == MASK
            else rf"(?<![^\W_]){re.escape(value)}(?![^\W_])"
            for value in ordered
        )
    )


class RedactingStream:
    """A text stream that redacts secrets from everything written through it, and never raises.

    Output must never stop a run: when the stream cannot be written (its reader went away, as
    with `apply 2>&1 | head` or a log collector that died: EPIPE; a full disk under a redirected
    log; a terminal hung up), the first failure is kept in `lost` (and its time in `lost_at`),
    and everything written after it is dropped without trying again. Whoever owns the stream
    (the CLI) says so once, where it still can: a write here may hold a logger's lock, so
    nothing is logged from inside it.
    """

    def __init__(self, inner: TextIO, secrets: Secrets) -> None:
        self._inner = inner
        self._secrets = secrets
        self._lost_lock = threading.Lock()
        self.lost: OSError | None = None
        self.lost_at: float | None = None  # time.time() of the first failure

    def write(self, text: str) -> int:
        if self.lost is None:
            redacted = self._secrets.redact(text)
            try:
                self._inner.write(redacted)
            except OSError as error:
                self._lose(error)
        return len(text)  # all of it taken: a caller must never retry a dropped write

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._inner.flush()
            except OSError as error:
                self._lose(error)

    def _lose(self, error: OSError) -> None:
        """Keep the first failure; later ones (other threads' writes) change nothing."""
        with self._lost_lock:
            if self.lost is None:
                self.lost, self.lost_at = error, time.time()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:
        return self._inner.encoding


# --- finding secret values in a text ---------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """Where a text holds secret values (sorted, disjoint spans) and the values to register."""

    spans: tuple[tuple[int, int], ...] = ()
    values: tuple[str, ...] = ()


@dataclass
class _Finding:
    """A `_Found` being built: a span overlapping one found earlier is left out, so a span
    found by parsing wins over the tolerant scan's guess at the same place."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    inner: list[str] = field(default_factory=list)  # scalar texts to scan in their own right

    def add(self, start: int, end: int, value: str | None, *, plain: bool = False) -> bool:
        """Record the span and register `value`; False when the span overlaps a known one."""
        if start >= end:
            return False
        at = bisect.bisect_left(self.spans, (start, end))
        if (at > 0 and self.spans[at - 1][1] > start) or (
            at < len(self.spans) and self.spans[at][0] < end
        ):
            return False
        self.spans.insert(at, (start, end))
        if value is not None:
            self.register(value, plain=plain)
        return True

    def register(self, value: str, *, plain: bool = False) -> None:
        """Keep `value` to register, unless it is no secret of its own (see `_registrable`)."""
        if _registrable(value, plain=plain):
            self.values.append(value)

    def done(self) -> _Found:
        return _Found(tuple(self.spans), tuple(self.values))


def _registrable(value: str, *, plain: bool) -> bool:
    """A value worth masking wherever it appears: not blank, not `***`, not a `${VAR}`
    reference, and (for a plain YAML scalar or a guessed value) not a boolean or null."""
    if not value.strip() or value == MASK or "${" in value:
        return False
    return not (plain and value.strip().lower() in _LITERALS)


@functools.lru_cache(maxsize=32)
def _scan(text: str, fmt: TextFormat | None, inner: bool = True) -> _Found:
    """The secret values `text` holds: by parsing it in its format, then tolerantly.

    A diff masks the same texts again and again (the compose file once per change): the
    finding of a text is a pure function of it, kept for the last few texts.
    """
    finding = _parsed(text, fmt) or _Finding()
    _tolerant(text, finding)
    if inner:
        for scalar in finding.inner:
            finding.values += _scan(scalar, None, inner=False).values
    return finding.done()


def _parsed(text: str, fmt: TextFormat | None) -> _Finding | None:
    """The secret values found by parsing `text`, or None when it does not parse as `fmt`."""
    if fmt == "dotenv":
        return _dotenv(text)
    if fmt == "ini":
        return None
    found = _json(text) if fmt in (None, "json") else None
    if found is None:
        # JSON that the json module refuses may still be YAML; an unknown text counts as YAML
        # only when it is a mapping or a list (plain prose parses as one long YAML string).
        found = _yaml(text, collection=fmt is None)
    return found


def _tolerant(text: str, finding: _Finding) -> None:
    """Add what the line-shaped and tolerant patterns find, where parsing found nothing."""
    for pattern in (_QUOTED_PAIR, _ESCAPED_PAIR, _FLOW_PAIR, _WORD):
        for match in pattern.finditer(text):
            if looks_secret(match.group("name")):
                group = "value" if match.group("value") is not None else "bare"
                _guessed(finding, match.start(group), match.group(group))
    offset = 0
    for line in text.splitlines(keepends=True):
        assignment = _ASSIGNMENT.match(line.splitlines()[0])
        if assignment and looks_secret(assignment.group("name")):
            _guessed(finding, offset + assignment.start("value"), assignment.group("value"))
        offset += len(line)
    _register_url_passwords(finding, text)


def _guessed(finding: _Finding, start: int, value: str) -> None:
    """A value the tolerant scan found at `start`: masked, and registered."""
    value = value.rstrip()
    if value and not _INDICATOR.fullmatch(value):
        finding.add(start, start + len(value), value.strip("'\""), plain=True)


def _register_url_passwords(finding: _Finding, value: str) -> None:
    for match in _URL_CREDENTIALS.finditer(value):
        finding.register(match.group("password"))


def _dotenv(text: str) -> _Finding | None:
    try:
        parsed = parse_dotenv(text, source=Path("<masked text>"))
    except InputError:
        return None
    finding = _Finding()
    for entry in parsed.entries:
        literal = entry.literal
        if literal is not None:
            _register_url_passwords(finding, literal)
        if not looks_secret(entry.key):
            continue
        start, end = entry.value_start, entry.value_end
        if entry.quote:
            start, end = start + 1, end - 1
        finding.add(start, end, literal, plain=not entry.quote)
    return finding


@dataclass
class _Collection:
    """An open mapping or sequence while walking a document's nodes in order."""

    mapping: bool
    secret: bool  # a sequence's items are secret values (it sits under a secret-looking key)
    key: str | None = None
    at_key: bool = True  # a mapping: its next node is a key


class _Walk:
    """Which scalars of a JSON or YAML document hold secret values, as its nodes arrive."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.finding = _Finding()
        self.open: list[_Collection] = []
        self.anchors: dict[str, tuple[int, int, str, str | None]] = {}
        self.collections = 0

    def start(self, *, mapping: bool) -> None:
        top = self.open[-1] if self.open else None
        named = top is not None and top.mapping and (top.key or "").lower() in _NAME_LISTS
        self.open.append(_Collection(mapping, self._secret_here() and not named))
        self.collections += 1

    def end(self) -> None:
        self.open.pop()
        self._done()

    def scalar(
        self, start: int, end: int, value: str, style: str | None, anchor: str | None = None
    ) -> None:
        if anchor is not None:
            self.anchors[anchor] = (start, end, value, style)
        top = self.open[-1] if self.open else None
        if top is not None and top.mapping and top.at_key:
            top.key, top.at_key = value, False
            return
        if self._secret_here():
            self._secret(start, end, value, style)
        else:
            self._other(start, end, value, style)
        self._done()

    def alias(self, anchor: str) -> None:
        """`*name` under a secret-looking key: the anchored scalar is a secret, where it is."""
        target = self.anchors.get(anchor)
        top = self.open[-1] if self.open else None
        if target is not None and self._secret_here():
            self._secret(*target)
        elif top is not None and top.mapping and top.at_key:
            top.key, top.at_key = None, False
            return
        self._done()

    def _secret_here(self) -> bool:
        if not self.open:
            return False
        top = self.open[-1]
        if top.mapping:
            return not top.at_key and top.key is not None and looks_secret(top.key)
        return top.secret

    def _done(self) -> None:
        """A node ended: in a mapping, a key's node is followed by its value's, and back."""
        if self.open and self.open[-1].mapping:
            top = self.open[-1]
            if top.at_key:
                top.key, top.at_key = None, False
            else:
                top.at_key = True

    def _secret(self, start: int, end: int, value: str, style: str | None) -> None:
        start, end = self._inside(start, end, style)
        self.finding.add(start, end, value, plain=not style)

    def _other(self, start: int, end: int, value: str, style: str | None) -> None:
        """A scalar under no secret key: a `KEY=value` item, URL passwords, text inside."""
        _register_url_passwords(self.finding, value)
        item = _ITEM.fullmatch(value)
        if item and looks_secret(item.group("name")):
            inner_start, inner_end = self._inside(start, end, style)
            if self.text[inner_start:inner_end] == value:  # as written: the value's own span
                self.finding.add(
                    inner_start + item.start("value"), inner_end, item.group("value").strip()
                )
            else:
                self.finding.add(inner_start, inner_end, item.group("value").strip())
        if "\n" in value or "{" in value:
            self.finding.inner.append(value)

    def _inside(self, start: int, end: int, style: str | None) -> tuple[int, int]:
        """A scalar's value as written: after its anchor and tag, inside its quotes, or below
        a block's indicator."""
        properties = _PROPERTIES.match(self.text, start, end)
        if properties is not None:
            start = properties.end()
        if style in ("'", '"'):
            return start + 1, end - 1
        if style in ("|", ">"):
            line_end = _EOL.search(self.text, start, end)
            return (line_end.end() if line_end else end), end
        return start, end


def _json(text: str) -> _Finding | None:
    """The walk of a JSON text, with the json module's offsets; None when it is not JSON."""
    begin = 1 if text.startswith("\ufeff") else 0
    try:
        json.loads(text[begin:])
    except (ValueError, RecursionError):
        return None
    decoder = json.JSONDecoder()
    walk = _Walk(text)
    position = begin
    while True:
        while position < len(text) and text[position] in _JSON_SKIP:
            position += 1
        if position >= len(text):
            return walk.finding
        char = text[position]
        if char in "{[":
            walk.start(mapping=char == "{")
            position += 1
        elif char in "}]":
            walk.end()
            position += 1
        else:
            value, end = decoder.raw_decode(text, position)
            style = '"' if char == '"' else None
            walk.scalar(position, end, value if style else text[position:end], style)
            position = end


def _yaml(text: str, *, collection: bool) -> _Finding | None:
    """The walk of a YAML text's event stream; None when it does not parse, nests deeper than
    `_MAX_DEPTH` (hostile input, left to the tolerant scan) or, with `collection`, holds no
    mapping or sequence. libyaml first (about 20x faster on a large compose file), then the
    pure parser, which reads what libyaml's YAML 1.1 refuses (`[8080:8080]`)."""
    for events, offset in event_streams(text):
        walk = _Walk(text)
        depth = 0
        try:
            for event in events:
                if isinstance(event, ScalarEvent):
                    walk.scalar(
                        event.start_mark.index + offset,
                        event.end_mark.index + offset,
                        event.value,
                        event.style or None,
                        event.anchor,
                    )
                elif isinstance(event, (MappingStartEvent, SequenceStartEvent)):
                    depth += 1
                    if depth > _MAX_DEPTH:
                        return None
                    walk.start(mapping=isinstance(event, MappingStartEvent))
                elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
                    depth -= 1
                    walk.end()
                elif isinstance(event, AliasEvent):
                    walk.alias(event.anchor)
        except Exception:  # noqa: S112 - any parse failure: the next parser, or the tolerant scan
            continue
        if collection and not walk.collections:
            return None
        return walk.finding
    return None
