"""Debian base images with no registry: debootstrap a root filesystem, then `docker import` it.

The image carries the digest of its spec as a label, so it is rebuilt only when the suite,
variant, package list or mirror changes. Commands are argv lists; nothing goes through a shell.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import ApplyError, InputError
from reconciler.logs import get_logger
from reconciler.runtime import processes
from reconciler.runtime.files import read_text
from reconciler.state.model import RootfsSpec

__all__ = ["build_rootfs_image", "rootfs_digest", "system_mirror"]

_log = get_logger(__name__)
_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))


def rootfs_digest(spec: RootfsSpec) -> str:
    """Digest of a rootfs spec: what makes two base images the same."""
    data = {
        "suite": spec.suite,
        "variant": spec.variant,
        "include": sorted(spec.include),
        "mirror": spec.mirror or "system",
    }
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _lines(path: Path) -> list[str]:
    """An apt sources file's lines, through the bounded reader (none when unreadable)."""
    try:
        return read_text(path, "apt sources file").splitlines()
    except (OSError, InputError):
        return []


def system_mirror() -> str:
    """The machine's own Debian mirror, read from its apt sources (never hard-coded)."""
    directory, legacy = _SOURCES
    for path in sorted(directory.glob("*.sources")) if directory.is_dir() else []:
        uri = None
        for line in _lines(path):
            if line.startswith("URIs:"):
                uri = line.split()[1]
            elif line.startswith("Suites:") and uri and "security" not in line:
                return uri.rstrip("/")
    if legacy.is_file():
        for line in _lines(legacy):
            match = re.match(r"^deb\s+(\S+)\s+\S+", line)
            if match and "security" not in line:
                return match.group(1).rstrip("/")
    raise ApplyError("no Debian mirror found in /etc/apt; set images.<ref>.rootfs.mirror")


def build_rootfs_image(
    reference: str, spec: RootfsSpec, labels: dict[str, str], adapter: DockerAdapter
) -> None:
    """debootstrap `spec` into a temporary directory and import it as `reference`."""
    if shutil.which("debootstrap") is None:
        raise ApplyError("debootstrap is not installed (Debian package debootstrap)")
    mirror = spec.mirror or system_mirror()
    with tempfile.TemporaryDirectory(prefix="reconciler-rootfs-", dir="/var/tmp") as temp:
        root = Path(temp) / "rootfs"
        argv = ["debootstrap", f"--variant={spec.variant}"]
        if spec.include:
            argv.append("--include=" + ",".join(spec.include))
        argv += [spec.suite, str(root), mirror]
        _log.info("debootstrap", image=reference, suite=spec.suite, packages=len(spec.include))
        _run(argv, "debootstrap", adapter)
        # Package caches and lists only make the image bigger.
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tarball = Path(temp) / "rootfs.tar"
        tar = ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."]
        _run(tar, "tar", adapter)
        adapter.import_rootfs(tarball, reference, labels)


def _run(argv: list[str], what: str, adapter: DockerAdapter) -> None:
    done = processes.run(argv, stop=adapter.stop, on_stop=processes.OnStop.CUT, what=what)
    if done.returncode != 0:
        # Indented: the CLI shows a message's own lines only when they are (cli.printable).
        tail = "\n  ".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ApplyError(f"{what} failed ({done.ended}):\n  {tail}")
