"""Command line: `python -m reconciler plan|apply|down [STATE] [options]`.

A thin shell over `reconciler.reconcile`. It alone configures logging (console on a TTY, JSON
lines otherwise, logs always on stderr) and prints; it maps the error hierarchy to exit codes
in one place (`_exit_code`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import structlog

from reconciler import reconcile
from reconciler.errors import HealthTimeoutError, InputError, InternalError, ReconcilerError
from reconciler.interrupt import StopToken, install_handlers, restore_handlers
from reconciler.plans import Change, Plan, Step
from reconciler.report import junit_xml, markdown
from reconciler.secrets import RedactingStream, Secrets
from reconciler.state import load_state

if TYPE_CHECKING:
    from reconciler.live import LiveView

__all__ = ["main"]

DEFAULT_STATE = Path("states/canary.yaml")
EXIT_OK, EXIT_FAILED, EXIT_CHANGES, EXIT_INPUT = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse, but bad arguments exit 3 (invalid input), not argparse's 2 (= changes pending)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m reconciler",
        description="Keep a Docker Compose environment in its declared state.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument(
        "state",
        nargs="?",
        type=Path,
        default=DEFAULT_STATE,
        help=f"state file (default: {DEFAULT_STATE})",
    )
    common.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        default="auto",
        help="log format on stderr: console on a TTY, JSON lines otherwise (default: auto)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="debug logs (every docker call)"
    )
    steps = _Parser(add_help=False)
    steps.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    steps.add_argument(
        "--only",
        type=_step_list,
        default=[],
        metavar="STEP[,STEP]",
        help="run only these steps: " + ", ".join(reconcile.names_in_order()),
    )
    steps.add_argument(
        "--skip", type=_step_list, default=[], metavar="STEP[,STEP]", help="skip these steps"
    )
    commands.add_parser(
        "plan", parents=[common, steps], help="show what apply would change; change nothing"
    )
    apply = commands.add_parser(
        "apply", parents=[common, steps], help="converge to the declared state, then run checks"
    )
    apply.add_argument(
        "--rollback-on-failure",
        action="store_true",
        help="on failure after the compose file or images changed, restore them and re-converge",
    )
    apply.add_argument(
        "--lock-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another apply of the project to finish (default 0: fail at once)",
    )
    apply.add_argument(
        "--progress",
        choices=["auto", "live", "plain"],
        default="auto",
        help="live: a live view of each step on the terminal; plain: logs only "
        "(default auto: live when stdout and stderr are terminals)",
    )
    apply.add_argument("--report", type=Path, metavar="PATH", help="write a Markdown report")
    apply.add_argument("--junit", type=Path, metavar="PATH", help="write JUnit XML of the checks")
    down = commands.add_parser("down", parents=[common], help="stop the compose project")
    down.add_argument("--volumes", action="store_true", help="also remove named volumes")
    return parser


def _step_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None, *, stop: StopToken | None = None) -> int:
    """Run the CLI; return its exit code. Leaves no global state behind for in-process callers.

    `stop`: a token that may already hold a signal received while starting up.
    """
    stop = stop or StopToken()
    args = _parser().parse_args(argv)
    # Every byte the CLI prints, logs included, goes through secret redaction.
    stdout, stderr = sys.stdout, sys.stderr
    secrets = Secrets()
    sys.stdout, sys.stderr = RedactingStream(stdout, secrets), RedactingStream(stderr, secrets)
    caller_logging = structlog.get_config() if structlog.is_configured() else None
    handlers = install_handlers(stop) if _main_thread() else {}
    view = _live_view(args, secrets)
    try:
        _configure_logging(args.log_format, verbose=args.verbose, view=view)
        try:
            return _run(args, stop, secrets, view)
        except ReconcilerError as error:
            _report_error(error, secrets)
            return _exit_code(error)
        except Exception as error:
            _report_error(InternalError(error, traceback.format_exc()), secrets)
            return EXIT_FAILED
    finally:
        if view is not None:
            view.stop()  # idempotent: the terminal is given back on every way out
        sys.stdout, sys.stderr = stdout, stderr
        restore_handlers(handlers)
        if caller_logging is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**caller_logging)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _live_view(args: argparse.Namespace, secrets: Secrets) -> LiveView | None:
    """The live view of an apply, when `--progress` asks for one (on a terminal, by default).

    It draws on stdout, or on stderr with `--json` (stdout keeps the JSON alone), through the
    redacting stream in place now. rich is imported only then.
    """
    progress = getattr(args, "progress", "plain")
    terminals = sys.stdout.isatty() and sys.stderr.isatty()
    if progress == "plain" or (progress == "auto" and not terminals):
        return None
    from reconciler.live import LiveView, Progress, make_console  # noqa: PLC0415 - live only

    stream = sys.stderr if args.json else sys.stdout
    # Printed above the view: warnings and errors (the view shows the rest), or all with -v.
    level = logging.DEBUG if args.verbose else logging.WARNING
    console = make_console(stream, force=progress == "live")
    return LiveView(console, Progress(redact=secrets.redact), level=level)


def _run(
    args: argparse.Namespace, stop: StopToken, secrets: Secrets, view: LiveView | None = None
) -> int:
    state = load_state(args.state)
    if args.command == "down":
        reconcile.down(state, volumes=args.volumes)
        print(
            f"{state.name}: compose project stopped"
            + (" (volumes removed)" if args.volumes else "")
        )
        return EXIT_OK
    steps = reconcile.select_steps(args.only, args.skip)
    if args.command == "plan":
        adapter = reconcile.make_adapter(state, stop=stop)
        return _plan(
            state_plan=reconcile.plan(state, steps=steps, adapter=adapter, secrets=secrets),
            as_json=args.json,
        )
    if args.lock_timeout < 0 or args.lock_timeout > 86400:
        raise InputError(f"--lock-timeout must be between 0 and 86400 s, not {args.lock_timeout:g}")
    if view is not None:
        view.progress.title = f"apply {state.name}"
    with view if view is not None else contextlib.nullcontext():
        result = reconcile.apply(
            state,
            steps=steps,
            rollback_on_failure=args.rollback_on_failure,
            stop=stop,
            secrets=secrets,
            lock_timeout=args.lock_timeout,
        )
    _write_reports(state.name, result, secrets, report=args.report, junit=args.junit)
    return _apply(result, secrets, as_json=args.json)


def _exit_code(error: ReconcilerError) -> int:
    """The one mapping from errors to exit codes: each error class carries its own."""
    return error.exit_code


def _write_reports(
    name: str,
    result: reconcile.ApplyResult,
    secrets: Secrets,
    *,
    report: Path | None,
    junit: Path | None,
) -> None:
    try:
        if report is not None:
            report.write_text(secrets.redact(markdown(name, result)), encoding="utf-8")
        if junit is not None:
            junit.write_text(secrets.redact(junit_xml(name, result)), encoding="utf-8")
    except OSError as error:
        print(f"error: cannot write report: {error}", file=sys.stderr)


def _plan(state_plan: Plan, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(state_plan.to_dict(), indent=2))
    else:
        _print_plan(state_plan, sys.stdout)
        if state_plan.empty:
            print(f"In sync: no changes ({len(state_plan.ok)} ok).")
        else:
            print(f"Plan: {len(state_plan.changes)} to change, {len(state_plan.ok)} ok.")
    return EXIT_OK if state_plan.empty else EXIT_CHANGES


def _apply(result: reconcile.ApplyResult, secrets: Secrets, *, as_json: bool) -> int:
    counts = result.counts
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_plan(Plan(result.applied), sys.stdout)
        if not result.changed and not result.failed and result.error is None:
            print("No changes: already in the declared state.")
        for change in result.failed:
            print(f"{_change_line(change)}  FAILED: {result.failure_of(change)}")
        for check in result.checks:
            verdict = "PASS" if check.passed else "FAIL"
            print(f"check  {verdict}  {check.name}  ({check.detail}, {check.seconds:.1f} s)")
        for line in result.rolled_back:
            print(f"rolled back: {line}")
    if result.error is not None:
        _report_error(result.error, secrets)
    if not as_json:
        print(" ".join(f"{key}={value}" for key, value in counts.items()))
    return EXIT_OK if result.error is None else _exit_code(result.error)


def _print_plan(the_plan: Plan, out: TextIO) -> None:
    for step in Step:
        for change in the_plan.for_step(step):
            print(_change_line(change), file=out)
            if change.diff:
                out.write("".join("    " + line for line in change.diff.splitlines(keepends=True)))


def _change_line(change: Change) -> str:
    return f"{change.step:<13} {change.action:<9} {change.target}  ({change.reason})"


def _report_error(error: ReconcilerError, secrets: Secrets) -> None:
    if isinstance(error, InternalError):
        print(
            f"error: {error}; traceback written to {_save_traceback(error, secrets)}",
            file=sys.stderr,
        )
        return
    print(f"error: {error}", file=sys.stderr)
    if isinstance(error, HealthTimeoutError):
        for service, text in error.diagnostics.items():
            print(f"--- {service}", file=sys.stderr)
            print(text, file=sys.stderr)


def _save_traceback(error: InternalError, secrets: Secrets) -> Path:
    """Write a bug's traceback to a file of its own, for the bug report; return its path."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept, not closed by a with block
        "w", prefix="reconciler-bug-", suffix=".txt", delete=False, encoding="utf-8"
    )
    with handle:
        handle.write(secrets.redact(error.traceback_text))
    return Path(handle.name)


def _configure_logging(fmt: str, *, verbose: bool, view: LiveView | None = None) -> None:
    """Configure structlog once, here: console on a TTY, JSON lines otherwise, on stderr.

    With a live view, every event (debug included) reaches the view first; only what the log
    level lets through is then rendered, and printed above the view while it runs.
    """
    console = sys.stderr.isatty() if fmt == "auto" else fmt == "console"
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    level = logging.DEBUG if verbose else logging.INFO
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]
    if view is not None:
        processors = [view.feed, *processors, view.emit]
        level = logging.DEBUG  # the view filters by level itself, after seeing every event
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
