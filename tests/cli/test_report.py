"""Reports of an apply (JUnit XML and the Markdown handoff), rendered from results built here."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from reconciler.cli.report import junit_xml, markdown
from reconciler.errors import ApplyError, CheckFailedError
from reconciler.plans import Action, Change, InSync, Plan, Step
from reconciler.reconcile.loop import ApplyResult
from reconciler.steps.checks import CheckResult

PASSING = CheckResult("API health is healthy", True, 'HTTP 200: {"status": "healthy"}', 0.4)
FAILING = CheckResult("both worker types registered", False, "1 items, wanted at least 2", 90.2)
BUILD = Change(
    Step.IMAGES, "ktrdr-backend:test", Action.BUILD, "missing; made from backend's build"
)
PIN = Change(
    Step.COMPOSE_FILE, "compose.yml:services.backend.image", Action.EDIT, "image is a; pins b"
)


def suite(result: ApplyResult) -> ET.Element:
    root = ET.fromstring(junit_xml("ktrdr-canary", result))
    assert root.tag == "testsuite"
    return root


def failed_cases(root: ET.Element) -> list[str]:
    return [case.get("name", "") for case in root if case.find("failure") is not None]


def test_junit_counts_a_failing_check() -> None:
    """One failing check of two: two test cases, one failure, the check's detail as its message."""
    result = ApplyResult(
        Plan(),
        checks=(PASSING, FAILING),
        error=CheckFailedError("checks failed: both worker types registered"),
    )
    root = suite(result)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    assert failed_cases(root) == ["both worker types registered"]
    failure = root[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "1 items, wanted at least 2"
    assert root[1].get("time") == "90.200"


def test_junit_counts_every_failing_check() -> None:
    """Each failing check is one failure: the count equals the failed test cases."""
    other = CheckResult("v3_minimal backtest completes", False, "never reached completed", 180.0)
    root = suite(ApplyResult(Plan(), checks=(FAILING, PASSING, other), error=ApplyError("x")))
    assert root.get("failures") == "2"
    assert len(failed_cases(root)) == 2


def test_junit_passing_run_has_no_failures() -> None:
    """All checks passing: every case present, zero failures."""
    root = suite(ApplyResult(Plan(), applied=(BUILD,), checks=(PASSING,)))
    assert (root.get("tests"), root.get("failures")) == ("2", "0"), "the build and the check"
    assert failed_cases(root) == []


def test_junit_counts_failed_changes_with_the_error() -> None:
    """A failed change is a failing test case named by action and target, with the error."""
    error = ApplyError("ERROR: failed to solve: base image not found")
    root = suite(ApplyResult(Plan((PIN, BUILD)), applied=(PIN,), failed=(BUILD,), error=error))
    assert (root.get("tests"), root.get("failures")) == ("2", "1"), (
        "the pin passed, the build failed"
    )
    assert failed_cases(root) == ["build ktrdr-backend:test"]
    assert root[0].get("classname") == "ktrdr-canary.compose-file"
    assert root[1].get("classname") == "ktrdr-canary.images"


def test_junit_reports_an_error_with_nothing_else_failed_as_converge() -> None:
    """An error with no failed change or check still shows as one failing `converge` case."""
    root = suite(ApplyResult(Plan(), error=ApplyError("lock held by pid 42")))
    assert (root.get("tests"), root.get("failures")) == ("1", "1")
    assert failed_cases(root) == ["converge"]


def test_markdown_handoff_shows_outcome_changes_checks_and_rollback() -> None:
    """The Markdown report says FAILED, marks the failed change and check, and lists the rollback."""
    result = ApplyResult(
        Plan((PIN, BUILD), (InSync(Step.SERVICES, "db", "running, healthy"),)),
        applied=(PIN,),
        failed=(BUILD,),
        error=ApplyError("build failed"),
        checks=(PASSING, FAILING),
        rolled_back=("restored compose.yml to its previous bytes",),
    )
    text = markdown("ktrdr-canary", result)
    assert text.startswith("# ktrdr-canary: apply FAILED\n")
    assert "1 changed, 1 ok, 1 failed." in text
    assert (
        "| images | build | ktrdr-backend:test | missing; made from backend's build | FAILED |"
        in text
    )
    assert "| both worker types registered | FAIL | 1 items, wanted at least 2 | 90.2 s |" in text
    assert "| API health is healthy | PASS |" in text
    assert "## Rolled back\n\n- restored compose.yml to its previous bytes" in text


def test_markdown_of_a_converged_run_says_nothing_changed() -> None:
    """A run with no change says the environment was already in its declared state."""
    text = markdown("ktrdr-canary", ApplyResult(Plan(), checks=(PASSING,)))
    assert text.startswith("# ktrdr-canary: apply PASSED\n")
    assert "None: the environment was already in its declared state." in text
    assert "## Rolled back" not in text
