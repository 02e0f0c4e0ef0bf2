"""Benchmark: a fleet of two targets applied serially against in one wave, same run.

Two copies of the e2e stack, one on the local engine and one on a second engine over SSH
(deploy/engine/ensure-remote-engine.sh, started here and stopped after unless
RTEST_KEEP_REMOTE_ENGINE=1), applied by one `reconciler apply FLEET` from the same cold start
each time (both stacks down, their images removed, the build cache warm). Prints the median of
each and the ratio of the wave against the serial baseline.
Run: .venv/bin/python -m tests.benchmarks.bench_fleet [RUNS]   (default 3)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import REMOTE_ENGINE_SCRIPT, make_stack, remove_stack, run_cli
from tests.reconcile.test_fleet import Pair, reset


def start_remote_engine() -> str:
    """The ssh:// URL the remote engine's script prints last."""
    started = subprocess.run(
        ["bash", str(REMOTE_ENGINE_SCRIPT)], capture_output=True, text=True, check=False
    )
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith("ssh://"):
        sys.exit(f"{REMOTE_ENGINE_SCRIPT.name} failed: {started.stderr.strip()[-1500:]}")
    return lines[-1]


def timed_apply(pair: Pair, fleet_file: Path) -> float:
    reset(pair)
    started = time.monotonic()
    done = run_cli("apply", fleet_file)
    seconds = time.monotonic() - started
    if done.returncode != 0 or "fleet e2e: targets=2" not in done.stdout:
        sys.exit(f"apply {fleet_file.name} failed (exit {done.returncode}):\n{done.stderr}")
    return seconds


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    url = start_remote_engine()
    try:
        with tempfile.TemporaryDirectory() as temp:
            directory = Path(temp)
            pair = Pair(
                directory,
                make_stack(directory / "local", port=18091),
                make_stack(directory / "remote", port=18092),
                url,
            )
            try:
                serial = pair.write(name="serial.yaml")
                wave = pair.write("[[local, remote]]", "wave.yaml")
                warm = run_cli("apply", serial)  # the build cache of both engines
                if warm.returncode != 0:
                    sys.exit(f"warm-up apply failed:\n{warm.stderr}")
                times: dict[str, list[float]] = {"serial": [], "one wave": []}
                for _ in range(runs):
                    times["serial"].append(timed_apply(pair, serial))
                    times["one wave"].append(timed_apply(pair, wave))
            finally:
                reset(pair)
                remove_stack(pair.local)
    finally:
        if os.environ.get("RTEST_KEEP_REMOTE_ENGINE") != "1":
            subprocess.run(
                ["bash", str(REMOTE_ENGINE_SCRIPT), "--stop"], capture_output=True, check=False
            )
    serial_s = statistics.median(times["serial"])
    wave_s = statistics.median(times["one wave"])
    print(f"fleet of two targets (local + ssh engine) from a cold start, median of {runs}")
    print(f"  serial (baseline): {serial_s:.1f} s  ratio 1.00")
    print(f"  one wave:          {wave_s:.1f} s  ratio {wave_s / serial_s:.2f}")
    print(f"  runs: {json.dumps({k: [round(v, 1) for v in vs] for k, vs in times.items()})}")


if __name__ == "__main__":
    main()
