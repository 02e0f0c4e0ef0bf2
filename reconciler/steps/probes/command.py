"""Host command checks: a program run on the host (never through a shell); exit 0 passes.

It gets reconciler's environment, the project's name and state file, one
`RECONCILER_URL_<SERVICE>` per service publishing a port, and the check's own `env`. A JUnit
file it names is deleted first (a stale one must not count) and read after it exits.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.docker.facts import ComposeConfig
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from reconciler.state.model import CommandSpec
from reconciler.steps.probes import Failed
from reconciler.steps.probes.junit import CaseResult, JUnitError, read_cases

__all__ = ["CommandOutcome", "environment", "run"]

_TAIL_LINES = 15


@dataclass(frozen=True)
class CommandOutcome:
    """A command's verdict: its detail, its JUnit cases, and whether it passed."""

    passed: bool
    detail: str
    cases: tuple[CaseResult, ...] = ()


def environment(
    spec: CommandSpec,
    config: ComposeConfig | None,
    state_file: Path,
    engine_host: str = "127.0.0.1",
) -> dict[str, str]:
    """The command's environment: ours, the canary's URLs and names, then the check's own.

    A service's URL names `engine_host` (the target engine's host) for a port bound to all
    addresses."""
    env = dict(os.environ)
    env["RECONCILER_STATE"] = str(state_file)
    if config is not None:
        env["RECONCILER_PROJECT"] = config.project
        for name, service in config.services.items():
            if service.ports:
                key = re.sub(r"[^A-Z0-9]", "_", name.upper())
                env[f"RECONCILER_URL_{key}"] = service.ports[0].url_on(engine_host)
    env.update(spec.env)
    return env


def run(
    spec: CommandSpec, env: Mapping[str, str], timeout: float, stop: StopToken
) -> CommandOutcome:
    """Run the command once, to its end or `timeout`; a stop cuts it."""
    if spec.junit is not None:
        with contextlib.suppress(FileNotFoundError):
            spec.junit.unlink()
    try:
        done = processes.run(
            spec.argv,
            stop=stop,
            on_stop=processes.OnStop.CUT,
            timeout=timeout,
            env=env,
            cwd=spec.cwd,
        )
    except processes.ProcessTimeout as late:
        raise Failed(f"no exit within {timeout:g} s{_tail(late.stdout + late.stderr)}") from None
    except FileNotFoundError:
        raise Failed(f"cannot run {spec.argv[0]!r}: no such program") from None
    except PermissionError:
        raise Failed(f"cannot run {spec.argv[0]!r}: permission denied") from None
    cases: tuple[CaseResult, ...] = ()
    junit_problem = ""
    if spec.junit is not None:
        try:
            cases = read_cases(spec.junit)
        except JUnitError as error:
            junit_problem = str(error)
    output = done.stdout + done.stderr
    failed_cases = [case for case in cases if not case.passed]
    passed = done.returncode == 0 and not failed_cases and not junit_problem
    detail = done.ended  # `exit 1`, or `killed by signal 9 (SIGKILL)`
    if cases:
        detail += f", {len(cases) - len(failed_cases)}/{len(cases)} test cases passed"
    if failed_cases:
        detail += f" (failed: {', '.join(case.name for case in failed_cases[:5])})"
    if junit_problem:
        detail += f"; {junit_problem}"
    if not passed:
        detail += _tail(output)
    return CommandOutcome(passed, detail, cases)


def _tail(output: str) -> str:
    lines = output.rstrip().splitlines()[-_TAIL_LINES:]
    # Indented: the CLI shows a message's own lines only when they are (cli.printable).
    return ("; output tail:\n  " + "\n  ".join(lines)) if lines else "; no output"
