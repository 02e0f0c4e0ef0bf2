"""compose's config hashes of a resolved model, remembered under the digest of what made them.

A service is current when its container's `com.docker.compose.config-hash` label equals the hash
compose computes for the model now (`DockerAdapter.resolved_config_hashes`: the resolved model
fed to `docker compose config --hash` on stdin). That answer is a pure function of three
things: the model's text, the command's arguments (project name, project directory) and the
compose binary. Their digest is the key (`DockerAdapter.resolved_hashes_key`); the hashes are
kept under it in `$RECONCILER_STATE_DIR/config-hashes-PROJECT.json` (mode 0600, the last
`_KEEP` models), so a converged plan asks compose for the model alone, not for its hash too.

An entry can never be stale: any change to the file, an env file, the environment compose
interpolates or the compose binary changes the model or the binary's identity, so the key.
Nothing here is secret beyond what compose itself writes in every container's labels: the
values are compose's own hashes, and the key is a digest.
"""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig
from reconciler.errors import InputError, ReconcilerError
from reconciler.files import read_bytes, write_atomic
from reconciler.inputs import record_directory
from reconciler.logs import get_logger

__all__ = ["config_hashes", "hashes_path"]

_log = get_logger(__name__)
_VERSION = 1
_KEEP = 8  # models remembered per project: a few tags switched back and forth


def hashes_path(project: str) -> Path:
    """Where a project's remembered config hashes live."""
    return record_directory() / f"config-hashes-{project}.json"


def config_hashes(adapter: DockerAdapter, config: ComposeConfig) -> dict[str, str]:
    """Each service's config hash for `config`: remembered, else asked of compose (one call)
    and remembered. Empty when the model has no resolved text (nothing to hash)."""
    if not config.resolved:
        return {}
    key = adapter.resolved_hashes_key(config)
    path = hashes_path(adapter.project_name)
    entries = _read(path) if key else {}
    if key and key in entries:
        return dict(entries[key])
    hashes = adapter.resolved_config_hashes(config)
    if key:
        entries.pop(key, None)
        entries[key] = hashes
        _write(path, dict(list(entries.items())[-_KEEP:]))
    return hashes


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(read_bytes(path, "record"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, InputError) as error:
        _log.debug("remembered config hashes unreadable; asking compose", error=str(error))
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return {}
    models = data.get("models")
    if not isinstance(models, dict):
        return {}
    return {
        str(key): {str(k): str(v) for k, v in hashes.items()}
        for key, hashes in models.items()
        if isinstance(hashes, dict)
    }


def _write(path: Path, entries: dict[str, dict[str, str]]) -> None:
    """Replace the file atomically; a failure only costs the next plan one compose call."""
    text = json.dumps({"version": _VERSION, "models": entries}, indent=1) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, text.encode("utf-8"), kind="record", mode=0o600)
    except (OSError, ReconcilerError) as error:
        _log.debug("config hashes not remembered", path=str(path), error=str(error))
