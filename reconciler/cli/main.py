"""Command line: `python -m reconciler plan|apply|down|validate [STATE] [options]`.

A thin shell over `reconciler.reconcile.loop`. It alone configures logging (console on a TTY, JSON
lines otherwise, logs always on stderr) and prints; it maps the error hierarchy to exit codes
in one place (`_exit_code`). It checks every argument before anything changes: the output
paths (`_check_outputs`, against the run's own input files), the step selection, the numbers.
Every text it echoes that a user or a program could have written goes through `printable`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import structlog

from reconciler.cli.report import comparison_lines, junit_xml, markdown
from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import (
    ApplyError,
    HealthTimeoutError,
    InputError,
    InternalError,
    Location,
    ReconcilerError,
    StalePlanError,
    os_error_text,
)
from reconciler.plans import Change, Plan, Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.fleet import FleetPlan, FleetResult, TargetResult, apply_fleet, plan_fleet
from reconciler.reconcile.saved_plan import PLAN_FILE, SavedPlan, is_plan_file, load_plan
from reconciler.reconcile.validate import validate
from reconciler.runtime.files import check_output, write_atomic
from reconciler.runtime.interrupt import StopToken, install_handlers, restore_handlers
from reconciler.secrets.redact import RedactingStream, Secrets
from reconciler.state import State, load_state
from reconciler.state.engine import parse_engine
from reconciler.state.fleet import Fleet, is_fleet_file, load_fleet
from reconciler.state.schema import fleet_schema, state_schema
from reconciler.steps.registry import CaseResult

if TYPE_CHECKING:
    from reconciler.cli.live import LiveView
    from reconciler.reconcile.baseline import Comparison, RunRecord

__all__ = ["build_parser", "main", "printable"]

DEFAULT_STATE = Path("states/canary.yaml")
EXIT_OK, EXIT_FAILED, EXIT_CHANGES, EXIT_INPUT = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse, but bad arguments exit 3 (invalid input), not argparse's 2 (= changes pending)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {printable(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser; `reconciler.cli.reference` renders it into docs/cli.md."""
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
        help=f"state file, or for apply a plan file from plan --out (default: {DEFAULT_STATE})",
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
    common.add_argument(
        "--engine",
        metavar="CONTEXT|URL",
        help="the Docker engine to target, overriding the state's engine: a docker context "
        "name or ssh://user@host[:port], tcp://host:port, unix:///path",
    )
    common.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="with a fleet file: only this target (repeatable)",
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
    baseline = _Parser(add_help=False)
    baseline.add_argument(
        "--baseline",
        type=Path,
        metavar="PATH",
        help="compare with a result saved by `apply --save-result` (image sizes, regressions)",
    )
    plan = commands.add_parser(
        "plan",
        parents=[common, steps, baseline],
        help="show what apply would change; change nothing",
    )
    plan.add_argument(
        "--out",
        type=Path,
        metavar="PLANFILE",
        help="also save the plan, for `apply PLANFILE` to apply exactly it (or refuse if stale)",
    )
    apply = commands.add_parser(
        "apply",
        parents=[common, steps, baseline],
        help="converge to the declared state, then run checks",
    )
    apply.add_argument(
        "--rollback-on-failure",
        action="store_true",
        help="on failure, undo what the apply changed: files back to their previous bytes, "
        "rebuilt tags to their previous images, services re-converged",
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
    apply.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="write a report: Markdown, or one self-contained HTML file with charts when PATH "
        "ends in .html",
    )
    apply.add_argument("--junit", type=Path, metavar="PATH", help="write JUnit XML of the checks")
    apply.add_argument(
        "--save-result",
        type=Path,
        metavar="PATH",
        help="write this run's result as JSON, to compare later runs with (--baseline)",
    )
    schema = commands.add_parser(
        "schema",
        help="print the state file's JSON Schema (for editor completion and validation)",
    )
    schema.add_argument("--fleet", action="store_true", help="the fleet file's JSON Schema instead")
    validate = commands.add_parser(
        "validate",
        help="check a state, fleet or plan file and what it names, with no Docker engine; "
        "change nothing",
    )
    validate.add_argument(
        "state",
        nargs="?",
        type=Path,
        default=DEFAULT_STATE,
        metavar="STATE|FLEET|PLANFILE",
        help=f"the file to check (default: {DEFAULT_STATE})",
    )
    validate.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    validate.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        default="auto",
        help="log format on stderr (default: auto)",
    )
    validate.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    down = commands.add_parser("down", parents=[common], help="stop the compose project")
    down.add_argument("--volumes", action="store_true", help="also remove named volumes")
    return parser


def _step_list(text: str) -> list[str]:
    # Empty names are kept, for `_selected_steps` to refuse: `--only ,` must not mean "all".
    return [part.strip() for part in text.split(",")]


def main(argv: Sequence[str] | None = None, *, stop: StopToken | None = None) -> int:
    """Run the CLI; return its exit code. Leaves no global state behind for in-process callers.

    `stop`: a token that may already hold a signal received while starting up.
    """
    stop = stop or StopToken()
    # Every byte the CLI prints, logs included, goes through secret redaction; and a stream
    # that can no longer be written (its reader went away) is dropped, never the run's end.
    stdout, stderr = sys.stdout, sys.stderr
    secrets = Secrets()
    out, err = RedactingStream(stdout, secrets), RedactingStream(stderr, secrets)
    sys.stdout, sys.stderr = out, err
    try:
        args = build_parser().parse_args(argv)
    except BaseException:  # --help, a usage error (SystemExit): printed, through the wrappers
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = stdout, stderr
        raise
    caller_logging = structlog.get_config() if structlog.is_configured() else None
    handlers = install_handlers(stop) if _main_thread() else {}
    # A plan file is told first: it is JSON, which a YAML reader would also take.
    fleet = (
        args.command not in {"schema", "validate"}
        and not is_plan_file(args.state)
        and is_fleet_file(args.state)
    )
    view = None if fleet else _live_view(args, secrets)
    try:
        _configure_logging(
            getattr(args, "log_format", "auto"),
            verbose=getattr(args, "verbose", False),
            view=view,
        )
        try:
            if fleet:
                return _run_fleet(args, stop, secrets)
            if args.command == "validate":
                return _validate(args, stop, secrets)
            return _run(args, stop, secrets, view)
        except ReconcilerError as error:
            _report_error(error, secrets)
            return _exit_code(error)
        except OSError as error:  # a file the library does not name: the file and the reason
            _report_error(ApplyError(os_error_text(error)), secrets)
            return EXIT_FAILED
        except Exception as error:
            _report_error(InternalError(error, traceback.format_exc()), secrets)
            return EXIT_FAILED
    finally:
        if view is not None:
            view.stop()  # idempotent: the terminal is given back on every way out
        _note_lost_output(out, err)
        sys.stdout, sys.stderr = stdout, stderr
        restore_handlers(handlers)
        if caller_logging is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**caller_logging)


def _note_lost_output(out: RedactingStream, err: RedactingStream) -> None:
    """Flush both streams, then say once, on stderr if it still takes it, that stdout could not
    be written (a lost stderr has no place left to be told: the report says it, if any)."""
    out.flush()  # stdout into a pipe is block-buffered: a gone reader shows only now
    err.flush()
    if out.lost is not None and err.lost is None and structlog.is_configured():
        structlog.get_logger("reconciler.cli.main").warning(
            "stdout could not be written; what the run printed there since was dropped",
            reason=_stream_reason(out.lost),
            since=_clock_time(out.lost_at),
        )


def _lost_streams() -> list[tuple[str, RedactingStream]]:
    """The CLI's streams that could no longer be written (flushed first, to find out)."""
    lost: list[tuple[str, RedactingStream]] = []
    for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        if isinstance(stream, RedactingStream):
            stream.flush()
            if stream.lost is not None:
                lost.append((name, stream))
    return lost


def _stream_reason(error: OSError) -> str:
    """Why a stream could not be written, in words (EPIPE: its reader had gone)."""
    if isinstance(error, BrokenPipeError):
        return "broken pipe: its reader had gone"
    return os_error_text(error)


def _clock_time(when: float | None) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(when))


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
    from reconciler.cli.live import LiveView, Progress, make_console  # noqa: PLC0415 - live only

    stream = sys.stderr if args.json else sys.stdout
    # Printed above the view: warnings and errors (the view shows the rest), or all with -v.
    level = logging.DEBUG if args.verbose else logging.WARNING
    console = make_console(stream, force=progress == "live")
    return LiveView(console, Progress(redact=secrets.redact), level=level)


def _run(
    args: argparse.Namespace, stop: StopToken, secrets: Secrets, view: LiveView | None = None
) -> int:
    if args.command == "schema":
        print(json.dumps(fleet_schema() if args.fleet else state_schema(), indent=2))
        return EXIT_OK
    if args.target:
        raise InputError(
            "--target is for a fleet file (one with a top-level `fleet:` key)",
            Location(args.state),
        )
    if is_plan_file(args.state):
        return _apply_plan_file(args, stop, secrets, view)
    state = _with_engine(load_state(args.state), args.engine)
    if args.command == "down":
        reconcile.down(state, volumes=args.volumes, secrets=secrets)
        print(
            f"{state.name}: compose project stopped"
            + (" (volumes removed)" if args.volumes else "")
        )
        return EXIT_OK
    steps = _selected_steps(args)
    baseline = _load_baseline(args.baseline)
    inputs = _inputs(args, state)
    _check_outputs(args, inputs)
    if args.command == "plan":
        if args.out is not None and args.engine is not None:
            raise InputError(
                "--engine cannot be given with --out: a saved plan is applied to the state "
                "file's own engine; set `engine:` in the state instead"
            )
        adapter = reconcile.make_adapter(state, stop=stop, secrets=secrets)
        if args.out is not None:
            return _save_plan(args, state, adapter, secrets)
        state_plan = reconcile.plan(state, steps=steps, adapter=adapter, secrets=secrets)
        comparison = (
            reconcile.compare_observed(state, baseline, adapter=adapter)
            if baseline is not None
            else None
        )
        return _plan(state_plan, comparison, as_json=args.json)
    _check_lock_timeout(args.lock_timeout)
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
            baseline=baseline,
            measure=_measures(args),
        )
    _write_reports(state.name, result, secrets, args, inputs, baseline=baseline)
    return _apply(result, secrets, as_json=args.json)


def _validate(args: argparse.Namespace, stop: StopToken, secrets: Secrets) -> int:
    """`validate FILE`: a state, fleet or plan file checked with no engine (else InputError)."""
    checked = validate(args.state, secrets=secrets, stop=stop)
    print(json.dumps(checked.to_dict(), indent=2) if args.json else printable(checked.describe()))
    return EXIT_OK


def _selected_steps(args: argparse.Namespace) -> tuple[Step, ...]:
    """The steps of `--only`/`--skip`; InputError for an empty name, a list naming nothing, an
    unknown step, or a selection that leaves no step."""
    for option, names in (("--only", args.only), ("--skip", args.skip)):
        if names and not any(names):
            raise InputError(
                f"{option} names no step; give one or more of: "
                + ", ".join(reconcile.names_in_order())
            )
        if "" in names:
            raise InputError(
                f"{option} {','.join(names)!r} has an empty step name (a comma too many)"
            )
    return reconcile.select_steps(args.only, args.skip)


# The outputs a run writes: (option, attribute, kind of file).
_OUTPUTS = (
    ("--out", "out", PLAN_FILE),
    ("--report", "report", "report"),
    ("--junit", "junit", "JUnit report"),
    ("--save-result", "save_result", "result"),
)


def _inputs(args: argparse.Namespace, state: State | None, *also: Path | None) -> tuple[Path, ...]:
    """The files this run reads, which none of its outputs may replace: the state's own
    (`State.input_files`), the state file as given, `--baseline`, and `also` (a plan file)."""
    paths = [args.state, *(state.input_files() if state is not None else ()), *also]
    paths.append(getattr(args, "baseline", None))
    return tuple(path for path in paths if path is not None)


def _check_outputs(args: argparse.Namespace, inputs: Sequence[Path]) -> None:
    """Before anything changes, every output path given can be written by `write_atomic`: a
    regular file or none yet, in a writable directory, not a symlink, not one of `inputs`, and
    no two options naming one file. InputError (exit 3) naming the option otherwise."""
    seen: dict[Path, str] = {}
    for option, attribute, kind in _OUTPUTS:
        path = getattr(args, attribute, None)
        if path is None:
            continue
        try:
            check_output(path, kind, inputs=inputs)
        except InputError as error:
            raise InputError(f"{option}: {error.message}", error.location) from None
        key = Path(os.path.abspath(path))
        if key in seen:
            raise InputError(f"{seen[key]} and {option} name the same file", Location(path))
        seen[key] = option


def _run_fleet(args: argparse.Namespace, stop: StopToken, secrets: Secrets) -> int:
    """plan, apply or down of a fleet file: every target (or those of `--target`)."""
    _refuse_with_fleet(args)
    the_fleet = load_fleet(args.state).select(args.target)
    if args.command == "down":
        return _down_fleet(the_fleet, args, secrets)
    steps = _selected_steps(args)
    if args.command == "plan":
        plans = plan_fleet(the_fleet, steps=steps, stop=stop, secrets=secrets)
        _print_fleet_plan(plans, secrets, as_json=args.json)
        return plans.exit_code
    _check_lock_timeout(args.lock_timeout)
    printing = threading.Lock()

    def on_done(outcome: TargetResult) -> None:
        """Print a finished target's whole block at once: parallel targets never interleave."""
        errors = ""
        if outcome.result is not None and outcome.result.error is not None:
            errors = _error_text(outcome.result.error, secrets, target=outcome.name)
        with printing:
            if not args.json:
                sys.stdout.write(_target_block(outcome))
                sys.stdout.flush()
            sys.stderr.write(errors)
            sys.stderr.flush()

    result = apply_fleet(
        the_fleet,
        steps=steps,
        rollback_on_failure=args.rollback_on_failure,
        stop=stop,
        lock_timeout=args.lock_timeout,
        secrets=secrets,
        on_done=on_done,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(_fleet_recap(result), end="")
    return result.exit_code


def _refuse_with_fleet(args: argparse.Namespace) -> None:
    """Options that have no meaning for a fleet (yet) are bad input, not silently ignored."""
    where = Location(args.state)
    if args.engine is not None:
        raise InputError(
            "--engine cannot be given with a fleet file: each target names its engine "
            "(targets.NAME.engine)",
            where,
        )
    given = [
        option
        for option, value in (
            ("--out", getattr(args, "out", None)),
            ("--baseline", getattr(args, "baseline", None)),
            ("--report", getattr(args, "report", None)),
            ("--junit", getattr(args, "junit", None)),
            ("--save-result", getattr(args, "save_result", None)),
        )
        if value is not None
    ]
    if getattr(args, "progress", "auto") == "live":
        given.append("--progress live")
    if given:
        raise InputError(
            f"{', '.join(given)} cannot be given with a fleet file (not supported for fleets yet)",
            where,
        )


def _header(name: str, engine: str) -> str:
    return f"=== {name} ({engine}) ===\n"


def _print_fleet_plan(plans: FleetPlan, secrets: Secrets, *, as_json: bool) -> None:
    for target in plans.targets:
        if target.error is not None:
            sys.stderr.write(_error_text(target.error, secrets, target=target.name))
    if as_json:
        print(json.dumps(plans.to_dict(), indent=2))
        return
    for target in plans.targets:
        out = io.StringIO()
        out.write(_header(target.name, target.engine))
        if target.error is not None:
            print(f"FAILED: {printable(str(target.error))}", file=out)
        else:
            _print_plan(target.plan, out)
            print(_plan_total(target.plan), file=out)
        sys.stdout.write(out.getvalue())
    summary = plans.to_dict()["summary"]
    count = summary["targets"]
    if plans.exit_code == EXIT_OK:
        print(f"Fleet {plans.fleet}: in sync on all {count} targets ({summary['ok']} ok).")
        return
    failed = f", {summary['failed']} failed" if summary["failed"] else ""
    print(
        f"Fleet {plans.fleet}: {summary['changes']} to change on {summary['with_changes']} of "
        f"{count} targets, {summary['ok']} ok{failed}."
    )


def _target_block(outcome: TargetResult) -> str:
    head = _header(outcome.name, outcome.engine)
    if outcome.result is None:
        return f"{head}skipped: {printable(outcome.skipped)}\n"
    counts = _counts_line(outcome.result.counts)
    return f"{head}{_result_text(outcome.result)}{counts}\n"


def _fleet_recap(result: FleetResult) -> str:
    """One line per target, then the fleet's totals."""
    width = max(len(target.name) for target in result.targets)
    lines = [f"Fleet {result.fleet} recap:"]
    for target in result.targets:
        counts = target.result.counts if target.result is not None else None
        detail = target.skipped if counts is None else _counts_line(counts)
        lines.append(f"  {target.name:<{width}}  {target.status:<8} {detail}")
    if result.succeeded and not result.changed:
        lines.append("No changes: already in the declared state on every target.")
    lines.append(
        f"fleet {result.fleet}: targets={len(result.targets)} {_counts_line(result.counts)}"
    )
    return "\n".join(lines) + "\n"


def _down_fleet(the_fleet: Fleet, args: argparse.Namespace, secrets: Secrets) -> int:
    """`down` of every target, last wave first (the reverse of the apply order)."""
    for wave in reversed(the_fleet.waves):
        for name in reversed(wave):
            target = the_fleet.targets[name]
            try:
                reconcile.down(target.state, volumes=args.volumes, secrets=secrets)
            except ReconcilerError as error:
                sys.stderr.write(_error_text(error, secrets, target=name))
                return _exit_code(error)
            stopped = " (volumes removed)" if args.volumes else ""
            print(
                f"{name}: compose project {target.state.name} stopped on {target.engine}{stopped}"
            )
    return EXIT_OK


def _with_engine(state: State, engine: str | None) -> State:
    """The state targeting `--engine` when given (validated as `engine:` is), else as loaded."""
    if engine is None:
        return state
    try:
        parsed = parse_engine(engine)
    except ValueError as error:
        raise InputError(f"--engine: {error}") from None
    return state.model_copy(update={"engine": str(parsed)})


def _check_lock_timeout(seconds: float) -> None:
    # float() reads "nan" and "inf", and NaN fails every comparison: test finiteness first.
    if not (math.isfinite(seconds) and 0 <= seconds <= reconcile.MAX_LOCK_TIMEOUT):
        raise InputError(
            f"--lock-timeout must be a number of seconds from 0 to "
            f"{reconcile.MAX_LOCK_TIMEOUT:g}, not {seconds:g}"
        )


def _save_plan(
    args: argparse.Namespace, state: State, adapter: DockerAdapter, secrets: Secrets
) -> int:
    """`plan --out`: print the plan as `plan` does, save it, and say where."""
    the_plan = reconcile.save_plan(
        state,
        args.out,
        only=args.only,
        skip=args.skip,
        adapter=adapter,
        secrets=secrets,
        given=args.state,
    )
    code = _plan(the_plan, None, as_json=args.json)
    out = printable(str(args.out))
    print(
        f"Saved the plan to {out}; apply exactly it with: python -m reconciler apply {out}",
        file=sys.stderr if args.json else sys.stdout,
    )
    return code


def _apply_plan_file(
    args: argparse.Namespace, stop: StopToken, secrets: Secrets, view: LiveView | None
) -> int:
    """`apply PLANFILE`: apply exactly the saved plan, or refuse (exit 1) if it is stale."""
    if args.command != "apply":
        raise InputError(
            f"this is a plan file: give it to `apply`, not `{args.command}`", Location(args.state)
        )
    if args.engine is not None:
        raise InputError(
            "--engine cannot be given with a plan file: it applies to the engine of the state "
            "it was made for",
            Location(args.state),
        )
    if args.only or args.skip:
        raise InputError(
            "--only/--skip cannot be given with a plan file: it applies the steps it was made for",
            Location(args.state),
        )
    _check_lock_timeout(args.lock_timeout)
    saved = load_plan(args.state)
    baseline = _load_baseline(args.baseline)
    inputs = _inputs(args, _state_of(saved), saved.state_path)
    _check_outputs(args, inputs)
    if view is not None:
        view.progress.title = f"apply {saved.state_name} ({args.state})"
    with view if view is not None else contextlib.nullcontext():
        result = reconcile.apply_plan(
            saved,
            rollback_on_failure=args.rollback_on_failure,
            stop=stop,
            secrets=secrets,
            lock_timeout=args.lock_timeout,
            baseline=baseline,
            measure=_measures(args),
        )
    _write_reports(saved.state_name, result, secrets, args, inputs, baseline=baseline)
    return _apply(result, secrets, as_json=args.json)


def _measures(args: argparse.Namespace) -> bool:
    """Whether the run measures each service's runtime: when its result is saved, compared or
    reported (the measurement samples resource use for some seconds after the checks)."""
    return bool(args.save_result or args.baseline or args.report)


def _state_of(saved: SavedPlan) -> State | None:
    """The state a plan file was made for, for its input files; None when its file moved since
    or no longer loads (`apply_plan` then refuses it, as stale or as bad input)."""
    try:
        saved.check_state_file()
        return load_state(saved.state_path)
    except (StalePlanError, InputError):
        return None


def _exit_code(error: ReconcilerError) -> int:
    """The one mapping from errors to exit codes: each error class carries its own."""
    return error.exit_code


def _write_reports(
    name: str,
    result: reconcile.ApplyResult,
    secrets: Secrets,
    args: argparse.Namespace,
    inputs: Sequence[Path],
    *,
    baseline: RunRecord | None = None,
) -> None:
    """Write `--report` (HTML for a `.html` or `.htm` path, else Markdown), `--junit` and
    `--save-result` (checked by `_check_outputs` before the run) atomically; a write that
    fails now is reported and the others still written."""
    html = args.report is not None and args.report.suffix.lower() in {".html", ".htm"}
    outputs: list[tuple[Path | None, str, Callable[[], str]]] = [
        (args.report, "report", lambda: markdown(name, result)),
        (args.junit, "JUnit report", lambda: junit_xml(name, result)),
        (args.save_result, "result", lambda: result.record(name).to_json()),
    ]
    lost = _lost_streams()
    for path, kind, render in outputs:
        if path is None:
            continue
        if kind == "report" and html:
            from reconciler.cli.report_html import html_report  # noqa: PLC0415 - plotly on use

            # Each text of the run is masked as it is placed; the embedded library is not.
            data = html_report(name, result, baseline, secrets.redact).encode("utf-8")
        else:
            text = render()
            if kind == "report" and lost:
                text += _lost_output_markdown(lost)
            data = secrets.redact(text).encode("utf-8")
        try:
            write_atomic(path, data, kind=kind, inputs=inputs)
        except ReconcilerError as error:
            _report_error(error, secrets)


def _lost_output_markdown(lost: Sequence[tuple[str, RedactingStream]]) -> str:
    """The report's note of the streams the run could no longer write (the logs, mostly)."""
    lines = ["", "## Output lost", ""]
    for name, stream in lost:
        assert stream.lost is not None
        lines.append(
            f"- {name} could not be written from {_clock_time(stream.lost_at)} on "
            f"({_stream_reason(stream.lost)}); what the run printed there since was dropped."
        )
    return "\n".join(lines) + "\n"


def _load_baseline(path: Path | None) -> RunRecord | None:
    """The saved result given with `--baseline`; the verdict's module is imported only then."""
    if path is None:
        return None
    from reconciler.reconcile.baseline import load_record  # noqa: PLC0415 - with --baseline only

    return load_record(path)


def _plan(state_plan: Plan, comparison: Comparison | None, *, as_json: bool) -> int:
    if as_json:
        data = state_plan.to_dict()
        if comparison is not None:
            data["comparison"] = comparison.to_dict()
        print(json.dumps(data, indent=2))
    else:
        _print_plan(state_plan, sys.stdout)
        if comparison is not None:
            _print_comparison(comparison)
        print(_plan_total(state_plan))
    return EXIT_OK if state_plan.empty else EXIT_CHANGES


def _plan_total(state_plan: Plan) -> str:
    if state_plan.empty:
        return f"In sync: no changes ({len(state_plan.ok)} ok)."
    return f"Plan: {len(state_plan.changes)} to change, {len(state_plan.ok)} ok."


def _print_comparison(comparison: Comparison) -> None:
    for line in comparison_lines(comparison):
        print(printable(line))


def _apply(result: reconcile.ApplyResult, secrets: Secrets, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        sys.stdout.write(_result_text(result))
    if result.error is not None:
        _report_error(result.error, secrets)
    if not as_json:
        print(_counts_line(result.counts))
    return EXIT_OK if result.error is None else _exit_code(result.error)


def _counts_line(counts: dict[str, int]) -> str:
    return " ".join(f"{key}={value}" for key, value in counts.items())


def _result_text(result: reconcile.ApplyResult) -> str:
    """What an apply did, as text: changes made, failed, checks, rollback, comparison."""
    out = io.StringIO()
    _print_plan(Plan(result.applied), out)
    if not result.changed and not result.failed and result.error is None:
        print("No changes: already in the declared state.", file=out)
    for change in result.failed:
        print(f"{_change_line(change)}  FAILED: {printable(result.failure_of(change))}", file=out)
    for check in result.checks:
        verdict = "PASS" if check.passed else "FAIL"
        shown = printable(f"{check.name}  ({check.detail}, {check.seconds:.1f} s)")
        print(f"check  {verdict}  {shown}", file=out)
        for case in check.cases:
            label = "PASS" if case.outcome == "passed" else case.outcome.upper()
            print(f"         {label:<7} {printable(_case_name(case))}", file=out)
    for line in result.rolled_back:
        print(f"rolled back: {printable(line)}", file=out)
    if result.comparison is not None:
        for line in comparison_lines(result.comparison):
            print(printable(line), file=out)
    return out.getvalue()


def _case_name(case: CaseResult) -> str:
    return f"{case.classname}.{case.name}" if case.classname else case.name


def _print_plan(the_plan: Plan, out: TextIO) -> None:
    for change in the_plan.changes:  # in apply order, as the steps planned them
        print(_change_line(change), file=out)
        if change.diff:
            # A diff shows file content: each line escaped, the CLI's newline after it.
            out.write("".join(f"    {printable(line)}\n" for line in _lines(change.diff)))


def _change_line(change: Change) -> str:
    return printable(f"{change.step:<13} {change.action:<9} {change.target}  ({change.reason})")


# What `printable` escapes: C0 controls but the newline, DEL, C1 controls, the characters that
# break or reorder lines (U+2028/9, bidirectional overrides and isolates), and a newline not
# followed by a space.
_UNPRINTABLE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\n(?! )"
)
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` safe to echo on a terminal: every control character shown as an escape (`\\x1b`,
    `\\n`), so that no value can color, move, clear or forge what the terminal shows.

    One rule for every message, whatever part of it came from a file, a path, a program's
    output or the library: a message's own further lines are indented (the library writes
    `"\\n  "` between the lines of a multi-line message: more validation errors, what still
    differs, an output tail), so a newline followed by a space is kept, and any other newline
    is a value's and shown as `\\n`. No line a value brings can then start at the left margin,
    where the CLI writes its own (`error: ...`, the counts).
    """
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _lines(text: str) -> list[str]:
    # Split at newlines only: str.splitlines would also split at \x1c, \x85 or U+2028, which
    # `printable` shows escaped instead.
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _report_error(error: ReconcilerError, secrets: Secrets) -> None:
    sys.stderr.write(_error_text(error, secrets))


def _error_text(error: ReconcilerError, secrets: Secrets, *, target: str | None = None) -> str:
    """The error's lines for stderr (`error: ...`), naming the fleet target when given; every
    part that is not the CLI's own through `printable`."""
    head = f"error: target {printable(target)}: " if target is not None else "error: "
    if isinstance(error, InternalError):
        try:
            saved = f"traceback written to {_save_traceback(error, secrets)}"
        except OSError as failure:  # a full /tmp, say: the error itself is still told
            saved = f"its traceback could not be saved: {os_error_text(failure)}"
        return f"{head}{printable(str(error))}; {printable(saved)}\n"
    text = f"{head}{printable(str(error))}\n"
    if isinstance(error, HealthTimeoutError):
        for service, diagnostics in error.diagnostics.items():
            # Docker's and the containers' own lines, each indented under its service.
            lines = "".join(f"  {printable(line)}\n" for line in _lines(diagnostics))
            text += f"--- {printable(service)}\n{lines}"
    return text


def _save_traceback(error: InternalError, secrets: Secrets) -> Path:
    """Write a bug's traceback to a file of its own, for the bug report; return its path."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept, not closed by a with block
        "w", prefix="reconciler-bug-", suffix=".txt", delete=False, encoding="utf-8"
    )
    with handle:
        handle.write(secrets.redact(error.traceback_text))
    return Path(handle.name)


def _printable_values(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A log event's text values through `printable`, for the console renderer."""
    return {
        key: printable(value) if isinstance(value, str) else value for key, value in event.items()
    }


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
        *([_printable_values] if console else []),  # JSON escapes control characters itself
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
