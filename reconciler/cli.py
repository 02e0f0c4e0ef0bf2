"""Command line: `python -m reconciler plan|apply|down [STATE] [options]`.

A thin shell over `reconciler.reconcile`. It alone configures logging (console on a TTY, JSON
lines otherwise, logs always on stderr) and prints; it maps the error hierarchy to exit codes
in one place (`_exit_code`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import structlog

from reconciler import reconcile
from reconciler.errors import HealthTimeoutError, InputError, ReconcilerError
from reconciler.interrupt import StopRequested, install_handlers, restore_handlers
from reconciler.lock import project_lock
from reconciler.plan import Change, Plan, Step
from reconciler.report import junit_xml, markdown
from reconciler.secrets import RedactingStream, redact
from reconciler.state import load_state

__all__ = ["main"]

DEFAULT_STATE = Path("states/canary.yaml")
EXIT_OK, EXIT_FAILED, EXIT_CHANGES, EXIT_INPUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130


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
    apply.add_argument("--report", type=Path, metavar="PATH", help="write a Markdown report")
    apply.add_argument("--junit", type=Path, metavar="PATH", help="write JUnit XML of the checks")
    down = commands.add_parser("down", parents=[common], help="stop the compose project")
    down.add_argument("--volumes", action="store_true", help="also remove named volumes")
    return parser


def _step_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return its exit code."""
    args = _parser().parse_args(argv)
    # Every byte the CLI prints, logs included, goes through secret redaction.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(stdout), RedactingStream(stderr)
    handlers = install_handlers()
    try:
        return _run(args)
    finally:
        # Leave no global state behind for a caller that runs main() in-process.
        sys.stdout, sys.stderr = stdout, stderr
        restore_handlers(handlers)
        structlog.reset_defaults()


def _run(args: argparse.Namespace) -> int:
    _configure_logging(args.log_format, verbose=args.verbose)
    try:
        state = load_state(args.state)
        if args.command == "down":
            with project_lock(reconcile.lock_name(state)):
                reconcile.down(state, volumes=args.volumes)
            print(
                f"{state.name}: compose project stopped"
                + (" (volumes removed)" if args.volumes else "")
            )
            return EXIT_OK
        steps = reconcile.select_steps(args.only, args.skip)
        if args.command == "plan":
            return _plan(state_plan=reconcile.plan(state, steps=steps), as_json=args.json)
        if args.lock_timeout < 0 or args.lock_timeout > 86400:
            raise InputError(
                f"--lock-timeout must be between 0 and 86400 s, not {args.lock_timeout:g}"
            )
        with project_lock(reconcile.lock_name(state), timeout=args.lock_timeout):
            result = reconcile.apply(
                state, steps=steps, rollback_on_failure=args.rollback_on_failure
            )
        _write_reports(state.name, result, report=args.report, junit=args.junit)
        return _apply(result, as_json=args.json)
    except ReconcilerError as error:
        _report_error(error)
        return _exit_code(error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit_code(error: ReconcilerError) -> int:
    if isinstance(error, InputError):
        return EXIT_INPUT
    return error.exit_code if isinstance(error, StopRequested) else EXIT_FAILED


def _write_reports(
    name: str, result: reconcile.ApplyResult, *, report: Path | None, junit: Path | None
) -> None:
    try:
        if report is not None:
            report.write_text(redact(markdown(name, result)), encoding="utf-8")
        if junit is not None:
            junit.write_text(redact(junit_xml(name, result)), encoding="utf-8")
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


def _apply(result: reconcile.ApplyResult, *, as_json: bool) -> int:
    ok, changed = len(result.plan.ok), len(result.applied)
    failed = len(result.failed) + sum(1 for check in result.checks if not check.passed)
    if as_json:
        payload = {
            "changes": [change.to_dict() for change in result.applied],
            "ok": [row.to_dict() for row in result.plan.ok],
            "failed": [change.to_dict() for change in result.failed],
            "checks": [
                {
                    "name": c.name,
                    "passed": c.passed,
                    "detail": c.detail,
                    "seconds": round(c.seconds, 3),
                }
                for c in result.checks
            ],
            "rolled_back": list(result.rolled_back),
            "summary": {"ok": ok, "changed": changed, "failed": failed},
        }
        if result.error is not None:
            payload["error"] = str(result.error)
        print(json.dumps(payload, indent=2))
    else:
        _print_plan(Plan(result.applied), sys.stdout)
        if not result.changed and not result.failed:
            print("No changes: already in the declared state.")
        for check in result.checks:
            verdict = "PASS" if check.passed else "FAIL"
            print(f"check  {verdict}  {check.name}  ({check.detail}, {check.seconds:.1f} s)")
        for line in result.rolled_back:
            print(f"rolled back: {line}")
    if result.error is not None:
        _report_error(result.error)
    if not as_json:
        print(f"ok={ok} changed={changed} failed={failed}")
    return EXIT_OK if result.succeeded else _exit_code(result.error or ReconcilerError())


def _print_plan(the_plan: Plan, out: TextIO) -> None:
    for step in Step:
        for change in the_plan.for_step(step):
            print(_change_line(change), file=out)
            if change.diff:
                out.write("".join("    " + line for line in change.diff.splitlines(keepends=True)))


def _change_line(change: Change) -> str:
    return f"{change.step:<13} {change.action:<9} {change.target}  ({change.reason})"


def _report_error(error: ReconcilerError) -> None:
    print(f"error: {error}", file=sys.stderr)
    if isinstance(error, HealthTimeoutError):
        for service, text in error.diagnostics.items():
            print(f"--- {service}", file=sys.stderr)
            print(text, file=sys.stderr)


def _configure_logging(fmt: str, *, verbose: bool) -> None:
    """Configure structlog once, here: console on a TTY, JSON lines otherwise, on stderr."""
    console = sys.stderr.isatty() if fmt == "auto" else fmt == "console"
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
