"""The HTML report: one self-contained file (no fetched script or style) holding the verdict,
the requirements judged, every chart with data, the checks and changes; every text of the run
masked, the embedded plotting library untouched."""

from __future__ import annotations

import random
import re

from reconciler.cli.report_html import CHARTS, html_report
from reconciler.errors import CheckFailedError
from reconciler.plans import Action, Change, Plan, Step
from reconciler.reconcile.baseline import RunRecord, compare
from reconciler.reconcile.loop import ApplyResult
from reconciler.reconcile.metrics import ServiceMetrics
from reconciler.secrets.redact import Secrets
from reconciler.state.model import CompareSpec
from reconciler.steps.checks import CheckResult

MB = 1_000_000
SECRET = "hunter2-s3cret"


def runs() -> tuple[ApplyResult, RunRecord]:
    """A canary run 200 ms slower than its baseline, with sizes, metrics and timings."""
    rng = random.Random(3)
    slow = tuple(rng.gauss(0.212, 0.003) for _ in range(60))
    check = CheckResult(
        "backtest completes", True, f"HTTP 200 token={SECRET}", 1.2, "http", latencies=slow
    )
    metrics = {
        "backend": ServiceMetrics(
            restarts=0,
            ready_seconds=4.5,
            memory_idle=(420 * MB,) * 5,
            memory_peak=480 * MB,
            cpu_idle=(0.5,) * 5,
            cpu_peak=90.0,
        )
    }
    change = Change(Step.IMAGES, "ktrdr-backend:test", Action.BUILD, "build inputs changed")
    result = ApplyResult(
        Plan((change,)),
        applied=(change,),
        checks=(check,),
        sizes={"ktrdr-backend:test": 700 * MB},
        image_ids={"ktrdr-backend:test": "sha256:1"},
        services={"backend": "ktrdr-backend:test"},
        timings={"images": 12.0, "services": 20.0, "checks": 4.0, "total": 40.0},
        metrics=metrics,
    )
    baseline = RunRecord.model_validate(
        {
            "state": "ktrdr-baseline",
            "succeeded": True,
            "checks": [
                {
                    "name": "backtest completes",
                    "passed": True,
                    "sample": {"latencies_ms": [rng.gauss(12, 2) for _ in range(60)]},
                }
            ],
            "images": {"ktrdr-backend:test": {"id": "sha256:0", "size": 2800 * MB}},
            "services": {"backend": "ktrdr-backend:test"},
            "timings": {"images": 30.0, "services": 25.0, "checks": 3.0},
            "metrics": {"backend": {"memory_idle_bytes": [900 * MB] * 5, "ready_seconds": 9.0}},
        }
    )
    spec = CompareSpec.model_validate(
        {
            "latency_p95_increase_pct": {"backtest completes": 25},
            "memory_increase_pct": {"backend": 10},
        }
    )
    comparison = compare(baseline, result.record("ktrdr-canary"), spec)
    error = CheckFailedError("baseline comparison: " + "; ".join(comparison.unmet))
    return ApplyResult(**{**vars(result), "comparison": comparison, "error": error}), baseline


def test_the_report_is_one_self_contained_file_with_the_verdict_and_every_chart() -> None:
    """The verdict (FAILED, the latency requirement failing with its numbers) comes first; each
    chart section holds a plot; plotly's code is embedded once and nothing is fetched."""
    result, baseline = runs()
    page = html_report("ktrdr-canary", result, baseline, Secrets([SECRET]).redact)
    assert page.index('id="verdict"') < page.index('id="chart-sizes"') < page.index('id="checks"')
    assert "ktrdr-canary: apply FAILED" in page
    verdict = page[: page.index('id="chart-sizes"')]
    assert '<td class="fail">FAIL</td><td>p95 ' in verdict
    assert "Mann-Whitney U p = " in verdict
    assert '<td class="pass">PASS</td><td>median 900.0 MB -&gt; 420.0 MB' in verdict
    for chart_id in CHARTS:
        section = page[page.index(f'id="{chart_id}"') :]
        section = section[: section.index("</section>")]
        assert f'id="{chart_id}-plot"' in section, f"{chart_id} has no plot"
    assert len(re.findall(r"plotly\.js v\d", page)) == 1, "the library, embedded once"
    assert not re.search(r"<script[^>]+src=", page), "no script is fetched"
    assert "<link" not in page


def test_every_text_of_the_run_is_masked_and_the_library_is_not() -> None:
    """A secret in a check's detail is masked in the page; plotly's own code stays intact."""
    result, baseline = runs()
    page = html_report("ktrdr-canary", result, baseline, Secrets([SECRET]).redact)
    assert SECRET not in page
    assert "token=" in page
    plain = html_report("ktrdr-canary", result, baseline, lambda text: text)
    start = plain.index("plotly.js v")
    assert plain[start : start + 200_000] in page, "the embedded library is passed through as is"


def test_a_run_without_baseline_or_measurements_says_what_is_missing() -> None:
    """No baseline and nothing measured: the verdict, the size chart of this run alone, and a
    line for each chart with nothing to draw."""
    check = CheckResult("health", True, "HTTP 200", 0.1, "http")
    result = ApplyResult(Plan(), checks=(check,), sizes={"web:1": 5 * MB})
    page = html_report("s", result, None, lambda text: text)
    assert "s: apply PASSED" in page
    assert 'id="chart-sizes-plot"' in page
    assert page.count("Nothing measured for this chart in this run.") == 4  # all but sizes
    assert "None: the environment was already in its declared state." in page
