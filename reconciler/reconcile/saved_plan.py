"""Saved plans, like Terraform's: `plan --out PLANFILE` writes one, `apply PLANFILE` applies it.

A plan file is JSON (`FORMAT`, version `VERSION`)::

    {"format": "reconciler-plan", "version": 2, "created_at": "2026-...Z",
     "state": {"path": "/abs/states/x.yaml", "given": "states/x.yaml", "name": "x"},
     "selection": {"only": [], "skip": []},
     "steps": ["compose-file", "images", "services", "migrations", "checks"],
     "plan": {"changes": [...], "ok": [...]},                 # the plan JSON, `Plan.to_dict()`
     "fingerprints": {"algorithm": "sha256",
                      "files": [{"kind": "state file", "path": "states/x.yaml",
                                 "digest": "sha256:..."}, ...],
                      "facts": {"services": {"api": "sha256:...", ...}, ...}},
     "digest": "sha256:..."}                                  # of all the rest (`body_digest`)

`fingerprints` are sha256 digests of what the plan was made from: the state file, the compose
file (the exact text the plan was computed from), the Dockerfiles and requirement files it
builds with, and each step's observed facts, per target (a service, an image, a migration set),
keeping only what a diff depends on (container ids, states, health, restart counts, image ids,
migration revisions...; not the health-check output nor the wall clock).

Secrets never reach the file, in clear or as a digest that could be brute-forced. Every text
and every string is masked *before* it is hashed, as `reconciler.secrets.redact` masks output (by
meaning in the file's format: a JSON or flow-style YAML value too; the values observed as
secret; URL passwords), but with each secret value replaced by its HMAC-SHA256 under this
machine's random key (`secret_store.machine_key`, 0600 in the user's state directory; made by
the first plan file that needs it), never by a plain hash. So a changed secret still changes a
digest, and the plan is stale, while nobody without the key can test a guess against one. A
target named after a secret (an image tag holding one) is listed under its masked name.
Digests that cover secret values with no key (compose's config hashes, the images' input
digests, which include build args) are left out, replaced by whether they match (a container's
config hash equals compose's; an image's input label equals its inputs). The plan itself is
redacted with `***`.

`load_plan` takes nothing on trust: the structure is checked strictly (every key known and of
its type), then against itself (the steps are those `selection` chooses, each observed; each
row of the plan is of one of them), then the `digest` of the rest of the file, so that a hand
edit is refused as such (`PlanFileError`, exit 3) rather than applied: `"steps": []` would
otherwise apply nothing and report success. The digest is no signature (anyone can compute
one); what an edit with a digest made again can still change is caught by `verify`.

`SavedPlan.verify` is called by `reconcile.apply(..., saved=...)` under the project's lock,
on the fresh observation: any difference raises `StalePlanError` (exit 1) naming what moved,
before anything is changed.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.errors import InputError, Location, PlanFileError, RecordError, StalePlanError
from reconciler.logs import get_logger
from reconciler.observe.facts import Snapshot
from reconciler.plans import Action, Plan, Step
from reconciler.runtime.files import SHARED_FILE_MODE, decode_utf8, read_bytes, write_atomic
from reconciler.secrets.redact import Secrets, TextFormat, text_format
from reconciler.secrets.store import keyed_hash, machine_key
from reconciler.state import State
from reconciler.steps import registry
from reconciler.steps.contract import masked_text

__all__ = [
    "FORMAT",
    "PLAN_FILE",
    "VERSION",
    "FileFingerprint",
    "Fingerprints",
    "SavedPlan",
    "body_digest",
    "compare",
    "fingerprints",
    "is_plan_file",
    "load_plan",
    "make",
    "plan_dict",
]

FORMAT = "reconciler-plan"
VERSION = 2  # 2: the file carries the `digest` of its own body
STATE_FILE = "state file"
COMPOSE_FILE = "compose file"
ENV_FILE = "env file"
PLAN_FILE = "plan file"
_MISSING = "missing"
_MARKER = re.compile(r'"format"\s*:\s*"' + FORMAT + '"')
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Byte-order marks an editor may have put first, and the text encoding each announces (the
# UTF-32 ones first: UTF-32-LE's starts with UTF-16-LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_log = get_logger(__name__)


@dataclass(frozen=True)
class FileFingerprint:
    """One file the plan depends on: its kind, its path as shown, and its masked digest."""

    kind: str
    path: str
    digest: str


@dataclass(frozen=True)
class Fingerprints:
    """Digests of everything a plan was made from: files, and each step's facts by target."""

    files: tuple[FileFingerprint, ...] = ()
    facts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The plan file's `fingerprints` object."""
        return {
            "algorithm": "sha256",
            "files": [{"kind": f.kind, "path": f.path, "digest": f.digest} for f in self.files],
            "facts": {step: dict(targets) for step, targets in self.facts.items()},
        }


@dataclass(frozen=True)
class SavedPlan:
    """A plan with what it was made from: the state it names, its steps, its fingerprints.

    `plan` is the plan JSON (`Plan.to_dict()`, secrets redacted); `source` is the file it was
    read from or written to, when there is one.
    """

    state_path: Path  # absolute
    state_given: str  # as the user gave it
    state_name: str
    steps: tuple[Step, ...]
    plan: Mapping[str, Any]
    fingerprints: Fingerprints
    created_at: str
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    source: Path | None = None

    @property
    def label(self) -> str:
        """How messages name this plan."""
        return f"plan file {self.source}" if self.source is not None else "saved plan"

    def to_dict(self) -> dict[str, Any]:
        """The plan file's JSON object (format marker and version first, its digest last)."""
        body = self._body()
        return {**body, "digest": body_digest(body)}

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created_at": self.created_at,
            "state": {
                "path": str(self.state_path),
                "given": self.state_given,
                "name": self.state_name,
            },
            "selection": {"only": list(self.only), "skip": list(self.skip)},
            "steps": [str(step) for step in self.steps],
            "plan": dict(self.plan),
            "fingerprints": self.fingerprints.to_dict(),
        }

    def write(self, path: str | Path, *, inputs: Iterable[Path] = ()) -> SavedPlan:
        """Write the plan file atomically (`files.write_atomic`, mode 0644), never onto one of
        `inputs` (the run's own input files); return it with `source`."""
        target = Path(path)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        write_atomic(
            target, text.encode("utf-8"), kind=PLAN_FILE, mode=SHARED_FILE_MODE, inputs=inputs
        )
        _log.info("plan saved", path=str(target), changes=len(self.plan.get("changes", ())))
        return replace(self, source=target)

    def check_target(self, state: State, steps: Collection[Step]) -> None:
        """The state and steps must be those the plan was made for (`PlanFileError`, exit 3)."""
        where = Location(self.source) if self.source is not None else None
        if state.source != self.state_path:
            raise PlanFileError(
                f"the plan was made for state {self.state_path}, not {state.source}", where
            )
        if tuple(steps) != self.steps:
            raise PlanFileError(
                f"the plan was made for steps {', '.join(self.steps) or 'none'}, "
                f"not {', '.join(steps) or 'none'}",
                where,
            )

    def check_state_file(self) -> None:
        """Refuse (`StalePlanError`) when the state file's bytes moved since the plan was made."""
        saved = {f.kind: f for f in self.fingerprints.files}.get(STATE_FILE)
        now = _state_file_digest(self.state_path)
        if saved is None or saved.digest != now:
            self._refuse([_file_problem(STATE_FILE, self.state_given, now)])

    def verify(
        self, state: State, snapshot: Snapshot, facts: Mapping[Step, object], plan: Plan
    ) -> None:
        """Refuse (`StalePlanError`) unless the fresh observation and plan match the saved ones.

        Called under the project's lock, on the observation the apply will act on.
        """
        now = fingerprints(state, snapshot, facts)
        problems = compare(self.fingerprints, now, state_label=self.state_given)
        if not problems:
            fresh = json.loads(json.dumps(plan_dict(plan, Secrets(snapshot.secrets))))
            if fresh != json.loads(json.dumps(dict(self.plan))):
                problems.append(_plan_difference(self.plan, fresh))
        if problems:
            self._refuse(problems)
        _log.info("saved plan is up to date", plan=str(self.source or "saved plan"))

    def _refuse(self, problems: list[str]) -> None:
        raise StalePlanError(
            f"{self.label} is stale, nothing was changed: "
            + "; ".join(problems)
            + ". Make a new plan (plan --out) and apply that.",
            tuple(problems),
        )


def make(
    state: State,
    plan: Plan,
    snapshot: Snapshot,
    facts: Mapping[Step, object],
    steps: Collection[Step],
    *,
    given: str | Path | None = None,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
) -> SavedPlan:
    """The saved form of `plan`, made from `snapshot` and `facts` (by step) for `state`."""
    return SavedPlan(
        state_path=state.source,
        state_given=str(given) if given is not None else state.shown(state.source),
        state_name=state.name,
        steps=registry.in_order(steps),
        plan=plan_dict(plan, Secrets(snapshot.secrets)),
        fingerprints=fingerprints(state, snapshot, facts),
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        only=tuple(only),
        skip=tuple(skip),
    )


def plan_dict(plan: Plan, secrets: Secrets) -> dict[str, Any]:
    """The plan JSON with every registered secret value masked, as a plan file holds it."""
    redacted: dict[str, Any] = _redact(plan.to_dict(), secrets)
    return redacted


def _redact(value: Any, secrets: Secrets) -> Any:
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, dict):
        return {key: _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    return value


# --- fingerprints ---------------------------------------------------------------------------


def fingerprints(state: State, snapshot: Snapshot, facts: Mapping[Step, object]) -> Fingerprints:
    """Digests of the files and of each step's facts (by target), secrets masked first (each
    by its keyed hash), targets under their masked names."""
    secrets = _keyed(snapshot.secrets)
    files = _file_fingerprints(state, snapshot, secrets)
    definitions = {definition.step: definition for definition in registry.steps_for(state)}
    # each step's own split of its facts by target (`StepDefinition.fingerprint`)
    targets = {
        step: definitions[step].fingerprint(state, item, secrets) for step, item in facts.items()
    }
    shown = Secrets(secrets.values)  # what the texts revealed too, masked as ***
    return Fingerprints(
        files=tuple(replace(file, path=shown.redact(file.path)) for file in files),
        facts={str(step): _named_digests(items, shown) for step, items in targets.items()},
    )


def _keyed(values: Iterable[str] = ()) -> Secrets:
    """A registry masking each secret value with its keyed hash (this machine's key, read or
    made when the first secret is met: a plan without secrets never touches it)."""
    key: list[bytes] = []

    def mask(value: str) -> str:
        if not key:
            key.append(_machine_key())
        return keyed_hash(key[0], "masked", value)

    return Secrets(values, mask=mask)


def _machine_key() -> bytes:
    try:
        return machine_key()
    except RecordError as error:  # already names the key file and why it cannot be kept
        raise PlanFileError(f"cannot make this machine's key for plan files: {error}") from None
    except OSError as error:
        where = Location(Path(error.filename)) if error.filename else None
        raise PlanFileError(
            f"cannot read or make this machine's key for plan files: {error.strerror or error}",
            where,
        ) from None


def _named_digests(targets: Mapping[str, object], shown: Secrets) -> dict[str, str]:
    """Each target's digest under the name the plan file shows: a name holding a secret (an
    image tag) masked, and numbered when two names mask alike."""
    named: dict[str, str] = {}
    for target, material in sorted(targets.items()):
        name = base = shown.redact(target)
        number = 1
        while name in named:
            number += 1
            name = f"{base} ({number})"
        named[name] = _digest(material)
    return named


def _digest(material: object) -> str:
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def _text_digest(raw: bytes, secrets: Secrets, fmt: TextFormat | None) -> str:
    return _digest(masked_text(raw, secrets, fmt))


def _read_digest(
    path: Path, secrets: Secrets, fmt: TextFormat | None = None, kind: str = "file"
) -> str:
    """The keyed digest of a file through the bounded reader (a FIFO or device is bad input);
    a file that is missing or unreadable has the digest of a missing one."""
    try:
        raw = read_bytes(path, kind)
    except OSError:
        return _MISSING
    return _text_digest(raw, secrets, fmt or text_format(path))


def _state_file_digest(path: Path) -> str:
    # Known before any observation: the values a state file holds itself (an environment pin,
    # a file's `content:`, in any YAML style) are found by meaning in its text alone.
    return _read_digest(path, _keyed(), "yaml", "state file")


def _file_fingerprints(
    state: State, snapshot: Snapshot, secrets: Secrets
) -> tuple[FileFingerprint, ...]:
    files = [
        FileFingerprint(STATE_FILE, state.shown(state.source), _state_file_digest(state.source)),
        FileFingerprint(
            COMPOSE_FILE,
            state.shown(snapshot.compose_file),
            _text_digest(snapshot.compose_text.encode("utf-8", "surrogateescape"), secrets, "yaml"),
        ),
    ]
    files += [
        FileFingerprint(
            ENV_FILE,
            state.shown(path),
            _MISSING if text is None else _text_digest(text.encode("utf-8"), secrets, "dotenv"),
        )
        for path, text in snapshot.env_texts.items()
    ]
    others: dict[tuple[str, Path], None] = {}
    for source in snapshot.sources.values():
        if source.build is not None:
            others[("Dockerfile", source.build.dockerfile)] = None
    for spec in state.wheelhouses.values():
        for requirements in spec.requirements:
            others[("requirements file", requirements)] = None
    files += [
        FileFingerprint(kind, state.shown(path), _read_digest(path, secrets))
        for kind, path in sorted(others, key=lambda item: (item[0], str(item[1])))
    ]
    return tuple(files)


# --- comparison -----------------------------------------------------------------------------


def compare(saved: Fingerprints, now: Fingerprints, *, state_label: str) -> list[str]:
    """What moved from `saved` to `now`, one message per component; empty when nothing did."""
    problems: list[str] = []
    moved_files: set[str] = set()  # a step whose facts are a file (compose-file) says it once
    old = {(f.kind, f.path): f.digest for f in saved.files}
    new = {(f.kind, f.path): f.digest for f in now.files}
    for key in [*old, *(key for key in new if key not in old)]:
        kind, path = key
        shown = state_label if kind == STATE_FILE else path
        if key not in new:
            problems.append(f"{kind} {shown} is no longer used")
        elif key not in old:
            problems.append(f"{kind} {shown} is new since the plan was made")
        elif old[key] != new[key]:
            problems.append(_file_problem(kind, shown, new[key]))
            moved_files.add(path)
    for step in [*saved.facts, *(step for step in now.facts if step not in saved.facts)]:
        before, after = saved.facts.get(step), now.facts.get(step)
        if before is None or after is None:
            problems.append(f"step {step} was not observed {'now' if after is None else 'then'}")
            continue
        moved = [
            target
            + (" (gone)" if target not in after else " (new)" if target not in before else "")
            for target in _ordered_union(before, after)
            if before.get(target) != after.get(target) and target not in moved_files
        ]
        if moved:
            problems.append(
                f"observed facts of step {step} changed since the plan was made: "
                + ", ".join(moved)
            )
    return problems


def _ordered_union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _file_problem(kind: str, shown: str, digest_now: str) -> str:
    if digest_now == _MISSING:
        return f"{kind} {shown} is gone or unreadable since the plan was made"
    return f"{kind} {shown} changed since the plan was made"


def _plan_difference(saved: Mapping[str, Any], fresh: Mapping[str, Any]) -> str:
    def rows(plan: Mapping[str, Any]) -> list[str]:
        return [
            f"{c.get('step')} {c.get('action')} {c.get('target')} ({c.get('reason')})"
            for c in plan.get("changes", [])
        ]

    old, new = rows(saved), rows(fresh)
    lines = [f"+ {row}" for row in new if row not in old]
    lines += [f"- {row}" for row in old if row not in new]
    detail = ", ".join(lines) if lines else "same changes, other details"
    return f"the plan made now differs from the saved one ({detail})"


# --- reading --------------------------------------------------------------------------------


def body_digest(data: Mapping[str, Any]) -> str:
    """The digest a plan file carries: sha256 of its canonical JSON (keys sorted, no spaces,
    ASCII) without the `digest` key itself."""
    body = {key: value for key, value in data.items() if key != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)  # on use


class _StateRef(_Strict):
    path: str
    given: str = Field(min_length=1)
    name: str = Field(min_length=1)


class _Selection(_Strict):
    only: list[str]
    skip: list[str]


class _Change(_Strict):
    step: str
    target: str
    action: str
    reason: str
    before: str | None = None
    after: str | None = None
    diff: str | None = None


class _InSync(_Strict):
    step: str
    target: str
    reason: str


class _PlanBody(_Strict):
    changes: list[_Change]
    ok: list[_InSync]


class _FileDigest(_Strict):
    kind: str = Field(min_length=1)
    path: str = Field(min_length=1)
    digest: str


class _Fingerprints(_Strict):
    algorithm: Literal["sha256"]
    files: list[_FileDigest]
    facts: dict[str, dict[str, str]]


class _PlanFile(_Strict):
    format: Literal["reconciler-plan"]
    version: Literal[2]
    created_at: str
    state: _StateRef
    selection: _Selection
    steps: list[str]
    plan: _PlanBody
    fingerprints: _Fingerprints
    digest: str


def is_plan_file(path: str | Path) -> bool:
    """True when `path` is a regular file holding a JSON object with the format marker.

    Whatever an editor may have put before the object is allowed for: a byte-order mark
    (UTF-8, UTF-16 or UTF-32) and whitespace. A damaged plan file still counts, so that
    `load_plan` can say what is wrong with it; anything unreadable is not one (loading it as a
    state file then says why).
    """
    try:
        raw = read_bytes(Path(path), PLAN_FILE)
    except (InputError, OSError):
        return False
    codec = next((codec for bom, codec in _BOMS if raw.startswith(bom)), "utf-8")
    text = raw.decode(codec, errors="replace").lstrip(" \t\r\n\ufeff")
    return text.startswith("{") and _MARKER.search(text) is not None


def load_plan(path: str | Path) -> SavedPlan:
    """Read a plan file; `PlanFileError` (exit 3) naming the file and what is wrong with it:
    unreadable, not JSON, not of this version, of another structure, inconsistent with itself,
    or edited since it was written (its digest)."""
    source = Path(path)
    data = _read_json(source)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlanFileError(
            f'not a plan file: no "format": "{FORMAT}" marker at its top level', Location(source)
        )
    if data.get("version") != VERSION:
        raise PlanFileError(
            f"plan file format version {data.get('version')!r} is not supported "
            f"(this reconciler reads version {VERSION}); make the plan again",
            Location(source),
        )
    try:
        model = _PlanFile.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        key = ".".join(str(part) for part in first["loc"]) or "<top level>"
        raise PlanFileError(
            f"invalid plan file: {first['msg']}", Location(source, key=key)
        ) from None
    _check_consistent(model, source)
    if model.digest != body_digest(data):
        raise PlanFileError(
            "the plan file was edited since it was made (its digest does not match its "
            "content); make the plan again with plan --out",
            Location(source, key="digest"),
        )
    return _from_model(model, data["plan"], source)


class _NotPlanJson(ValueError):
    """JSON a plan file never holds: a repeated key, NaN or Infinity."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise _NotPlanJson(f"the key {repeated!r} appears twice in one object")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise _NotPlanJson(f"{name} is not a number a plan file holds")


def _read_json(source: Path) -> Any:
    """The JSON value in the plan file at `source` (read through `files.read_bytes`)."""
    try:
        raw = read_bytes(source, PLAN_FILE)
    except FileNotFoundError:
        raise PlanFileError("plan file not found", Location(source)) from None
    except PlanFileError:
        raise
    except InputError as error:  # not a regular file, over the cap
        raise PlanFileError(error.message, error.location) from None
    text = _decode(raw, source)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise PlanFileError(
            f"not a valid plan file: invalid JSON: {error.msg}",
            Location(source, error.lineno, error.colno),
        ) from None
    except _NotPlanJson as error:
        raise PlanFileError(f"not a valid plan file: {error}", Location(source)) from None
    except RecursionError:
        raise PlanFileError("not a valid plan file: nested too deep", Location(source)) from None


def _decode(raw: bytes, source: Path) -> str:
    """The plan file's text: UTF-8, or the encoding its byte-order mark names (mark dropped)."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as error:
                raise PlanFileError(
                    f"not a plan file: byte {error.start} is not {codec.upper()} as its "
                    "byte-order mark says",
                    Location(source),
                ) from None
    try:
        return decode_utf8(raw, source)
    except InputError as error:
        raise PlanFileError(f"not a plan file: {error.message}", error.location) from None


def _check_consistent(model: _PlanFile, source: Path) -> None:
    """The plan file agrees with itself: known step names, the steps its selection chooses and
    no other, the facts of each, rows of those steps only, digests that look like digests."""

    def refuse(message: str, key: str) -> PlanFileError:
        return PlanFileError(f"invalid plan file: {message}", Location(source, key=key))

    names = registry.names()
    for key, listed in (
        ("steps", model.steps),
        ("selection.only", model.selection.only),
        ("selection.skip", model.selection.skip),
    ):
        unknown = [name for name in listed if name not in names]
        if unknown:
            raise refuse(f"unknown step {unknown[0]!r}", key)
    chosen = [str(step) for step in registry.select(model.selection.only, model.selection.skip)]
    if not chosen or model.steps != chosen:
        raise refuse(
            f"the steps [{', '.join(model.steps)}] are not those its selection chooses "
            f"([{', '.join(chosen)}])",
            "steps",
        )
    if sorted(model.fingerprints.facts) != sorted(chosen):
        raise refuse(
            f"fingerprints.facts covers [{', '.join(model.fingerprints.facts)}], not the "
            f"plan's steps [{', '.join(chosen)}]",
            "fingerprints.facts",
        )
    _check_rows(model, chosen, refuse)
    _check_digests(model, refuse)
    if not Path(model.state.path).is_absolute():
        raise refuse("the state path must be absolute", "state.path")
    try:
        datetime.fromisoformat(model.created_at)
    except ValueError:
        raise refuse(
            f"created_at {model.created_at!r} is not a date and time", "created_at"
        ) from None


def _check_rows(
    model: _PlanFile, steps: list[str], refuse: Callable[[str, str], PlanFileError]
) -> None:
    actions = {str(action) for action in Action}
    rows: list[tuple[str, _Change | _InSync]] = [
        *((f"plan.changes.{index}", row) for index, row in enumerate(model.plan.changes)),
        *((f"plan.ok.{index}", row) for index, row in enumerate(model.plan.ok)),
    ]
    for key, row in rows:
        if row.step not in steps:
            raise refuse(f"a row of step {row.step!r}, which the plan does not run", f"{key}.step")
        if isinstance(row, _Change) and row.action not in actions:
            raise refuse(f"unknown action {row.action!r}", f"{key}.action")


def _check_digests(model: _PlanFile, refuse: Callable[[str, str], PlanFileError]) -> None:
    kinds = [f.kind for f in model.fingerprints.files]
    for kind in (STATE_FILE, COMPOSE_FILE):
        if kinds.count(kind) != 1:
            raise refuse(f"fingerprints.files must name one {kind}", "fingerprints.files")
    for index, item in enumerate(model.fingerprints.files):
        if item.digest != _MISSING and not _DIGEST.fullmatch(item.digest):
            raise refuse("not a sha256 digest", f"fingerprints.files.{index}.digest")
    for step, targets in model.fingerprints.facts.items():
        for target, digest in targets.items():
            if not _DIGEST.fullmatch(digest):
                raise refuse("not a sha256 digest", f"fingerprints.facts.{step}.{target}")
    if not _DIGEST.fullmatch(model.digest):
        raise refuse("not a sha256 digest", "digest")


def _from_model(model: _PlanFile, plan: Mapping[str, Any], source: Path) -> SavedPlan:
    return SavedPlan(
        state_path=Path(model.state.path),
        state_given=model.state.given,
        state_name=model.state.name,
        steps=tuple(registry.step_named(name) for name in model.steps),
        plan=plan,
        fingerprints=Fingerprints(
            files=tuple(
                FileFingerprint(f.kind, f.path, f.digest) for f in model.fingerprints.files
            ),
            facts=model.fingerprints.facts,
        ),
        created_at=model.created_at,
        only=tuple(model.selection.only),
        skip=tuple(model.selection.skip),
        source=source,
    )
