"""compose's config hashes of a resolved model, remembered under the digest of what made them.

A service is current when its container's `com.docker.compose.config-hash` label equals the hash
compose computes for the model now (`DockerAdapter.resolved_config_hashes`: the resolved model
fed to `docker compose config --hash` on stdin). That answer is a pure function of three
things: the model's text, the command's arguments (project name, project directory) and the
compose binary. Their digest is the key (`DockerAdapter.resolved_hashes_key`); the hashes are
kept under it in `$RECONCILER_STATE_DIR/config-hashes-PROJECT.json` (mode 0600, the last
`_KEEP` models), so a converged plan asks compose for the model alone, not for its hash too.

An entry cannot go stale: any change to the file, an env file, the environment compose
interpolates or the compose binary changes the model or the binary's identity, so the key. It
can still be wrong (edited, or written by a compose binary replaced in place with the same size
and mtime): a container labelled otherwise makes compose be asked again (`config_hashes`). An
unusable file is a warning and is rewritten (`reconciler.runtime.records`).
Nothing here is secret beyond what compose itself writes in every container's labels: the
values are compose's own hashes, and the key is a digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig, ContainerFacts
from reconciler.logs import get_logger
from reconciler.runtime import records
from reconciler.runtime.records import ConfigHashesRecord

__all__ = ["config_hashes", "hashes_path"]

_log = get_logger(__name__)
_KEEP = 8  # models remembered per project: a few tags switched back and forth


def hashes_path(project: str) -> Path:
    """Where a project's remembered config hashes live."""
    return records.directory() / f"config-hashes-{project}.json"


def config_hashes(
    adapter: DockerAdapter, config: ComposeConfig, containers: Iterable[ContainerFacts] = ()
) -> dict[str, str]:
    """Each service's config hash for `config`: remembered, else asked of compose (one call)
    and remembered. Empty when the model has no resolved text (nothing to hash).

    The memory is evidence, never authority over compose: when one of `containers` (the
    project's, as observed) carries a config-hash label other than the remembered hash of its
    service, compose is asked again and its answer replaces the entry. A wrong entry is then
    dropped by the next plan, and the observation after `compose up` (whose labels are what
    compose computed) never takes it over compose's own word. An entry that agrees with every
    container is used as is: that keeps a converged plan at one compose call.
    """
    if not config.resolved:
        return {}
    key = adapter.resolved_hashes_key(config)
    if key is None:
        return adapter.resolved_config_hashes(config)
    path = hashes_path(adapter.project_name)
    entries = _read(path)
    remembered = entries.get(key)
    disputed = _disputed(remembered or {}, config, containers)
    if remembered is not None and not disputed:
        return dict(remembered)
    if disputed:
        _log.debug("labels differ from the remembered config hashes", services=disputed)
    hashes = adapter.resolved_config_hashes(config)
    if remembered == hashes:
        return hashes  # the containers drifted, not the memory
    if remembered is not None:
        wrong = sorted(name for name in remembered if remembered[name] != hashes.get(name))
        _log.warning(
            "remembered config hashes differ from compose's; replaced",
            path=str(path),
            services=wrong,
        )
    entries.pop(key, None)
    entries[key] = hashes
    records.save(path, ConfigHashesRecord(version=1, models=dict(list(entries.items())[-_KEEP:])))
    return hashes


def _disputed(
    remembered: Mapping[str, str], config: ComposeConfig, containers: Iterable[ContainerFacts]
) -> list[str]:
    """The model's services whose container (not a one-off) is labelled otherwise than
    `remembered` says, or that `remembered` leaves out (no hash: nothing would be compared)."""
    return sorted(
        {
            container.service
            for container in containers
            if not container.oneoff
            and container.config_hash is not None
            and container.service in config.services
            and container.config_hash != remembered.get(container.service)
        }
    )


def _read(path: Path) -> dict[str, dict[str, str]]:
    """digest -> service -> hash, as remembered (empty when none or unusable: warned)."""
    record = records.load(path, ConfigHashesRecord)
    return {} if record is None else {key: dict(hashes) for key, hashes in record.models.items()}
