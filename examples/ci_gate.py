"""Library use from other tooling: a CI gate that plans, applies, and fails the job on drift.

Run: .venv/bin/python examples/ci_gate.py [STATE]   (default states/canary.yaml)
The library never configures logging; this program does, as any caller should.
"""

from __future__ import annotations

import logging
import sys

import structlog

import reconciler


def main(state_path: str = "states/canary.yaml") -> int:
    """Plan; apply when needed; exit 0 only when the environment converged."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        state = reconciler.load_state(state_path)
        plan = reconciler.plan(state)
    except reconciler.ReconcilerError as error:
        print(f"cannot plan: {error}", file=sys.stderr)
        return error.exit_code
    for change in plan.changes:
        print(f"will {change.action} {change.step} {change.target}: {change.reason}")
    if plan.empty:
        print(f"{state.name}: in sync ({len(plan.ok)} resources ok)")
        return 0
    result = reconciler.apply(state)
    if not result.succeeded:
        print(f"{state.name}: apply failed: {result.error}", file=sys.stderr)
        return 1
    print(f"{state.name}: converged, {len(result.applied)} changes applied")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
