"""Reports of an apply: a Markdown handoff and JUnit XML, from an `ApplyResult`.

Pure rendering; the CLI writes the files. The Markdown report has the outcome, a per-step
timing line, the changes (each done or FAILED), the checks (with the cases of a host test
script, and the log tail of the service involved when a check fails), image sizes, the
comparison with a baseline, and what a rollback put back (or that a failed apply's changes
stay in place). JUnit has one test case per change, per migration and per check, plus each case
of a host test script's own JUnit file, so a CI system sees one combined result.
"""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from reconciler.plans import Step
from reconciler.reconcile.loop import ApplyResult

if TYPE_CHECKING:
    from reconciler.reconcile.baseline import Comparison

__all__ = ["comparison_lines", "junit_xml", "markdown"]

_MB = 1_000_000


def markdown(name: str, result: ApplyResult) -> str:
    """A milestone-handoff style report: outcome, changes, checks, image sizes, comparison."""
    outcome = "PASSED" if result.succeeded else "FAILED"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {name}: apply {outcome}", "", f"{when}. "]
    lines[-1] += (
        f"{len(result.applied)} changed, {len(result.plan.ok)} ok, {len(result.failed)} failed."
    )
    if result.timings:
        lines += ["", "Time: " + _timing_line(result.timings)]
    if result.error is not None:
        lines += ["", "Error:", "", "```", str(result.error), "```"]
    lines += ["", "## Changes", ""]
    if result.applied or result.failed:
        lines += ["| step | action | target | reason | result |", "|---|---|---|---|---|"]
        for change in result.applied:
            lines.append(_row(change.step, change.action, change.target, change.reason, "done"))
        for change in result.failed:
            lines.append(_row(change.step, change.action, change.target, change.reason, "FAILED"))
    else:
        lines.append("None: the environment was already in its declared state.")
    lines += _checks_section(result)
    if result.sizes:
        lines += ["", "## Image sizes", "", "| image | size |", "|---|---|"]
        for reference, size in sorted(result.sizes.items()):
            lines.append(_row(reference, f"{size / _MB:.0f} MB"))
    lines += _metrics_section(result)
    if result.comparison is not None:
        lines += ["", *_comparison_markdown(result.comparison)]
    lines += _rollback_section(result)
    return "\n".join(lines) + "\n"


def _metrics_section(result: ApplyResult) -> list[str]:
    """Each service's measured runtime (a run that was measured)."""
    if not result.metrics:
        return []
    lines = [
        "",
        "## Runtime",
        "",
        "| service | ready | restarts | memory idle | memory peak | CPU idle | CPU peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for service, m in result.metrics.items():
        ready = f"{m.ready_seconds:.2f} s" if m.ready_seconds is not None else "-"
        idle = f"{statistics.median(m.memory_idle) / _MB:.1f} MB" if m.memory_idle else "-"
        peak = f"{m.memory_peak / _MB:.1f} MB" if m.memory_peak is not None else "-"
        cpu_idle = f"{statistics.median(m.cpu_idle):.1f}%" if m.cpu_idle else "-"
        cpu_peak = f"{m.cpu_peak:.1f}%" if m.cpu_peak is not None else "-"
        lines.append(_row(service, ready, str(m.restarts), idle, peak, cpu_idle, cpu_peak))
    return lines


def _rollback_section(result: ApplyResult) -> list[str]:
    """What the rollback put back; or, when a failed apply had changed something and nothing
    was put back, that its changes stay in place (a report must not leave that to guess)."""
    if result.rolled_back:
        return ["", "## Rolled back", "", *[f"- {line}" for line in result.rolled_back]]
    if result.succeeded or not result.applied:
        return []
    hint = "" if result.rollback_on_failure else " (--rollback-on-failure undoes them on failure)"
    return ["", "## Not rolled back", "", f"The changes marked done above stay applied{hint}."]


def _timing_line(timings: dict[str, float]) -> str:
    parts = [f"{step} {seconds:.1f} s" for step, seconds in timings.items() if step != "total"]
    total = timings.get("total")
    return ", ".join(parts) + (f"; total {total:.1f} s" if total is not None else "")


def _checks_section(result: ApplyResult) -> list[str]:
    lines = ["", "## Checks", ""]
    if not result.checks:
        return [*lines, "No checks ran."]
    lines += ["| check | result | detail | duration |", "|---|---|---|---|"]
    for check in result.checks:
        verdict = "PASS" if check.passed else "FAIL"
        lines.append(_row(check.name, verdict, check.detail, f"{check.seconds:.1f} s"))
        for case in check.cases:
            label = "PASS" if case.outcome == "passed" else case.outcome.upper()
            title = f"↳ {case.classname}.{case.name}" if case.classname else f"↳ {case.name}"
            lines.append(_row(title, label, case.detail, f"{case.seconds:.1f} s"))
    for check in result.checks:
        if not check.passed and check.log_tail:
            lines += [
                "",
                f"### Log tail of {check.service} (check {check.name!r} failed)",
                "",
                "```",
                check.log_tail.rstrip("\n").replace("```", "'''"),
                "```",
            ]
    return lines


def _comparison_markdown(comparison: Comparison) -> list[str]:
    lines = [
        "## Comparison with the baseline",
        "",
        f"Baseline: {comparison.baseline_state}, saved {comparison.baseline_saved_at}.",
    ]
    if comparison.sizes:
        lines += [
            "",
            "| image | services | baseline | now | change | reduction |",
            "|---|---|---|---|---|---|",
        ]
        for size in comparison.sizes:
            before = (
                f"{size.before / _MB:.0f} MB ({size.before_reference})"
                if size.before is not None
                else "none"
            )
            change = f"{size.delta_mb:+.0f} MB" if size.delta_mb is not None else "new"
            reduction = f"{size.reduction_pct:.1f}%" if size.reduction_pct is not None else ""
            services = ", ".join(size.services) or "-"
            now = f"{size.after / _MB:.0f} MB"
            lines.append(_row(size.reference, services, before, now, change, reduction))
    lines += ["", "Regressions (passed in the baseline, fail now):"]
    lines += [f"- {r.name}: {r.now}" for r in comparison.regressions] or ["- none"]
    if comparison.fixed:
        lines += ["", "Fixed (failed in the baseline, pass now):"]
        lines += [f"- {name}" for name in comparison.fixed]
    if comparison.new_checks:
        lines += ["", "New checks (not in the baseline):"]
        lines += [f"- {name}" for name in comparison.new_checks]
    if comparison.not_run:
        lines += ["", "Checks of the baseline not run this time:"]
        lines += [f"- {name}" for name in comparison.not_run]
    rows = [
        (t.step, t.before, t.after)
        for t in comparison.timings
        if t.before is not None and t.after is not None
    ]
    if rows:
        lines += ["", "| step | baseline | now | change |", "|---|---|---|---|"]
        lines += [_row(step, f"{b:.1f} s", f"{a:.1f} s", f"{a - b:+.1f} s") for step, b, a in rows]
    if comparison.requirements:
        lines += ["", "| requirement | on | outcome | numbers |", "|---|---|---|---|"]
        lines += [
            _row(r.requirement, r.subject, r.outcome.upper(), r.detail)
            for r in comparison.requirements
        ]
    if comparison.unmet:
        lines += ["", "Requirements not met:"] + [f"- {line}" for line in comparison.unmet]
    return lines


def comparison_lines(comparison: Comparison) -> list[str]:
    """A comparison as short plain-text lines, for the terminal."""
    lines = [f"baseline  {comparison.baseline_state} ({comparison.baseline_saved_at})"]
    for size in comparison.sizes:
        if size.before is None:
            lines.append(f"size      {size.reference}  {size.after / _MB:.0f} MB (new)")
            continue
        lines.append(
            f"size      {size.reference}  {size.before / _MB:.0f} MB -> {size.after / _MB:.0f} MB"
            f"  ({size.delta_mb:+.0f} MB, {size.reduction_pct:.1f}% smaller)"
        )
    lines += [f"REGRESSION  {r.name}: {r.now}" for r in comparison.regressions]
    lines += [f"new check  {name}" for name in comparison.new_checks]
    lines += [
        f"{r.outcome.upper():<9} {r.requirement} {r.subject}: {r.detail}"
        for r in comparison.requirements
        if not r.failed
    ]
    lines += [f"UNMET     {line}" for line in comparison.unmet]
    if not comparison.regressions:
        lines.append("no regressions from the baseline")
    return lines


def junit_xml(name: str, result: ApplyResult) -> str:
    """JUnit XML: a test case per change, per migration, per check (and script case) and per
    `compare:` requirement on the metrics (an inconclusive one skipped)."""
    suite = ET.Element("testsuite", name=name)
    for change in result.applied:
        _case(suite, f"{name}.{change.step}", f"{change.action} {change.target}")
    for change in result.failed:
        why = result.failure_of(change)
        _case(suite, f"{name}.{change.step}", f"{change.action} {change.target}", failure=why)
    for row in result.plan.ok:
        if row.step is Step.MIGRATIONS:
            _case(suite, f"{name}.migrations", f"{row.target} at head", out=row.reason)
    for check in result.checks:
        failure = None if check.passed else check.detail
        text = (check.detail + f"\n\n{check.log_tail}") if check.log_tail else None
        _case(suite, f"{name}.checks", check.name, check.seconds, failure=failure, text=text)
        for case in check.cases:
            failed = case.outcome in {"failure", "error"}
            _case(
                suite,
                f"{name}.checks.{case.classname or check.name}",
                case.name,
                case.seconds,
                failure=case.detail if failed else None,
                skipped=case.detail if case.outcome == "skipped" else None,
            )
    for requirement in result.comparison.requirements if result.comparison else ():
        _case(
            suite,
            f"{name}.compare.{requirement.requirement}",
            requirement.subject,
            failure=requirement.detail if requirement.failed else None,
            skipped=requirement.detail if requirement.outcome == "inconclusive" else None,
            out=requirement.detail,
        )
    if result.error is not None and not result.failed and all(c.passed for c in result.checks):
        _case(suite, f"{name}.apply", "converge", failure=str(result.error))
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(sum(case.find("failure") is not None for case in suite)))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _case(
    suite: ET.Element,
    classname: str,
    name: str,
    seconds: float | None = None,
    *,
    failure: str | None = None,
    text: str | None = None,
    skipped: str | None = None,
    out: str | None = None,
) -> None:
    """One <testcase>: failed (message, and `text` or the message as its body), skipped, or
    passed with `out` as its system-out."""
    case = ET.SubElement(suite, "testcase", classname=classname, name=name)
    if seconds is not None:
        case.set("time", f"{seconds:.3f}")
    if failure is not None:
        ET.SubElement(case, "failure", message=failure[:500]).text = text or failure
    elif skipped is not None:
        ET.SubElement(case, "skipped", message=skipped[:500])
    elif out:
        ET.SubElement(case, "system-out").text = out


def _row(*cells: object) -> str:
    return (
        "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"
    )
