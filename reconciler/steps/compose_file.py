"""compose-file step: pin each service's `image:` and `environment` entries with minimal,
verified splices, keep the dotenv files the state names (`files:`, and the env file defining an
interpolated image's tag), and bring the state's other `files:` to what it declares.

`observe` takes the texts from the snapshot (`ComposeFileFacts`); `diff` is pure (texts in,
changes out) using `reconciler.compose.edit`, `compose.yaml_set`, `reconciler.observe.env_files` and
`managed_files`; `apply` writes the new bytes atomically (temp file in the same directory,
fsync, rename, mode kept or set as declared), one file at a time, and when one fails says
which changes the files before it made (`StepIncomplete`); `roll_back` puts back exactly the
files a run wrote.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.compose.edit import pin_images
from reconciler.compose.yaml_set import ValueEdit, pin_environment, set_values
from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import ApplyError, describe
from reconciler.logs import get_logger
from reconciler.observe.env_files import FileEdits, plan_file_edits
from reconciler.observe.facts import Snapshot
from reconciler.observe.managed_files import (
    DesiredFile,
    ObservedFile,
    desired_file,
    hidden_because,
    observe_file,
    read_managed,
)
from reconciler.observe.snapshot import read_compose_text, read_env_texts
from reconciler.plans import Action, Change, InSync, Plan, Step
from reconciler.runtime.files import read_optional_bytes, write_atomic
from reconciler.secrets.redact import MASK, Secrets, TextFormat, looks_secret, text_format
from reconciler.state import State
from reconciler.state.model import FileSpec
from reconciler.state.paths import YamlPath, format_path, parse_path
from reconciler.steps.contract import StepDefinition, StepIncomplete, masked_text, plain

__all__ = [
    "STEP",
    "ComposeFileFacts",
    "apply",
    "diff",
    "file_edits",
    "fingerprint",
    "observe",
    "pinned_text",
    "restore_file",
    "roll_back",
    "unified_diff",
]

_log = get_logger(__name__)


@dataclass(frozen=True)
class ComposeFileFacts:
    """The compose-file step's facts: the exact texts of the compose file and of the dotenv files
    it edits (env files, dotenv `files:`; None when missing), the process variables the compose
    and env files refer to, the secrets to mask in diffs, and the other files the state manages
    beside it, by absolute path."""

    compose_file: Path
    compose_text: str
    secrets: frozenset[str] = frozenset()
    env_texts: dict[Path, str | None] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    files: dict[str, ObservedFile] = field(default_factory=dict)


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> ComposeFileFacts:
    """The compose file's and the dotenv files' texts as observed, the process variables the
    files refer to, the other managed files, and the secret values diffs must mask."""
    return ComposeFileFacts(
        snapshot.compose_file,
        snapshot.compose_text,
        snapshot.secrets,
        env_texts=dict(snapshot.env_texts),
        environment=dict(snapshot.environment),
        files=dict(snapshot.files),
    )


def file_edits(state: State, facts: ComposeFileFacts) -> FileEdits:
    """The dotenv edits of `files:` and of interpolated pins (pure)."""
    return plan_file_edits(state, facts.compose_text, facts.env_texts, facts.environment)


def _literal_pins(state: State, edits: FileEdits) -> dict[str, str]:
    """Pins made in the compose file itself (interpolated ones go through env files)."""
    return {name: ref for name, ref in state.pins().items() if name not in edits.through_env}


def pinned_text(state: State, facts: ComposeFileFacts) -> str:
    """The compose text with every pin applied (equal to the observed text when in sync)."""
    pins = _literal_pins(state, file_edits(state, facts))
    text = pin_images(facts.compose_text, pins, source=facts.compose_file).text
    return pin_environment(text, state.environment_pins(), source=facts.compose_file).text


def diff(state: State, facts: ComposeFileFacts, earlier: Plan) -> Plan:
    """One change per service whose `image:` differs from its pin, with that edit's diff, and
    one per dotenv key to set or remove, with that file's diff."""
    label = state.shown(facts.compose_file)
    edits = file_edits(state, facts)
    pins = _literal_pins(state, edits)
    result = pin_images(facts.compose_text, pins, source=facts.compose_file)
    changes: list[Change] = []
    masks = _masks(facts)
    for edit in result.edits:
        alone = pin_images(
            facts.compose_text, {edit.service: edit.after}, source=facts.compose_file
        )
        changes.append(
            Change(
                step=Step.COMPOSE_FILE,
                target=f"{label}:services.{edit.service}.image",
                action=Action.INSERT if edit.before is None else Action.EDIT,
                reason=_reason(edit.before, edit.after, edit.how)
                + (f"; {edit.note}" if edit.note else ""),
                before=edit.before,
                after=edit.after,
                diff=unified_diff(facts.compose_text, alone.text, label, masks, "yaml"),
                key=edit.service,
            )
        )
    edited = {edit.service for edit in result.edits}
    ok = [
        InSync(Step.COMPOSE_FILE, f"{label}:services.{name}.image", f"already {image}")
        for name, image in pins.items()
        if name not in edited
    ]
    ok += [
        InSync(Step.COMPOSE_FILE, f"{label}:services.{name}.image", how)
        for name, how in edits.through_env.items()
        if how.startswith("already")
    ]
    for change in edits.changes:
        if looks_secret(change.key):  # masked even when observation did not register them
            masks.update(v.strip("'\"") for v in (change.before, change.after) if v is not None)
    for change in edits.changes:
        shown = state.shown(change.file)
        changes.append(
            Change(
                step=Step.COMPOSE_FILE,
                target=f"{shown}:{change.key}",
                action=Action.REMOVE
                if change.after is None
                else Action.INSERT
                if change.before is None
                else Action.EDIT,
                reason=change.reason,
                before=_masked_value(change.key, change.before),
                after=_masked_value(change.key, change.after),
                diff=unified_diff(
                    facts.env_texts.get(change.file) or "", change.text, shown, masks, "dotenv"
                ),
                key=f"{change.file}:{change.key}",
                writes=str(change.file),
            )
        )
    ok += [
        InSync(Step.COMPOSE_FILE, f"{state.shown(path)}:{key}", reason)
        for path, key, reason in edits.in_sync
    ]
    plan = Plan(tuple(changes), tuple(ok)) + _environment_diff(state, facts, label, masks)
    for name, spec in state.files.items():
        if name in facts.files:  # dotenv files are planned with the env files above
            plan += _file_diff(state, name, spec, facts.files[name], masks)
    return plan


def _masks(facts: ComposeFileFacts) -> Secrets:
    """The secrets a diff masks: those observed, and every secret value its texts hold (found
    by meaning), so that each diff masks what any of them revealed, whatever its order."""
    masks = Secrets(facts.secrets)
    masks.register_text(facts.compose_text, "yaml")
    for text in facts.env_texts.values():
        if text is not None:
            masks.register_text(text, "dotenv")
    for observed in facts.files.values():
        for data in (observed.data, observed.source_data):
            if data is not None:
                masks.register_text(data.decode("utf-8", "replace"), text_format(observed.path))
    return masks


def _masked_value(key: str, value: str | None) -> str | None:
    return MASK if value is not None and looks_secret(key) else value


def _environment_diff(state: State, facts: ComposeFileFacts, label: str, masks: Secrets) -> Plan:
    """One change per environment entry that differs from its pin, with that edit's diff."""
    pins = state.environment_pins()
    result = pin_environment(facts.compose_text, pins, source=facts.compose_file)
    changes = []
    for edit in result.edits:
        _, service, _, name = edit.path
        alone = pin_environment(
            facts.compose_text, {service: {name: edit.after}}, source=facts.compose_file
        )
        change = _value_change(
            f"{label}:{format_path(edit.path)}",
            edit,
            unified_diff(facts.compose_text, alone.text, label, masks, "yaml"),
            f"environment {name}",
        )
        # keyed by its service, like an image pin: the services step recreates it
        changes.append(dataclasses.replace(change, key=service))
    ok = tuple(
        InSync(
            Step.COMPOSE_FILE,
            f"{label}:{format_path(path)}",
            "already set (secret, not shown)"
            if looks_secret(path[-1])
            else f"already {pins[path[1]][path[-1]]}",
        )
        for path in result.same
    )
    return Plan(tuple(changes), ok)


def _value_change(target: str, edit: ValueEdit, diff: str, what: str) -> Change:
    """A change setting one value; a secret-looking key's values show as ***."""
    secret = looks_secret(edit.path[-1])
    before = None if edit.before is None else (MASK if secret else edit.before)
    after = MASK if secret else edit.after
    if edit.before is None:
        reason = f"{what} is not set; state sets {after}"
    else:
        reason = f"{what} is {before}; state sets {after}"
    if edit.note:
        reason += f" ({edit.note})"
    return Change(
        step=Step.COMPOSE_FILE,
        target=target,
        action=Action.EDIT if edit.how == "replaced" else Action.INSERT,
        reason=reason,
        before=before,
        after=after,
        diff=diff,
    )


def _file_diff(
    state: State, name: str, spec: FileSpec, observed: ObservedFile, masks: Secrets
) -> Plan:
    """A managed file's changes: each YAML value, or its whole content; then its mode."""
    path = Path(name)
    label = state.shown(path)
    desired = desired_file(spec, observed)
    changes: list[Change] = []
    ok: list[InSync] = []
    if desired.edits is not None:
        text = (observed.data or b"").decode("utf-8")
        for edit in desired.edits.edits:
            alone = set_values(text, {edit.path: _value_of(spec, edit.path)}, source=path)
            diff = unified_diff(text, alone.text, label, masks, "yaml")
            key = format_path(edit.path)
            changes.append(_value_change(f"{label}:{key}", edit, diff, key))
        ok += [
            InSync(
                Step.COMPOSE_FILE,
                f"{label}:{format_path(key)}",
                "already set (secret, not shown)" if looks_secret(key[-1]) else "already set",
            )
            for key in desired.edits.same
        ]
    else:
        content = _content_change(spec, label, observed, desired, masks)
        if content is None:
            ok.append(InSync(Step.COMPOSE_FILE, label, f"content as declared ({_size(desired)})"))
        else:
            changes.append(content)
    if desired.mode is not None and observed.mode is not None:
        if observed.mode == desired.mode:
            ok.append(InSync(Step.COMPOSE_FILE, f"{label}:mode", f"already {spec.mode}"))
        else:
            changes.append(
                Change(
                    step=Step.COMPOSE_FILE,
                    target=f"{label}:mode",
                    action=Action.EDIT,
                    reason=f"mode is {observed.mode:04o}; state sets {desired.mode:04o}",
                    before=f"{observed.mode:04o}",
                    after=f"{desired.mode:04o}",
                )
            )
    # keyed apart from service names, so that no file change reads as a service's edit
    keyed = tuple(
        dataclasses.replace(change, key=f"file {change.target}", writes=str(path))
        for change in changes
    )
    return Plan(keyed, tuple(ok))


def _value_of(spec: FileSpec, path: YamlPath) -> str | int | float | bool:
    return {parse_path(dotted): value for dotted, value in (spec.values or {}).items()}[path]


def _size(desired: DesiredFile) -> str:
    return f"{len(desired.data)} bytes"


def _content_change(
    spec: FileSpec, label: str, observed: ObservedFile, desired: DesiredFile, masks: Secrets
) -> Change | None:
    """The change writing a whole file's declared content, or None when it holds it."""
    if observed.data == desired.data:
        return None
    hidden = hidden_because(observed.path, spec, observed.data, desired.data)
    diff = None
    try:
        before_text = (observed.data or b"").decode("utf-8")
        after_text = desired.data.decode("utf-8")
    except UnicodeDecodeError:
        shown = "binary content, not shown"
    else:
        shown = f"content not shown: {hidden}" if hidden else ""
        if not hidden:
            diff = unified_diff(before_text, after_text, label, masks, text_format(observed.path))
    detail = f" ({shown})" if shown else ""
    if observed.data is None:
        return Change(
            step=Step.COMPOSE_FILE,
            target=label,
            action=Action.CREATE,
            reason=f"does not exist; state gives its content, {_size(desired)}{detail}",
            diff=diff,
        )
    return Change(
        step=Step.COMPOSE_FILE,
        target=label,
        action=Action.EDIT,
        reason=f"content differs from the declared one ({len(observed.data)} bytes, "
        f"declared {_size(desired)}){detail}",
        diff=diff,
    )


def apply(
    changes: tuple[Change, ...], state: State, facts: ComposeFileFacts, adapter: DockerAdapter
) -> tuple[Change, ...]:
    """Write the edited dotenv files, the pinned compose text and the other managed files,
    refusing (nothing written) if any of them changed since it was observed.

    Each file is one atomic write, made in that order. When one fails, those before it stay
    written: the step raises `StepIncomplete` with the changes they made (`done`) and those of
    the failing write (`attempted`), for the run to report truly and, with
    `--rollback-on-failure`, to undo exactly those files (`roll_back`).
    """
    current = read_compose_text(facts.compose_file)
    if current != facts.compose_text:
        raise ApplyError(f"{facts.compose_file} changed while planning; nothing written, run again")
    # Every file is checked before any is written: a moved one means the plan is stale.
    edits = file_edits(state, facts)
    if edits.texts:
        now = read_env_texts(state)
        moved = [path for path in edits.texts if now.get(path) != facts.env_texts.get(path)]
        if moved:
            raise ApplyError(f"{moved[0]} changed while planning; nothing written, run again")
    for name, observed in facts.files.items():
        if observe_file(Path(name), state.files[name], state.confine) != observed:
            raise ApplyError(f"{name} changed while planning; nothing written, run again")
    done: list[Change] = []
    for path, write in _writes(state, facts, edits, current):
        mine = tuple(change for change in changes if _file_of(change, facts) == path)
        try:
            write()
        except Exception as error:  # any failure: the run must know what was written before
            raise StepIncomplete(error, tuple(done), mine) from error
        done += mine
    return changes


def _writes(
    state: State, facts: ComposeFileFacts, edits: FileEdits, current: str
) -> list[tuple[Path, Callable[[], None]]]:
    """The step's writes in order, one per file: each file's path and the call writing it.
    Every new content is computed here, before the first write."""
    root = state.confine
    writes: list[tuple[Path, Callable[[], None]]] = []
    for path, text in edits.texts.items():
        writes.append((path, functools.partial(_write_env, path, text.encode("utf-8"), root)))
    new_text = pinned_text(state, facts)
    if new_text != current:
        data = new_text.encode("utf-8")
        writes.append((facts.compose_file, functools.partial(_write_compose, facts, data, root)))
    for name, observed in facts.files.items():
        desired = desired_file(state.files[name], observed)
        writes.append((Path(name), functools.partial(_write_file, desired, observed, root)))
    return writes


def _file_of(change: Change, facts: ComposeFileFacts) -> Path:
    """The file a change of this step is made in: the one it `writes`, else the compose file."""
    return Path(change.writes) if change.writes is not None else facts.compose_file


def _write_env(path: Path, data: bytes, root: Path | None) -> None:
    write_atomic(path, data, kind="env file", root=root)
    _log.info("env file written", file=str(path))


def _write_compose(facts: ComposeFileFacts, data: bytes, root: Path | None) -> None:
    write_atomic(facts.compose_file, data, kind="compose file", root=root)
    _log.info("compose file written", file=str(facts.compose_file))


def _write_file(desired: DesiredFile, observed: ObservedFile, root: Path | None) -> None:
    """Write a managed file's declared bytes (atomically), or only set its mode."""
    path = observed.path
    if observed.data != desired.data:
        write_atomic(path, desired.data, mode=desired.mode, root=root)
        _log.info("file written", file=str(path))
    elif desired.mode is not None and observed.mode != desired.mode:
        try:
            os.chmod(path, desired.mode)
        except OSError as error:
            raise ApplyError(
                f"{path}: cannot set its mode to {desired.mode:04o}: "
                f"{error.strerror or error}; it kept its previous mode"
            ) from None
        _log.info("file mode set", file=str(path), mode=f"{desired.mode:04o}")


def roll_back(state: State, before: ComposeFileFacts, changes: Iterable[Change]) -> list[str]:
    """Put back each file `changes` were made in (the compose file, env files, `files:`
    targets) as `before` observed it, byte for byte and with its mode; a file that did not
    exist is removed. Undone in the reverse order of the writes; what was done, for the report.

    Only what this apply wrote is undone: a file holding its previous bytes is left alone, and
    so is one holding neither those nor the bytes the step writes (someone changed it since;
    said so). Each file is restored on its own: one that cannot be is reported
    (`rollback incomplete: ...`) and the others still are.
    """
    touched = {_file_of(change, before) for change in changes}
    edits = file_edits(state, before)
    order: list[Path] = [*edits.texts, before.compose_file, *map(Path, before.files)]
    done: list[str] = []
    for path in reversed(order):
        if path not in touched:
            continue
        shown = state.shown(path)
        try:
            line = _restore(state, before, edits, path)
        except Exception as error:  # the next file is still restored
            line = f"rollback incomplete: {shown} not restored: {describe(error)}"
            _log.error("rollback of a file failed", file=str(path), error=str(error))
        if line is not None:
            done.append(line)
    return done


def _restore(state: State, before: ComposeFileFacts, edits: FileEdits, path: Path) -> str | None:
    """Put one file back (see `roll_back`); the line saying what was done, None if nothing."""
    managed = {Path(name): (name, observed) for name, observed in before.files.items()}
    if path in managed:
        name, observed = managed[path]
        return _restore_managed(state, observed, state.files[name])
    if path == before.compose_file:
        old, new = before.compose_text, pinned_text(state, before)
        return _restore_text(state, path, "compose file", old, new)
    return _restore_text(state, path, "env file", before.env_texts.get(path), edits.texts.get(path))


def _restore_managed(state: State, observed: ObservedFile, spec: FileSpec) -> str | None:
    """Put a `files:` target back as observed: its bytes and mode, or removed."""
    shown = state.shown(observed.path)
    data, _ = read_managed(observed.path, state.confine)
    if data not in (observed.data, desired_file(spec, observed).data):
        return f"left {shown} as it is: it changed since this apply wrote it"
    if not restore_file(observed, state.confine):
        return None
    if observed.data is None:
        return f"removed {shown}, which did not exist before"
    if data == observed.data:
        return f"restored the mode of {shown} to {observed.mode or 0:04o}"
    return f"restored {shown} to its previous bytes"


def _restore_text(
    state: State, path: Path, kind: str, old: str | None, new: str | None
) -> str | None:
    """Put the compose file or an env file back to the text `old` (None: remove it), if it
    holds `new`, the text the step wrote."""
    shown = state.shown(path)
    now = read_optional_bytes(path, kind, root=state.confine)
    previous = None if old is None else old.encode("utf-8")
    if now == previous:
        return None
    if new is None or now != new.encode("utf-8"):
        return f"left {shown} as it is: it changed since this apply wrote it"
    if previous is None:
        path.unlink(missing_ok=True)
        return f"removed {shown}, which did not exist before"
    write_atomic(path, previous, kind=kind, root=state.confine)
    return f"restored {shown} to its previous bytes"


def restore_file(observed: ObservedFile, root: Path | None) -> bool:
    """Put a managed file back as it was observed (remove it if it did not exist); True when
    that changed something."""
    path = observed.path
    data, mode = read_managed(path, root)
    if data == observed.data and mode == observed.mode:
        return False
    if observed.data is None:
        path.unlink(missing_ok=True)
    else:
        write_atomic(path, observed.data, mode=observed.mode, root=root)
    return True


def unified_diff(
    before: str, after: str, label: str, masks: Secrets, fmt: TextFormat | None = None
) -> str:
    """A unified diff of two texts, line endings shown as they are, secret values masked.

    The lines are compared as they are (a changed secret is a changed line) but shown as
    `masks.mask_lines` masks each text, by meaning in its format `fmt` (see
    `reconciler.secrets.redact`): a JSON or flow-style YAML value is masked although its line has no
    `KEY: value` shape. The values found are registered with `masks`.
    """
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    old_shown, new_shown = masks.mask_lines(before, fmt), masks.mask_lines(after, fmt)
    lines: list[str] = []
    for group in difflib.SequenceMatcher(None, old, new).get_grouped_opcodes(1):
        if not lines:
            lines += [f"--- a/{label}\n", f"+++ b/{label}\n"]
        first, last = group[0], group[-1]
        lines.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [" " + line for line in old_shown[i1:i2]]
                continue
            lines += ["-" + line for line in old_shown[i1:i2]]
            lines += ["+" + line for line in new_shown[j1:j2]]
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _range(start: int, stop: int) -> str:
    """A hunk's line range as `diff -u` writes it (difflib's own format)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


_HOW = {
    "inserted": "adds an image: key",
    "replaced-alias": "replaces an alias with the value",
    "override-merge": "overrides the image inherited through <<:",
}


def _reason(before: str | None, after: str, how: str) -> str:
    detail = f" ({_HOW[how]})" if how in _HOW else ""
    if before is None:
        return f"no image set; state pins {after}{detail}"
    return f"image is {before}; state pins {after}{detail}"


def fingerprint(state: State, facts: ComposeFileFacts, secrets: Secrets) -> dict[str, object]:
    """By target: the compose file's and each dotenv file's masked text, the process
    variables, and each managed file (whether it exists, its mode, its masked content unless
    it is a secret's: a secret file's bytes are never hashed)."""
    text = facts.compose_text.encode("utf-8", "surrogateescape")
    targets: dict[str, object] = {
        state.shown(facts.compose_file): masked_text(text, secrets, "yaml")
    }
    for path, content in facts.env_texts.items():
        targets[state.shown(path)] = (
            None if content is None else masked_text(content.encode("utf-8"), secrets, "dotenv")
        )
    targets["environment"] = plain(facts.environment, secrets)
    for name, observed in facts.files.items():
        spec = state.files.get(name)
        hidden = spec is not None and hidden_because(observed.path, spec, observed.data)
        fmt = text_format(observed.path)
        content = (
            None if observed.data is None or hidden else masked_text(observed.data, secrets, fmt)
        )
        targets[state.shown(observed.path)] = {
            "exists": observed.data is not None,
            "content": content,
            "mode": observed.mode,
            "source": None
            if observed.source_data is None or hidden
            else masked_text(observed.source_data, secrets, fmt),
        }
    return targets


STEP = StepDefinition(
    step=Step.COMPOSE_FILE,
    observe=observe,
    diff=diff,
    fingerprint=fingerprint,
    apply=apply,
    roll_back=roll_back,
)
