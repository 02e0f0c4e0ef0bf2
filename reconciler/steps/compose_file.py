"""compose-file step: pin each service's `image:` with a minimal, verified splice, and keep the
dotenv files the state names (`files:`, and the env file defining an interpolated image's tag).

`observe` takes the texts from the snapshot (`ComposeFileFacts`); `diff` is pure (texts in,
changes out) using `reconciler.compose.edit` and `reconciler.env_files`; `apply` writes the new
bytes atomically (temp file in the same directory, fsync, rename, mode kept).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from reconciler.compose.edit import pin_images
from reconciler.docker.adapter import DockerAdapter
from reconciler.env_files import FileEdits, plan_file_edits
from reconciler.errors import ApplyError
from reconciler.facts import ComposeFileFacts, Snapshot
from reconciler.logs import get_logger
from reconciler.observe import read_compose_text, read_managed_files
from reconciler.plans import Action, Change, InSync, Plan, Step
from reconciler.secrets import MASK, Secrets, looks_secret
from reconciler.state import State
from reconciler.steps.contract import StepDefinition

__all__ = [
    "STEP",
    "apply",
    "diff",
    "file_edits",
    "observe",
    "pinned_text",
    "restore_files",
    "unified_diff",
    "write_atomically",
]

_log = get_logger(__name__)


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> ComposeFileFacts:
    """The compose file's and the managed files' texts as observed, the process variables the
    images use, and the secret values diffs must mask."""
    return ComposeFileFacts(
        snapshot.compose_file,
        snapshot.compose_text,
        snapshot.secrets,
        files=dict(snapshot.files),
        environment=dict(snapshot.environment),
    )


def file_edits(state: State, facts: ComposeFileFacts) -> FileEdits:
    """The dotenv edits of `files:` and of interpolated pins (pure)."""
    return plan_file_edits(state, facts.compose_text, facts.files, facts.environment)


def _literal_pins(state: State, edits: FileEdits) -> dict[str, str]:
    """Pins made in the compose file itself (interpolated ones go through env files)."""
    return {name: ref for name, ref in state.pins().items() if name not in edits.through_env}


def pinned_text(state: State, facts: ComposeFileFacts) -> str:
    """The compose text with every pin applied (equal to the observed text when in sync)."""
    pins = _literal_pins(state, file_edits(state, facts))
    return pin_images(facts.compose_text, pins, source=facts.compose_file).text


def diff(state: State, facts: ComposeFileFacts, earlier: Plan) -> Plan:
    """One change per service whose `image:` differs from its pin, with that edit's diff, and
    one per dotenv key to set or remove, with that file's diff."""
    label = state.shown(facts.compose_file)
    edits = file_edits(state, facts)
    pins = _literal_pins(state, edits)
    result = pin_images(facts.compose_text, pins, source=facts.compose_file)
    changes: list[Change] = []
    masks = Secrets(facts.secrets)
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
                diff=unified_diff(facts.compose_text, alone.text, label, masks),
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
                diff=unified_diff(facts.files.get(change.file) or "", change.text, shown, masks),
                key=f"{change.file}:{change.key}",
            )
        )
    ok += [
        InSync(Step.COMPOSE_FILE, f"{state.shown(path)}:{key}", reason)
        for path, key, reason in edits.in_sync
    ]
    return Plan(tuple(changes), tuple(ok))


def _masked_value(key: str, value: str | None) -> str | None:
    return MASK if value is not None and looks_secret(key) else value


def apply(
    changes: tuple[Change, ...], state: State, facts: ComposeFileFacts, adapter: DockerAdapter
) -> tuple[Change, ...]:
    """Write the pinned compose text and the edited dotenv files, refusing if any of them
    changed since it was observed."""
    current = read_compose_text(facts.compose_file)
    if current != facts.compose_text:
        raise ApplyError(f"{facts.compose_file} changed while planning; nothing written, run again")
    edits = file_edits(state, facts)
    if edits.texts:
        now = read_managed_files(state)
        moved = [path for path in edits.texts if now.get(path) != facts.files.get(path)]
        if moved:
            raise ApplyError(f"{moved[0]} changed while planning; nothing written, run again")
    new_text = pin_images(
        facts.compose_text, _literal_pins(state, edits), source=facts.compose_file
    ).text
    for path, text in edits.texts.items():
        write_atomically(path, text.encode("utf-8"))
        _log.info("env file written", file=str(path))
    if new_text != current:
        write_atomically(facts.compose_file, new_text.encode("utf-8"))
        _log.info("compose file written", file=str(facts.compose_file))
    return changes if edits.texts or new_text != current else ()


def restore_files(state: State, before: dict[Path, str | None]) -> list[str]:
    """Put back the managed files' observed bytes (a file that did not exist is removed);
    what was restored, for the report."""
    done = []
    now = read_managed_files(state)
    for path, text in before.items():
        if now.get(path) == text:
            continue
        if text is None:
            path.unlink(missing_ok=True)
            done.append(f"removed {state.shown(path)}, which did not exist before")
        else:
            write_atomically(path, text.encode("utf-8"))
            done.append(f"restored {state.shown(path)} to its previous bytes")
    return done


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new bytes, never a mix."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    # A write killed before its rename leaves its temp file; the project lock is held, so any
    # such file is a leftover, never another writer's.
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def unified_diff(before: str, after: str, label: str, masks: Secrets) -> str:
    """A unified diff of two texts, line endings shown as they are, secret values masked."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{label}",
        tofile=f"b/{label}",
        n=1,
    )
    return "".join(
        _masked(line, masks)
        if line.endswith("\n")
        else _masked(line, masks) + "\n\\ No newline at end of file\n"
        for line in lines
    )


def _masked(line: str, masks: Secrets) -> str:
    """A diff line with secret values masked; the +/-/space prefix kept."""
    if line.startswith(("---", "+++", "@@")):
        return line
    return line[:1] + masks.mask_line(line[1:])


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


STEP = StepDefinition(Step.COMPOSE_FILE, observe, diff, apply)
