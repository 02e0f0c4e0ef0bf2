"""Reports of an apply: a Markdown handoff table and JUnit XML, from an `ApplyResult`.

Pure rendering; the CLI writes the files. JUnit shows each check (and each failed change) as a
test case, so CI systems list them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from reconciler.reconcile import ApplyResult

__all__ = ["junit_xml", "markdown"]

_MB = 1_000_000


def markdown(name: str, result: ApplyResult) -> str:
    """A milestone-handoff style report: outcome, changes, checks, image sizes, rollback."""
    outcome = "PASSED" if result.succeeded else "FAILED"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {name}: apply {outcome}", "", f"{when}. "]
    lines[-1] += (
        f"{len(result.applied)} changed, {len(result.plan.ok)} ok, {len(result.failed)} failed."
    )
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
    lines += ["", "## Checks", ""]
    if result.checks:
        lines += ["| check | result | detail | duration |", "|---|---|---|---|"]
        for check in result.checks:
            verdict = "PASS" if check.passed else "FAIL"
            lines.append(_row(check.name, verdict, check.detail, f"{check.seconds:.1f} s"))
    else:
        lines.append("No checks ran.")
    if result.sizes:
        lines += ["", "## Image sizes", "", "| image | size |", "|---|---|"]
        for reference, size in sorted(result.sizes.items()):
            lines.append(_row(reference, f"{size / _MB:.0f} MB"))
    if result.rolled_back:
        lines += ["", "## Rolled back", ""] + [f"- {line}" for line in result.rolled_back]
    return "\n".join(lines) + "\n"


def junit_xml(name: str, result: ApplyResult) -> str:
    """JUnit XML: one test case per check and per failed change."""
    suite = ET.Element("testsuite", name=name)
    failures = 0
    for check in result.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{name}.checks",
            name=check.name,
            time=f"{check.seconds:.3f}",
        )
        if not check.passed:
            failures += 1
            ET.SubElement(case, "failure", message=check.detail[:500]).text = check.detail
    for change in result.failed:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{name}.{change.step}",
            name=f"{change.action} {change.target}",
        )
        failures += 1
        message = str(result.error) if result.error else change.reason
        ET.SubElement(case, "failure", message=message[:500]).text = message
    if (
        result.error is not None
        and not result.failed
        and not any(not c.passed for c in result.checks)
    ):
        case = ET.SubElement(suite, "testcase", classname=f"{name}.apply", name="converge")
        failures += 1
        ET.SubElement(case, "failure", message=str(result.error)[:500]).text = str(result.error)
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _row(*cells: object) -> str:
    return (
        "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"
    )
