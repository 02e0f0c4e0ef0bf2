"""Re-record the docker facts of tests/facts/ from a real engine (run by hand, never by pytest).

    .venv/bin/python tests/facts/record_mutfx.py

Needs a Docker engine with compose v2 and buildx, and /bin/busybox (busybox-static); no
registry. Makes `mutfx-busybox:1` (FROM scratch + busybox), then records:

- inspect/: `docker container inspect` of the mutfxrd project (inspect/docker-compose.yml), one
  container per readiness state, plus its `compose config --format json` and two log tails;
- scenarios/wait-healthy, scenarios/wait-unhealthy: replays of a readiness wait over those;
- scenarios/converged: every docker call of `reconciler apply` on the converged mutfx stack
  (mutfx_stack/, project mutfxrb), through fake_docker.py in record mode;
- scenarios/rollback: the same for `apply --rollback-on-failure` of state-pin-api-2.yaml with
  mutfx-busybox:1 removed, so the build of mutfxrb-api:2 fails and the compose file is restored.

Every mutfx container, network and image is removed at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FACTS = Path(__file__).resolve().parent
REPO = FACTS.parent.parent
sys.path.insert(0, str(REPO))

from tests.facts import fake_docker  # noqa: E402 - after the path is set

DOCKER = shutil.which("docker") or "docker"
BASE = "mutfx-busybox:1"


def run(*argv: str, check: bool = True) -> str:
    """Run a command; return its stdout."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def make_base(work: Path) -> None:
    """`mutfx-busybox:1`: FROM scratch, a static busybox installed in /bin."""
    context = work / "base"
    context.mkdir()
    shutil.copy2("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    run(DOCKER, "buildx", "build", "--load", "--tag", BASE, str(context))


def inspect(container: str, root: Path) -> list[dict[str, Any]]:
    """`docker container inspect` of one container, its paths written @@DIR@@."""
    text = run(DOCKER, "container", "inspect", container)
    data: list[dict[str, Any]] = json.loads(text.replace(str(root), fake_docker.ROOT_MARK))
    return data


def sample_until(container: str, root: Path, wanted: str, path: tuple[str, ...]) -> Any:
    """Inspect `container` until the field at `path` under State equals `wanted` (30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = inspect(container, root)
        node: Any = data[0]["State"]
        for part in path:
            node = (node or {}).get(part)
        if node == wanted:
            return data
        time.sleep(0.02)
    raise SystemExit(f"{container}: State.{'.'.join(path)} never became {wanted!r}")


def save(name: str, data: Any) -> None:
    (FACTS / "inspect" / name).write_text(json.dumps(data, indent=4) + "\n")


def record_readiness(work: Path) -> None:
    """Sample each mutfxrd container in the state readiness must judge."""
    root = work / "readiness"
    root.mkdir()
    shutil.copy2(FACTS / "inspect" / "docker-compose.yml", root / "docker-compose.yml")
    compose = [DOCKER, "compose", "--file", str(root / "docker-compose.yml")]
    compose += ["--project-name", "mutfxrd"]
    config = run(*compose, "config", "--format", "json")
    save("compose-config.json", json.loads(config.replace(str(root), fake_docker.ROOT_MARK)))
    run(*compose, "up", "--detach", "--no-build", "--pull", "never")
    name = "mutfxrd-{}-1".format
    save(
        "starting.json",
        sample_until(name("becomes-healthy"), root, "starting", ("Health", "Status")),
    )
    first = sample_until(name("crashloop"), root, "restarting", ("Status",))
    save("restarting.json", first)
    save(
        "healthy.json", sample_until(name("becomes-healthy"), root, "healthy", ("Health", "Status"))
    )
    save("unhealthy.json", sample_until(name("unhealthy"), root, "unhealthy", ("Health", "Status")))
    save("exited-0.json", sample_until(name("migrate"), root, "exited", ("Status",)))
    save("exited-1.json", sample_until(name("broken"), root, "exited", ("Status",)))
    save(
        "running-no-healthcheck.json",
        sample_until(name("no-healthcheck"), root, "running", ("Status",)),
    )
    count = first[0]["RestartCount"]
    deadline = time.monotonic() + 30
    while inspect(name("crashloop"), root)[0]["RestartCount"] <= count:
        if time.monotonic() > deadline:
            raise SystemExit("crashloop was not restarted again")
        time.sleep(0.05)
    save("crashloop-restarted.json", inspect(name("crashloop"), root))
    for service in ("unhealthy", "broken"):
        logs = subprocess.run(
            [DOCKER, "logs", "--tail", "30", name(service)],
            capture_output=True,
            text=True,
            check=True,
        )
        (FACTS / "inspect" / f"{service}.log").write_text(logs.stdout + logs.stderr)
    run(*compose, "down", "--volumes", "--timeout", "1")


def write_wait_scenarios() -> None:
    """Readiness waits over the recorded samples: starting twice then healthy; unhealthy."""
    for scenario, samples, logs in (
        ("wait-healthy", ["starting.json", "starting.json", "healthy.json"], None),
        ("wait-unhealthy", ["unhealthy.json"], "unhealthy.log"),
    ):
        directory = FACTS / "scenarios" / scenario
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        item = json.loads((FACTS / "inspect" / samples[0]).read_text())[0]
        (directory / "ps.stdout").write_text(item["Id"] + "\n")
        calls: list[dict[str, Any]] = [
            {
                "argv": "container ls --all --quiet --no-trunc --filter "
                "label=com.docker.compose.project=*",
                "rc": 0,
                "stdout": "ps.stdout",
            }
        ]
        calls += [
            {
                "argv": f"container inspect {item['Id']}",
                "rc": 0,
                "stdout": f"../../inspect/{sample}",
            }
            for sample in samples
        ]
        if logs:
            argv = f"logs --tail 30 {item['Id']}"
            calls.append({"argv": argv, "rc": 0, "stdout": f"../../inspect/{logs}"})
        text = json.dumps({"calls": calls}, indent=2) + "\n"
        (directory / "scenario.json").write_text(text)


def record_apply(work: Path, scenario: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `reconciler apply ARGS` in the stack with every docker call recorded to `scenario`."""
    stack = work / "stack"
    directory = FACTS / "scenarios" / scenario
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    bin_dir = work / f"bin-{scenario}"
    fake_docker.install(bin_dir, directory, root=stack, log=work / f"{scenario}.log", real=DOCKER)
    env = {**os.environ, **fake_docker.path_env(bin_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", *args, "--log-format", "json", "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=stack,
        env=env,
    )
    (directory / ".lock").unlink(missing_ok=True)
    return done


def record_stack(work: Path) -> None:
    """The converged mutfx stack, then a failing re-pin rolled back."""
    stack = work / "stack"
    shutil.copytree(FACTS / "mutfx_stack", stack)
    converge = subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", "state.yaml", "--log-format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=stack,
    )
    if converge.returncode != 0:
        raise SystemExit(f"converging the mutfx stack failed:\n{converge.stderr[-3000:]}")
    done = record_apply(work, "converged", "state.yaml")
    if done.returncode != 0:
        raise SystemExit(f"converged apply failed:\n{done.stderr[-3000:]}")
    original = (stack / "docker-compose.yml").read_bytes()
    run(DOCKER, "image", "rm", BASE)
    done = record_apply(work, "rollback", "state-pin-api-2.yaml", "--rollback-on-failure")
    if done.returncode != 1 or (stack / "docker-compose.yml").read_bytes() != original:
        raise SystemExit(
            f"the rollback run did not fail and restore:\n{done.stdout}\n{done.stderr[-3000:]}"
        )


def clean(work: Path) -> None:
    """Remove every mutfx container, network, volume and image."""
    for project in ("mutfxrd", "mutfxrb"):
        ids = run(
            DOCKER,
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={project}",
            check=False,
        ).split()
        if ids:
            run(DOCKER, "rm", "-f", "-v", *ids, check=False)
        run(DOCKER, "network", "rm", f"{project}_default", check=False)
    images = run(DOCKER, "image", "ls", "-q", "--filter", "reference=mutfx*", check=False).split()
    if images:
        run(DOCKER, "image", "rm", "-f", *sorted(set(images)), check=False)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mutfx-rec-"))
    try:
        make_base(work)
        record_readiness(work)
        write_wait_scenarios()
        record_stack(work)
    finally:
        clean(work)
    print(f"recorded into {FACTS}")


if __name__ == "__main__":
    main()
