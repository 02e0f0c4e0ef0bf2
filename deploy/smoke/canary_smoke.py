#!/usr/bin/env python3
"""Functional tests of a running ktrdr canary (stdlib only), in the spirit of the platform's
scripts/test-canary.sh: health, workers, a backtest started and polled, client errors, training.

    python3 deploy/smoke/canary_smoke.py [--base-url http://127.0.0.1:18000] [--junit FILE]

Prints one PASS/FAIL line per check and exits 0 only when every check passed; `--junit` also
writes the results as JUnit XML. Run as a reconciler `command` check, it finds the canary's URLs
in RECONCILER_URL_BACKEND, RECONCILER_URL_BACKTEST_WORKER and RECONCILER_URL_TRAINING_WORKER.
Run it after `python -m alembic upgrade head` in the backend container.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

TERMINAL = {"completed", "failed", "cancelled"}
UNKNOWN_STRATEGY = "no_such_strategy_xyz"
Probe = Callable[[], tuple[bool, str]]


def request(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """One HTTP exchange; returns (status, parsed JSON or text). HTTP errors are answers too."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url}")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - checked above
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")


def poll(fn: Probe, deadline_s: float, every_s: float = 0.5) -> tuple[bool, str]:
    """Call fn until it reports success or the deadline passes; return its last answer."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            ok, detail = fn()
        except OSError as exc:  # URLError is an OSError: connection refused, reset, timeout
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok or time.monotonic() >= end:
            return ok, detail
        time.sleep(every_s)


def brief(body: Any, limit: int = 300) -> str:
    return json.dumps(body)[:limit]


class Smoke:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.api = args.base_url.rstrip("/") + "/api/v1"
        self.results: list[bool] = []
        self.cases: list[tuple[str, bool, str, float]] = []
        self.last = time.monotonic()
        self.backtest = {
            "strategy_name": args.strategy,
            "symbol": "EURUSD",
            "timeframe": "1h",
            "start_date": "2024-01-01",
            "end_date": "2024-03-31",
            "initial_capital": 100000,
        }

    def report(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append(ok)
        now = time.monotonic()
        self.cases.append((name, ok, detail, now - self.last))
        self.last = now
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        return ok

    def write_junit(self, path: str) -> None:
        """The results as JUnit XML: one test case per check, failures with their detail."""
        suite = ET.Element("testsuite", name="canary-functional")
        for name, ok, detail, seconds in self.cases:
            case = ET.SubElement(
                suite, "testcase", classname="canary", name=name, time=f"{seconds:.3f}"
            )
            if ok:
                ET.SubElement(case, "system-out").text = detail
            else:
                ET.SubElement(case, "failure", message=detail[:500]).text = detail
        suite.set("tests", str(len(self.cases)))
        suite.set("failures", str(sum(not ok for _, ok, _, _ in self.cases)))
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)

    def health(self) -> None:
        """Backend health: database reachable and migrations at head."""

        def probe() -> tuple[bool, str]:
            status, body = request("GET", f"{self.api}/health")
            ok = (
                status == 200
                and isinstance(body, dict)
                and body.get("status") == "healthy"
                and body.get("database") == "ok"
            )
            return ok, f"HTTP {status} {brief(body)}"

        self.report("backend health", *poll(probe, self.args.timeout))

    def worker_health(self, name: str, base_url: str, worker_type: str) -> None:
        """A worker's own /health: right role, torch importable."""

        def probe() -> tuple[bool, str]:
            status, body = request("GET", base_url.rstrip("/") + "/health")
            ok = (
                status == 200
                and isinstance(body, dict)
                and body.get("status") == "healthy"
                and body.get("worker_type") == worker_type
                and bool(body.get("torch"))
            )
            return ok, f"HTTP {status} {brief(body)}"

        self.report(name, *poll(probe, self.args.timeout))

    def workers_registered(self) -> None:
        """At least two workers, both types among the available ones."""

        def probe() -> tuple[bool, str]:
            status, body = request("GET", f"{self.api}/workers")
            if status != 200 or not isinstance(body, list):
                return False, f"HTTP {status} {str(body)[:300]}"
            types = {w.get("worker_type") for w in body if w.get("status") == "available"}
            summary = ", ".join(
                f"{w.get('worker_id')}({w.get('worker_type')}, {w.get('status')})" for w in body
            )
            ok = len(body) >= 2 and {"backtesting", "training"} <= types
            return ok, f"{len(body)} worker(s): {summary or 'none'}"

        started = time.monotonic()
        ok, detail = poll(probe, self.args.timeout, every_s=1)
        self.report("workers registered", ok, f"{detail} (after {time.monotonic() - started:.1f}s)")

    def strategies(self) -> None:
        status, body = request("GET", f"{self.api}/strategies")
        listed = body.get("strategies", []) if isinstance(body, dict) else []
        ok = status == 200 and self.args.strategy in listed
        self.report("strategies listed", ok, f"HTTP {status} {listed}")

    def backtest_completes(self) -> None:
        """A backtest is dispatched to a worker and completes with a torch-computed result."""
        status, body = request("POST", f"{self.api}/backtests/start", self.backtest)
        op_id = body.get("operation_id") if isinstance(body, dict) else None
        started_ok = status == 200 and body.get("success") is True and bool(op_id)
        if not self.report("backtest start", started_ok, f"HTTP {status} {brief(body)}"):
            return
        last: dict[str, Any] = {}

        def probe() -> tuple[bool, str]:
            status, body = request("GET", f"{self.api}/operations/{op_id}")
            data = body.get("data", {}) if isinstance(body, dict) else {}
            last.clear()
            last.update(data)
            return data.get("status") in TERMINAL, f"HTTP {status} status={data.get('status')}"

        started = time.monotonic()
        poll(probe, self.args.timeout)
        result = last.get("result") or {}
        ok = (
            last.get("status") == "completed"
            and isinstance(result.get("total_return"), int | float)
            and isinstance(result.get("trades"), int)
            and str(result.get("torch_version", "")).startswith("2.")
        )
        outcome = json.dumps(result) if result else f"error={last.get('error')}"
        took = time.monotonic() - started
        self.report(
            "backtest completed",
            ok,
            f"{op_id} {last.get('status')} in {took:.1f}s on {last.get('worker_id')}: {outcome}",
        )

    def client_errors(self) -> None:
        """Unknown strategy -> 400 naming it and the available ones; unknown operation -> 404."""
        payload = {**self.backtest, "strategy_name": UNKNOWN_STRATEGY}
        status, body = request("POST", f"{self.api}/backtests/start", payload)
        detail = str(body.get("detail")) if isinstance(body, dict) else str(body)
        ok = status == 400 and UNKNOWN_STRATEGY in detail and self.args.strategy in detail
        self.report("unknown strategy -> 400", ok, f"HTTP {status} {detail[:300]}")

        status, body = request("GET", f"{self.api}/operations/op_does_not_exist")
        self.report("unknown operation -> 404", status == 404, f"HTTP {status} {brief(body, 200)}")

    def training_run(self) -> None:
        """The training worker trains (called directly: the backend has no training route)."""
        url = self.args.training_worker_url.rstrip("/") + "/training/run"
        status, body = request("POST", url, {"epochs": 100})
        ok = status == 200 and isinstance(body, dict) and body.get("final_loss", 1e9) < 0.1
        self.report("training run", ok, f"HTTP {status} {brief(body, 200)}")

    def run(self) -> int:
        self.health()
        self.worker_health("backtest worker health", self.args.backtest_worker_url, "backtesting")
        self.worker_health("training worker health", self.args.training_worker_url, "training")
        self.workers_registered()
        self.strategies()
        self.backtest_completes()
        self.client_errors()
        self.training_run()
        passed, total = sum(self.results), len(self.results)
        verdict = "PASS" if passed == total else "FAIL"
        print(f"{verdict}  summary: {passed}/{total} checks passed")
        if self.args.junit:
            self.write_junit(self.args.junit)
        return 0 if passed == total else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    env = os.environ.get
    parser.add_argument(
        "--base-url", default=env("RECONCILER_URL_BACKEND", "http://127.0.0.1:18000")
    )
    parser.add_argument(
        "--backtest-worker-url",
        default=env("RECONCILER_URL_BACKTEST_WORKER", "http://127.0.0.1:15003"),
    )
    parser.add_argument(
        "--training-worker-url",
        default=env("RECONCILER_URL_TRAINING_WORKER", "http://127.0.0.1:15004"),
    )
    parser.add_argument("--strategy", default="v3_minimal")
    parser.add_argument("--timeout", type=float, default=30, help="deadline per waiting check (s)")
    parser.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    return Smoke(parser.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
