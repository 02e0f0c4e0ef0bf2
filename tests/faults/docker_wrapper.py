"""A `docker` put first on PATH by the fault tests: fails a chosen share of calls, then runs the real one.

Failures use the real texts of transient faults and happen before the real command runs, as a
daemon that cannot be reached would. A mutating call gets only the fault that proves nothing
ran ("Cannot connect to the Docker daemon"): reconciler never retries a mutation after any other
fault, as it may have run. Environment:
  FAULT_REAL_DOCKER  path of the real docker CLI
  FAULT_RATE         share of calls to fail, 0..1 (default 0)
  FAULT_SEED         seed, so a run is repeatable
  FAULT_DIR          directory for the call counter and the log of calls and injected faults
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import sys
from pathlib import Path

TRANSIENT = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
    'error during connect: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.41/containers/json": '
    "read unix @->/var/run/docker.sock: i/o timeout",
    "Error response from daemon: context deadline exceeded",
)

MUTATING_VERBS = frozenset({"up", "down", "build", "pull", "tag", "import", "rm"})


def main() -> None:
    directory = Path(os.environ["FAULT_DIR"])
    with (directory / "counter").open("a+") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        number = int(counter.read() or 0) + 1
        counter.seek(0)
        counter.truncate()
        counter.write(str(number))
    rng = random.Random(f"{os.environ.get('FAULT_SEED', '0')}-{number}")
    fail = rng.random() < float(os.environ.get("FAULT_RATE", "0"))
    mutating = bool(MUTATING_VERBS.intersection(sys.argv[1:]))
    message = (TRANSIENT[0] if mutating else rng.choice(TRANSIENT)) if fail else None
    with (directory / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"n": number, "argv": sys.argv[1:], "fault": message}) + "\n")
    if message is not None:
        print(message, file=sys.stderr)
        sys.exit(1)
    real = os.environ["FAULT_REAL_DOCKER"]
    os.execv(real, [real, *sys.argv[1:]])


if __name__ == "__main__":
    main()
