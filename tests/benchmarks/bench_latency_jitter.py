"""Benchmark: how much a sampled latency moves between identical runs, on this machine.

Converges the e2e stack, then samples its `/cgi-bin/work` endpoint (a forking CGI script, as in
the verdict's e2e test) in `RUNS` runs of 100 requests, two in flight, with nothing changed in
between. Prints each run's median and 95th percentile, and each run against the first: the
growth of both and the one-sided Mann-Whitney U p-value. It shows why the latency requirement
needs `latency_floor_ms`: the test alone finds shifts of a millisecond or two "significant"
between identical runs, and the p95 moves by some ms to tens of ms.
Run: .venv/bin/python -m tests.benchmarks.bench_latency_jitter
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import reconciler
from reconciler.runtime.interrupt import StopToken
from reconciler.state.model import HttpRequestSpec
from reconciler.stats import mann_whitney_greater, percentile
from reconciler.steps.checks import sample
from tests.conftest import make_stack, remove_stack

RUNS = 8


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        stack = make_stack(Path(temp), port=18097)
        try:
            result = reconciler.apply(reconciler.load_state(stack.state_file))
            assert result.succeeded, result.error
            url = f"http://127.0.0.1:{stack.port}/cgi-bin/work"
            spec = HttpRequestSpec.model_validate(
                {"url": url, "sample": {"requests": 100, "concurrency": 2}}
            )
            runs = []
            for _ in range(RUNS):
                latencies, errors = sample(spec, url, 60, StopToken())
                assert not errors, errors
                runs.append([seconds * 1000 for seconds in latencies])
        finally:
            remove_stack(stack)
    print(f"{RUNS} identical runs of 100 requests (2 in flight) to a forking CGI endpoint")
    for index, ms in enumerate(runs):
        print(f"  run {index}: p50 {percentile(ms, 50):6.1f} ms  p95 {percentile(ms, 95):6.1f} ms")
    first = runs[0]
    worst = 0.0
    for index, ms in enumerate(runs[1:], 1):
        growth = percentile(ms, 95) - percentile(first, 95)
        worst = max(worst, growth)
        test = mann_whitney_greater(ms, first)
        print(
            f"  run {index} vs run 0: p95 {growth:+6.1f} ms, p50 "
            f"{percentile(ms, 50) - percentile(first, 50):+5.1f} ms, Mann-Whitney U p = "
            f"{test.p_value:.3g}"
        )
    print(f"largest p95 growth against run 0: {worst:.1f} ms")


if __name__ == "__main__":
    main()
