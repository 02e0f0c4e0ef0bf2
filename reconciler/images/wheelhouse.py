"""Wheelhouses: directories of wheels downloaded on the host for offline image builds.

A wheelhouse is in sync when its marker file holds the digest of its requirement files; it is
filled with `pip download` (argv, no shell) and the marker written last, so an interrupted
download is retried next time.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from reconciler.errors import ApplyError, InputError, Location
from reconciler.logs import ProgressEvent, get_logger
from reconciler.runtime import processes, records
from reconciler.runtime.files import SHARED_FILE_MODE, read_bytes
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.records import WheelhouseMarker
from reconciler.state.model import WheelhouseSpec

__all__ = ["MARKER", "download", "observed_digest", "wanted_digest"]

MARKER = ".reconciler-wheelhouse.json"
_log = get_logger(__name__)


def wanted_digest(spec: WheelhouseSpec) -> str:
    """Digest of what the wheelhouse must hold: its requirement files, in order."""
    digest = hashlib.sha256()
    for path in spec.requirements:
        try:
            content = read_bytes(path, "requirements file")
        except FileNotFoundError:
            raise InputError("requirements file not found", Location(path)) from None
        digest.update(path.name.encode() + b"\0" + content + b"\0")
    return "sha256:" + digest.hexdigest()


def observed_digest(directory: Path) -> str | None:
    """The digest recorded by the last complete download; None when there is none, and when
    the marker cannot be used (a warning, `reconciler.runtime.records`): the wheels are downloaded
    again and the marker rewritten."""
    marker = records.load(directory / MARKER, WheelhouseMarker)
    return None if marker is None else marker.digest


def download(directory: Path, spec: WheelhouseSpec, stop: StopToken) -> None:
    """Download every requirement file's wheels into `directory`, then record the digest.

    A stop request cuts a running download; the marker is not written, so it runs again. A
    marker that cannot be written only warns: the wheels are there, and the next run downloads
    them again.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for requirements in spec.requirements:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--dest",
            str(directory),
            "--requirement",
            str(requirements),
        ]
        _log.info(
            ProgressEvent.DOWNLOADING_WHEELS, requirements=str(requirements), into=str(directory)
        )
        done = processes.run(argv, stop=stop, on_stop=processes.OnStop.CUT, what="pip download")
        if done.returncode != 0:
            # Indented: the CLI shows a message's own lines only when they are (cli.printable).
            tail = "\n  ".join(done.stderr.strip().splitlines()[-5:])
            raise ApplyError(f"pip download for {requirements} failed ({done.ended}):\n  {tail}")
    records.save(
        directory / MARKER, WheelhouseMarker(digest=wanted_digest(spec)), mode=SHARED_FILE_MODE
    )
