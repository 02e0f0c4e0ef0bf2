"""Live progress of `apply` on a terminal (CLI only): a rich `Live` view fed by structlog events.

The library never prints: it reports progress as structlog events, typed as
`reconciler.logs.ProgressEvent` (`plan`, `step started`, `step finished`, `building image`,
`build output`, `compose up`, `compose output`, `service health`, `check`, ...): the view keys
on those members, never on strings. On a TTY the CLI puts `LiveView.feed` and `LiveView.emit` in
structlog's chain and lets every level through: `feed` hands each event, debug included, to
the view's model (`Progress`), then drops what the log level would have dropped; `emit` prints
what is left (warnings and errors always, everything with `--verbose`) above the view instead of
through it. `Progress.render` is pure (model and clock in, rich renderable out), so the fast
tests render synthetic events without a terminal.

Signal safety: nothing here runs in a signal handler. The CLI stops the view on every way out
of an apply (`LiveView.stop`, idempotent), which restores the cursor.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal, cast

import structlog
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from reconciler.logs import ProgressEvent

__all__ = ["LiveView", "Progress", "make_console", "plan_text"]

Status = Literal["pending", "running", "done", "failed"]

_BUILD_LINES = 5  # the last lines of a running build shown under it
_COMPOSE_LINES = 3
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "exception": 40}
_LEVELS |= {"critical": 50, "fatal": 50}
_STEP_OF = {
    ProgressEvent.BUILDING_IMAGE: "images",
    ProgressEvent.MAKING_BASE_IMAGE: "images",
    ProgressEvent.PULLING_IMAGE: "images",
    ProgressEvent.TRANSFERRING_IMAGE: "images",
}
_ACTION_STYLE = {
    "create": "green",
    "build": "green",
    "import": "green",
    "transfer": "green",
    "download": "green",
    "pull": "green",
    "recreate": "yellow",
    "start": "yellow",
    "pin": "yellow",
    "upgrade": "yellow",
    "wait": "cyan",
}


@dataclass
class _Row:
    """A phase (observe, a step, verify, checks) or one target of a step."""

    name: str
    action: str = ""
    status: Status = "pending"
    started: float | None = None
    ended: float | None = None
    note: str = ""

    def start(self, now: float, note: str = "") -> None:
        if self.status in {"done", "failed"}:
            return
        self.status = "running"
        self.started = self.started if self.started is not None else now
        self.note = note or self.note

    def end(self, now: float, status: Status = "done", note: str = "") -> None:
        self.status = status
        self.ended = now
        self.note = note or self.note

    def seconds(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else now) - self.started


@dataclass
class _Service:
    state: str
    ready: bool
    failed: bool


@dataclass
class _Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Progress:
    """What the view shows, built from structlog events (`feed`); thread-safe."""

    title: str = "apply"
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    phases: dict[str, _Row] = field(default_factory=dict)
    targets: dict[str, dict[str, _Row]] = field(default_factory=dict)  # step -> target -> row
    build_lines: dict[str, deque[str]] = field(default_factory=dict)
    compose_lines: deque[str] = field(default_factory=lambda: deque(maxlen=_COMPOSE_LINES))
    services: dict[str, _Service] = field(default_factory=dict)
    checks: list[_Check] = field(default_factory=list)
    planned: int | None = None
    outcome: str = ""
    # Applied to every text before it is cut to the terminal's width: a secret cut in two
    # would escape the redacting stream the console writes through.
    redact: Callable[[str], str] = str
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()

    # ---- the model ------------------------------------------------------------------------

    def feed(self, event: Mapping[str, Any]) -> None:
        """Update the model from one structlog event dict; unknown events are ignored."""
        name = _progress_event(event)
        handler = _HANDLERS.get(name) if name is not None else None
        if handler is None:
            return
        with self._lock, contextlib.suppress(LookupError, TypeError, ValueError, AttributeError):
            handler(self, event, self.clock())  # a malformed event changes nothing

    def _phase(self, name: str) -> _Row:
        return self.phases.setdefault(name, _Row(name))

    def _target(self, step: str, target: str, action: str = "") -> _Row:
        rows = self.targets.setdefault(step, {})
        row = rows.setdefault(target, _Row(target, action))
        row.action = row.action or action
        return row

    def _on_plan(self, event: Mapping[str, Any], now: float) -> None:
        changes = list(event.get("changes") or [])
        self.planned = len(changes)
        for change in changes:
            step = str(change.get("step", ""))
            self._phase(step)
            self._target(step, str(change.get("target", "")), str(change.get("action", "")))

    def _on_step_started(self, event: Mapping[str, Any], now: float) -> None:
        lock = self.phases.get("lock")
        if lock is not None and lock.status == "running":
            lock.end(now, note="taken")
        self._phase(str(event.get("step"))).start(now)

    def _on_lock_wait(self, event: Mapping[str, Any], now: float) -> None:
        waited = f"another apply holds it; waiting up to {event.get('timeout')} s"
        self._phase("lock").start(now, waited)

    def _on_step_finished(self, event: Mapping[str, Any], now: float) -> None:
        row = self._phase(str(event.get("step")))
        for target in self.targets.get(row.name, {}).values():
            if target.status == "running":
                target.end(now)
        if row.status != "failed":
            row.end(now)
            self._count(row)

    def _count(self, phase: _Row) -> None:
        """A finished step's note: how many of its targets changed (and how it ended)."""
        targets = self.targets.get(phase.name, {}).values()
        if not targets or phase.status != "done":
            return
        ended = phase.note.split("; ")[-1] if "ready after" in phase.note else ""
        done = sum(1 for target in targets if target.status == "done")
        phase.note = f"{done} changed" + (f"; {ended}" if ended else "")

    def _on_step_failed(self, event: Mapping[str, Any], now: float) -> None:
        step = str(event.get("step"))
        self._phase(step).end(now, "failed", _first_line(event.get("error")))
        for target in self.targets.get(step, {}).values():
            if target.status == "running":
                target.end(now, "failed")

    def _on_changed(self, event: Mapping[str, Any], now: float) -> None:
        step, action = str(event.get("step")), str(event.get("action", ""))
        row = self._target(step, str(event.get("target")), action)
        if row.status in {"pending", "running"}:
            row.end(now)
        if row.started is None:
            row.started = now
        self._count(self._phase(step))  # a step logs its changes once it is done

    def _on_image(self, event: Mapping[str, Any], now: float) -> None:
        kind = ProgressEvent(str(event["event"]))
        step = _STEP_OF[kind]
        image = str(event.get("image"))
        for other in self.targets.get(step, {}).values():
            if other.status == "running" and other.name != image:
                other.end(now)  # a step makes its images one after the other
        self._target(step, image).start(now)
        self._phase(step).note = f"{kind.split()[0]} {image}"

    def _on_build_output(self, event: Mapping[str, Any], now: float) -> None:
        lines = self.build_lines.setdefault(str(event.get("image")), deque(maxlen=_BUILD_LINES))
        line = str(event.get("line", "")).rstrip()
        if line:
            lines.append(line)

    def _on_compose_up(self, event: Mapping[str, Any], now: float) -> None:
        services = [str(s) for s in event.get("services") or []]
        self._phase("services").note = f"{event['event']} {', '.join(services)}"
        for service in services:
            self._target("services", service).start(now)

    def _on_compose_output(self, event: Mapping[str, Any], now: float) -> None:
        line = str(event.get("line", "")).strip()
        if line:
            self.compose_lines.append(line)

    def _on_service_health(self, event: Mapping[str, Any], now: float) -> None:
        ready, failed = bool(event.get("ready")), bool(event.get("failed"))
        self.services[str(event.get("service"))] = _Service(str(event.get("state")), ready, failed)
        self._phase("services").note = "waiting until every service is ready"

    def _on_waiting(self, event: Mapping[str, Any], now: float) -> None:
        for service, state in dict(event.get("pending") or {}).items():
            known = self.services.get(str(service))
            self.services[str(service)] = _Service(str(state), False, bool(known and known.failed))

    def _on_all_ready(self, event: Mapping[str, Any], now: float) -> None:
        self._phase("services").note = f"all services ready after {event.get('seconds')} s"
        self.compose_lines.clear()

    def _on_check(self, event: Mapping[str, Any], now: float) -> None:
        check = _Check(str(event.get("name")), bool(event.get("passed")), str(event.get("detail")))
        self.checks.append(check)
        self._phase("checks").note = f"{len(self.checks)} done"

    def _on_note(self, event: Mapping[str, Any], now: float) -> None:
        kind = ProgressEvent(str(event["event"]))
        if kind is ProgressEvent.UPGRADING:
            self._phase("migrations").note = f"upgrading {event.get('migration')}"
        elif kind is ProgressEvent.DOWNLOADING_WHEELS:
            self._phase("images").note = f"downloading wheels into {event.get('into')}"
        elif kind is ProgressEvent.IN_SYNC:
            self.outcome = "in sync: nothing to do"
        elif kind is ProgressEvent.CONVERGED:
            self.outcome = f"converged ({event.get('changed')} changed)"
        elif kind is ProgressEvent.APPLY_FAILED:
            self.outcome = f"failed: {_first_line(event.get('error'))}"

    def finish(self) -> None:
        """The run ended: what still runs did not finish (an error or a stop cut it)."""
        with self._lock:
            now = self.clock()
            for row in [*self.phases.values(), *self._all_targets()]:
                if row.status == "running":
                    row.end(now, "failed", "did not finish")

    def _all_targets(self) -> list[_Row]:
        return [row for rows in self.targets.values() for row in rows.values()]

    # ---- the rendering -------------------------------------------------------------------

    def render(self, now: float | None = None) -> RenderableType:
        """The view at `now` (default: the clock's now): one line per phase, target, service."""
        with self._lock:
            now = self.clock() if now is None else now
            rows = list(self._rows(now))
            width = max((i + len(label) for i, row, label in rows if row is not None), default=0)
            lines = [_one_line(self._header(now))]
            for indent, row, label in rows:
                if row is None:  # a line of output under what printed it
                    lines.append(_one_line(Text(" " * indent + self.redact(label), "dim")))
                else:
                    row.note = self.redact(row.note)
                    shown = self.redact(label)
                    lines.append(_row_line(row, now, indent=indent, label=shown, width=width))
            return Group(*lines)

    def _header(self, now: float) -> Text:
        header = Text.assemble((self.title, "bold"), f"  {now - self.started:.1f} s")
        running = [row for row in self.phases.values() if row.status == "running"]
        failed = any(row.status == "failed" for row in self.phases.values()) or any(
            not check.passed for check in self.checks
        )
        if running:
            header.append(f"  now: {running[-1].name}", "cyan")
            if running[-1].note:
                header.append(f" ({self.redact(running[-1].note)})", "cyan")
        elif failed:
            header.append("  failed", "bold red")
        elif self.outcome:
            header.append(f"  {self.redact(self.outcome)}", "bold green")
        return header

    def _rows(self, now: float) -> Iterator[tuple[int, _Row | None, str]]:
        """(indent, row or None for an output line, label), in display order."""
        for phase in self.phases.values():
            yield 0, phase, phase.name
            for target in self.targets.get(phase.name, {}).values():
                label = f"{target.action:<9} {target.name}" if target.action else target.name
                service = self.services.get(target.name) if phase.name == "services" else None
                row = target
                if service is not None and target.status != "pending":
                    status = _service_status(service, target.status)
                    row = _Row(target.name, target.action, status, target.started, target.ended)
                    row.note = service.state
                yield 4, row, label
                if target.status == "running":
                    for line in self.build_lines.get(target.name, ()):
                        yield 8, None, line
            if phase.name == "services":
                planned = self.targets.get("services", {})
                for name, service in self.services.items():
                    if name not in planned:  # waited on, though in sync
                        status = _service_status(service, "running")
                        yield 4, _Row(name, "", status, note=service.state), f"{'':<9} {name}"
                if phase.status == "running":
                    for line in self.compose_lines:
                        yield 8, None, line
            if phase.name == "checks":
                for check in self.checks:
                    status = "done" if check.passed else "failed"
                    yield 4, _Row(check.name, "", status, note=check.detail), check.name


def _service_status(service: _Service, target: Status) -> Status:
    """A service row: its sampled health while its target runs; failed if its step failed."""
    if service.failed:
        return "failed"
    if service.ready:
        return "done"
    if target in {"pending", "failed"}:
        return target
    return "running"


def _row_line(row: _Row, now: float, *, indent: int, label: str, width: int) -> Text:
    icon, style = {
        "pending": ("·", "dim"),
        "running": (_SPINNER[int(now * 10) % len(_SPINNER)], "cyan"),
        "done": ("✓", "green"),
        "failed": ("✗", "red"),
    }[row.status]
    seconds = row.seconds(now)
    text = Text(" " * indent)
    text.append(icon, style)
    text.append(f" {label:<{max(width - indent, 1)}}")
    text.append(f" {seconds:6.1f} s" if seconds is not None else " " * 9, "dim")
    if row.note:
        text.append(f"  {row.note}", "red" if row.status == "failed" else "")
    return text


def _one_line(text: Text) -> Text:
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _first_line(value: object) -> str:
    lines = str(value or "").strip().splitlines()
    return lines[0] if lines else ""


def _progress_event(event: Mapping[str, Any]) -> ProgressEvent | None:
    """The progress event a structlog event dict is, if it is one."""
    try:
        return ProgressEvent(str(event.get("event", "")))
    except ValueError:
        return None


_Handler = Callable[[Progress, Mapping[str, Any], float], None]
_HANDLERS: dict[ProgressEvent, _Handler] = {
    ProgressEvent.PLAN: Progress._on_plan,
    ProgressEvent.STEP_STARTED: Progress._on_step_started,
    ProgressEvent.LOCK_WAIT: Progress._on_lock_wait,
    ProgressEvent.STEP_FINISHED: Progress._on_step_finished,
    ProgressEvent.STEP_FAILED: Progress._on_step_failed,
    ProgressEvent.CHANGED: Progress._on_changed,
    ProgressEvent.BUILDING_IMAGE: Progress._on_image,
    ProgressEvent.MAKING_BASE_IMAGE: Progress._on_image,
    ProgressEvent.PULLING_IMAGE: Progress._on_image,
    ProgressEvent.BUILD_OUTPUT: Progress._on_build_output,
    ProgressEvent.COMPOSE_UP: Progress._on_compose_up,
    ProgressEvent.COMPOSE_UP_FORCED: Progress._on_compose_up,
    ProgressEvent.COMPOSE_OUTPUT: Progress._on_compose_output,
    ProgressEvent.SERVICE_HEALTH: Progress._on_service_health,
    ProgressEvent.WAITING_FOR_SERVICES: Progress._on_waiting,
    ProgressEvent.ALL_SERVICES_READY: Progress._on_all_ready,
    ProgressEvent.CHECK: Progress._on_check,
    ProgressEvent.UPGRADING: Progress._on_note,
    ProgressEvent.DOWNLOADING_WHEELS: Progress._on_note,
    ProgressEvent.IN_SYNC: Progress._on_note,
    ProgressEvent.CONVERGED: Progress._on_note,
    ProgressEvent.APPLY_FAILED: Progress._on_note,
}


def plan_text(changes: Sequence[Mapping[str, Any]], ok: int) -> Text:
    """The plan as `plan` prints it: a line per change (and its diff), then the count."""
    text = Text()
    for change in changes:
        action = str(change.get("action", ""))
        text.append(f"{change.get('step', '')!s:<13} ")
        text.append(f"{action:<9}", _ACTION_STYLE.get(action, ""))
        text.append(f" {change.get('target', '')}  ({change.get('reason', '')})\n")
        for line in str(change.get("diff") or "").splitlines():
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
            text.append(f"    {line}\n", style)
    if changes:
        text.append(f"Plan: {len(changes)} to change, {ok} ok.", "bold")
    else:
        text.append(f"In sync: no changes ({ok} ok).", "bold")
    return text


def make_console(stream: object, *, force: bool) -> Console:
    """A rich console writing to `stream` (the CLI's redacting stdout or stderr)."""
    return Console(
        file=cast(IO[str], stream),
        force_terminal=True if force else None,
        highlight=False,
        markup=False,
        emoji=False,
    )


class LiveView:
    """The rich `Live` display of a `Progress`, and the two structlog processors that feed it.

    `level`: the lowest log level still printed (above the view) while it runs; every event
    reaches the model whatever its level.
    """

    def __init__(
        self, console: Console, progress: Progress | None = None, *, level: int = 20
    ) -> None:
        self.console = console
        self.progress = progress or Progress()
        self.level = level
        self._live: Live | None = None

    @property
    def active(self) -> bool:
        """True between `start` and `stop`."""
        return self._live is not None

    def start(self) -> None:
        """Show the view (refreshed 4 times a second by rich's own thread)."""
        if self._live is not None:
            return
        self.progress.started = self.progress.clock()
        live = Live(
            console=self.console,
            refresh_per_second=4,
            transient=False,
            get_renderable=self._renderable,
        )
        live.start()
        self._live = live

    def stop(self) -> None:
        """Draw the last frame and give the terminal back (cursor shown); idempotent."""
        live, self._live = self._live, None
        if live is not None:
            self.progress.finish()
            live.stop()

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _renderable(self) -> RenderableType:
        try:
            return self.progress.render()
        except Exception as error:  # the view must never take the run down
            return Text(f"(progress view failed: {error!r})")

    # ---- structlog processors -------------------------------------------------------------

    def feed(
        self, logger: object, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Processor: every event updates the view; the plan is printed above it as it lands.

        Drops the events below `level` (they reach the view only). Never raises otherwise:
        the library logs from everywhere, and a view fault must not become the library's.
        """
        try:
            self.progress.feed(event_dict)
            if _progress_event(event_dict) is ProgressEvent.PLAN and self.active:
                redact = self.progress.redact
                changes = [
                    {key: redact(value) if isinstance(value, str) else value for key, value in c}
                    for c in (dict(change).items() for change in event_dict.get("changes") or [])
                ]
                text = plan_text(changes, int(event_dict.get("ok") or 0))
                self.console.print(text, soft_wrap=True)
        except Exception:  # noqa: S110 - a view fault must not reach the library
            pass
        if _LEVELS.get(method, 20) < self.level:
            raise structlog.DropEvent
        return event_dict

    def emit(self, logger: object, method: str, rendered: Any) -> Any:
        """Last processor, after the renderer (a line): while the view runs, print it above."""
        if not self.active:
            return rendered
        self.console.print(Text.from_ansi(str(rendered)), soft_wrap=True)
        raise structlog.DropEvent
