"""Reading the JUnit XML a host command wrote, as test cases for this run's own reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from reconciler.errors import InputError
from reconciler.runtime.files import read_bytes
from reconciler.steps.contract import CaseResult

__all__ = ["CaseResult", "JUnitError", "read_cases"]

_MAX_BYTES = 20_000_000
_OUTCOMES = ("failure", "error", "skipped")


class JUnitError(Exception):
    """The JUnit file is missing, too large or not JUnit XML."""


def read_cases(path: Path) -> tuple[CaseResult, ...]:
    """Every <testcase> of a JUnit file (one <testsuite> or a <testsuites> of them)."""
    try:
        data = read_bytes(path, "JUnit file", cap=_MAX_BYTES)
    except FileNotFoundError:
        raise JUnitError(f"the command wrote no JUnit file at {path}") from None
    except InputError as error:
        raise JUnitError(str(error)) from None
    try:
        root = ET.fromstring(data)  # noqa: S314 - the team's own test output, size-bounded
    except ET.ParseError as error:
        raise JUnitError(f"{path} is not XML: {error}") from None
    if root.tag not in {"testsuite", "testsuites"}:
        raise JUnitError(f"{path}: root element <{root.tag}>, wanted <testsuite(s)>")
    return tuple(_case(element) for element in root.iter("testcase"))


def _case(element: ET.Element) -> CaseResult:
    out = element.find("system-out")
    outcome, detail = "passed", ((out.text or "").strip()[:300] if out is not None else "")
    for kind in _OUTCOMES:
        found = element.find(kind)
        if found is not None:
            outcome = kind
            detail = (found.get("message") or found.text or "").strip()
            break
    try:
        seconds = float(element.get("time") or 0)
    except ValueError:
        seconds = 0.0
    return CaseResult(
        element.get("classname") or "", element.get("name") or "?", outcome, detail, seconds
    )
