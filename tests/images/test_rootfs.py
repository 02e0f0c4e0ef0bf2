"""A base image made on this host reaches a remote engine by `docker save | docker load`.

The state targets the second engine over ssh (deploy/engine/ensure-remote-engine.sh) and
declares a `rootfs:` base image that the local engine already has with the wanted digest (made
here by importing a busybox root filesystem with that label, as reconciler's own import
would, rather than by a minutes-long debootstrap). The plan copies it instead of making it
again, the apply prints progress, the image built FROM it is built on the remote engine, and
the next apply changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import reconciler
from reconciler.images.build_context import DIGEST_LABEL
from reconciler.images.rootfs import rootfs_digest
from tests.conftest import BUSYBOX, run_cli

pytestmark = pytest.mark.docker


def docker(url: str | None, *args: str, check: bool = True) -> str:
    argv = ["docker", *(["-H", url] if url else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def image_id(url: str | None, reference: str) -> str | None:
    out = docker(url, "image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return out.strip() or None


@pytest.fixture
def project(remote_engine: str, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A state on the remote engine: base image `NAME-base:1` (rootfs), `NAME-app:1` FROM it."""
    name = f"rtx{uuid.uuid4().hex[:8]}"
    base, app = f"{name}-base:1", f"{name}-app:1"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(
        f'FROM {base}\nCMD ["/bin/busybox", "sleep", "100000"]\n'
    )
    (tmp_path / "docker-compose.yml").write_text(
        f"services:\n  app:\n    build: app\n    image: {app}\n    stop_grace_period: 1s\n"
    )
    state_file = tmp_path / "state.yaml"
    state_file.write_text(
        f"name: {name}\nengine: {remote_engine}\n"
        f"compose: {{file: docker-compose.yml, project: {name}}}\n"
        f"images:\n  {base}:\n    rootfs: {{suite: bookworm, variant: minbase}}\n"
    )
    try:
        yield state_file, base, app
    finally:
        compose = ["compose", "-f", str(tmp_path / "docker-compose.yml"), "-p", name]
        docker(remote_engine, *compose, "down", "-t", "0", check=False)
        for url in (remote_engine, None):
            docker(url, "image", "rm", "-f", app, base, check=False)


def test_a_base_image_is_copied_once_and_built_upon(
    project: tuple[Path, str, str], remote_engine: str, tmp_path: Path
) -> None:
    """A local `rootfs:` base image is copied to the remote engine once, built upon, then left alone."""
    state_file, base, app = project
    state = reconciler.load_state(state_file)
    spec = state.images[base].rootfs
    assert spec is not None
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
    label = f"LABEL {DIGEST_LABEL}={json.dumps(rootfs_digest(spec))}"
    docker(None, "image", "import", "--change", label, str(rootfs), base)
    local_id = image_id(None, base)
    assert image_id(remote_engine, base) is None

    planned = run_cli("plan", state_file, "--json")
    assert planned.returncode == 2, planned.stderr
    actions = [(c["target"], c["action"]) for c in json.loads(planned.stdout)["changes"]]
    assert actions[:2] == [(base, "transfer"), (app, "build")], actions

    applied = run_cli("apply", state_file)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "transferring image" in applied.stdout + applied.stderr
    assert image_id(remote_engine, base) == local_id  # the same image, not another one
    assert image_id(remote_engine, app) is not None
    assert image_id(None, app) is None  # built on the remote engine only

    again = run_cli("plan", state_file, "--json")
    assert again.returncode == 0, again.stdout
    second = run_cli("apply", state_file)
    assert second.returncode == 0, second.stderr
    assert "No changes" in second.stdout
