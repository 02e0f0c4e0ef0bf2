"""The HTML report (`apply --report PATH.html`): one self-contained file, opened with no network.

The verdict on top (the outcome, what failed, each `compare:` requirement judged), then the
charts, drawn by plotly with its JavaScript embedded once: image sizes, latency distributions
of the sampled checks, memory and time to ready per service, and each step's time, the
baseline's beside this run's when there is one; then the checks and the changes.

Every text taken from the run (names, details, errors) is masked by `redact` before it is
placed, so the embedded library's own code is never passed through the masking.
plotly is imported here only, and only when an HTML report is written.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.reconcile.loop import ApplyResult

if TYPE_CHECKING:
    from reconciler.reconcile.baseline import RunRecord

__all__ = ["CHARTS", "html_report"]

_MB = 1_000_000
# The chart sections, by element id: a test finds each one drawn in the browser.
CHARTS = {
    "chart-sizes": "Image sizes",
    "chart-latency": "Latency of the sampled checks",
    "chart-memory": "Memory per service",
    "chart-ready": "Time to ready per service",
    "chart-steps": "Time per step",
}
_BASELINE, _NOW = "#8c8c8c", "#1f77b4"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.verdict { padding: 1em 1.5em; border-radius: 6px; color: white; }
.verdict.passed { background: #2e7d32; } .verdict.failed { background: #c62828; }
.verdict h1 { margin: 0 0 .3em 0; font-size: 1.6em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1.5em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.pass { color: #2e7d32; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
.inconclusive { color: #b26a00; font-weight: bold; }
section.chart { margin: 1em 0 2em 0; } .empty { color: #777; font-style: italic; }
"""


def html_report(
    name: str,
    result: ApplyResult,
    baseline: RunRecord | None,
    redact: Callable[[str], str],
) -> str:
    """The report as one HTML document."""

    def text(value: object) -> str:
        return html.escape(redact(str(value)))

    outcome = "PASSED" if result.succeeded else "FAILED"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{text(name)}: apply {outcome}</title>",
        f"<style>{_STYLE}</style></head><body>",
        *_verdict(name, result, outcome, when, text),
        *_charts(result, baseline, redact),
        *_checks(result, text),
        *_changes(result, text),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _verdict(
    name: str, result: ApplyResult, outcome: str, when: str, text: Callable[[object], str]
) -> list[str]:
    failed_checks = sum(not check.passed for check in result.checks)
    lines = [
        f'<div class="verdict {outcome.lower()}" id="verdict">',
        f"<h1>{text(name)}: apply {outcome}</h1>",
        f"<div>{when}. {len(result.applied)} changed, {len(result.plan.ok)} ok, "
        f"{len(result.failed)} failed; {len(result.checks) - failed_checks} of "
        f"{len(result.checks)} checks passed.</div>",
    ]
    if result.error is not None:
        lines.append(f"<p><strong>Error:</strong> {text(result.error)}</p>")
    lines.append("</div>")
    comparison = result.comparison
    if comparison is None:
        return lines
    lines += [
        "<h2>Against the baseline</h2>",
        f"<p>Baseline: {text(comparison.baseline_state)}, saved "
        f"{text(comparison.baseline_saved_at)}.</p>",
    ]
    if comparison.requirements:
        lines += ["<table><tr><th>requirement</th><th>on</th><th>outcome</th><th>numbers</th>"]
        for r in comparison.requirements:
            lines.append(
                f"<tr><td>{text(r.requirement)}</td><td>{text(r.subject)}</td>"
                f'<td class="{r.outcome}">{r.outcome.upper()}</td><td>{text(r.detail)}</td></tr>'
            )
        lines.append("</table>")
    if comparison.unmet:
        lines += ["<p>Requirements not met:</p><ul>"]
        lines += [f"<li>{text(line)}</li>" for line in comparison.unmet]
        lines.append("</ul>")
    if comparison.regressions:
        lines += ["<p>Regressions (passed in the baseline, fail now):</p><ul>"]
        lines += [f"<li>{text(r.name)}: {text(r.now)}</li>" for r in comparison.regressions]
        lines.append("</ul>")
    return lines


def _charts(
    result: ApplyResult, baseline: RunRecord | None, redact: Callable[[str], str]
) -> list[str]:
    import plotly.graph_objects as go  # noqa: PLC0415 - only an HTML report draws

    figures: dict[str, Any] = {
        "chart-sizes": _sizes_figure(go, result, baseline, redact),
        "chart-latency": _latency_figure(go, result, baseline, redact),
        "chart-memory": _memory_figure(go, result, baseline, redact),
        "chart-ready": _ready_figure(go, result, baseline, redact),
        "chart-steps": _steps_figure(go, result, baseline),
    }
    lines = ["<h2>Charts</h2>"]
    embedded = False
    for chart_id, title in CHARTS.items():
        figure = figures[chart_id]
        lines.append(f'<section class="chart" id="{chart_id}"><h3>{html.escape(title)}</h3>')
        if figure is None:
            lines.append('<p class="empty">Nothing measured for this chart in this run.</p>')
        else:
            figure.update_layout(
                height=360, margin={"t": 30, "b": 40, "l": 60, "r": 20}, barmode="group"
            )
            lines.append(
                figure.to_html(
                    full_html=False,
                    include_plotlyjs=not embedded,  # the library once, in the first chart
                    div_id=f"{chart_id}-plot",
                    config={"displaylogo": False, "responsive": True},
                )
            )
            embedded = True
        lines.append("</section>")
    return lines


def _pair(
    go: Any,
    labels: Sequence[str],
    before: Sequence[float | None] | None,
    now: Sequence[float | None],
    unit: str,
) -> Any:
    """Grouped bars: the baseline's values (when given) beside this run's."""
    figure = go.Figure()
    if before is not None:
        figure.add_bar(name="baseline", x=list(labels), y=list(before), marker_color=_BASELINE)
    figure.add_bar(name="this run", x=list(labels), y=list(now), marker_color=_NOW)
    figure.update_yaxes(title_text=unit)
    return figure


def _sizes_figure(
    go: Any, result: ApplyResult, baseline: RunRecord | None, redact: Callable[[str], str]
) -> Any:
    comparison = result.comparison
    if comparison is not None and comparison.sizes:
        labels = [redact(size.reference) for size in comparison.sizes]
        before = [None if s.before is None else s.before / _MB for s in comparison.sizes]
        now = [size.after / _MB for size in comparison.sizes]
        return _pair(go, labels, before, now, "MB")
    if not result.sizes:
        return None
    labels = [redact(reference) for reference in result.sizes]
    return _pair(go, labels, None, [size / _MB for size in result.sizes.values()], "MB")


def _latency_figure(
    go: Any, result: ApplyResult, baseline: RunRecord | None, redact: Callable[[str], str]
) -> Any:
    sampled = [check for check in result.checks if check.latencies]
    if not sampled:
        return None
    before = (
        {c.name: c.sample.latencies_ms for c in baseline.checks if c.sample} if baseline else {}
    )
    figure = go.Figure()
    for check in sampled:
        label = redact(check.name)
        if check.name in before:
            figure.add_trace(
                go.Box(
                    x=before[check.name],
                    name=f"{label} (baseline)",
                    marker_color=_BASELINE,
                    boxpoints="outliers",
                )
            )
        figure.add_trace(
            go.Box(
                x=[seconds * 1000 for seconds in check.latencies],
                name=f"{label} (this run)",
                marker_color=_NOW,
                boxpoints="outliers",
            )
        )
    figure.update_xaxes(title_text="ms")
    figure.update_layout(showlegend=False)
    return figure


def _memory_figure(
    go: Any, result: ApplyResult, baseline: RunRecord | None, redact: Callable[[str], str]
) -> Any:
    services = [name for name, m in result.metrics.items() if m.memory_idle]
    if not services:
        return None
    old = baseline.metrics if baseline is not None else {}
    figure = go.Figure()
    labels = [redact(name) for name in services]
    if baseline is not None:
        figure.add_bar(
            name="baseline idle",
            x=labels,
            y=[_median_mb(old[s].memory_idle_bytes) if s in old else None for s in services],
            marker_color=_BASELINE,
        )
    figure.add_bar(
        name="this run idle",
        x=labels,
        y=[_median_mb(result.metrics[s].memory_idle) for s in services],
        marker_color=_NOW,
    )
    figure.add_bar(
        name="this run peak (during the checks)",
        x=labels,
        y=[(result.metrics[s].memory_peak or 0) / _MB for s in services],
        marker_color="#aec7e8",
    )
    figure.update_yaxes(title_text="MB")
    return figure


def _ready_figure(
    go: Any, result: ApplyResult, baseline: RunRecord | None, redact: Callable[[str], str]
) -> Any:
    services = [name for name, m in result.metrics.items() if m.ready_seconds is not None]
    if not services:
        return None
    old = baseline.metrics if baseline is not None else {}
    before = (
        [old[s].ready_seconds if s in old else None for s in services]
        if baseline is not None
        else None
    )
    now = [result.metrics[s].ready_seconds for s in services]
    return _pair(go, [redact(s) for s in services], before, now, "seconds")


def _steps_figure(go: Any, result: ApplyResult, baseline: RunRecord | None) -> Any:
    steps = [step for step in result.timings if step != "total"]
    if not steps:
        return None
    before = [baseline.timings.get(s) for s in steps] if baseline is not None else None
    return _pair(go, steps, before, [result.timings[s] for s in steps], "seconds")


def _median_mb(values: Sequence[int]) -> float | None:
    return statistics.median(values) / _MB if values else None


def _checks(result: ApplyResult, text: Callable[[object], str]) -> list[str]:
    lines = ['<h2 id="checks">Checks</h2>']
    if not result.checks:
        return [*lines, '<p class="empty">No checks ran.</p>']
    lines.append("<table><tr><th>check</th><th>outcome</th><th>detail</th><th>time</th></tr>")
    for check in result.checks:
        status = "pass" if check.passed else "fail"
        lines.append(
            f'<tr><td>{text(check.name)}</td><td class="{status}">{status.upper()}</td>'
            f"<td>{text(check.detail)}</td><td>{check.seconds:.1f} s</td></tr>"
        )
    return [*lines, "</table>"]


def _changes(result: ApplyResult, text: Callable[[object], str]) -> list[str]:
    lines = ['<h2 id="changes">Changes</h2>']
    if not result.applied and not result.failed:
        return [*lines, "<p>None: the environment was already in its declared state.</p>"]
    lines.append(
        "<table><tr><th>step</th><th>action</th><th>target</th><th>reason</th><th>result</th></tr>"
    )
    rows = [(c, "done") for c in result.applied] + [(c, "FAILED") for c in result.failed]
    for change, done in rows:
        lines.append(
            f"<tr><td>{text(change.step)}</td><td>{text(change.action)}</td>"
            f"<td>{text(change.target)}</td><td>{text(change.reason)}</td><td>{done}</td></tr>"
        )
    return [*lines, "</table>"]
