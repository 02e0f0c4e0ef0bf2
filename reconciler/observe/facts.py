"""The facts observation gathers, as plain frozen data: the one snapshot the steps share.

`reconciler.observe.snapshot` takes the `Snapshot` (the compose file, and docker through the
adapter in a fixed number of calls); each step's `observe` projects its own facts type (defined
in the step's module, `reconciler.steps`) from it, adding only its own reads, and its `diff`
reads nothing else. Docker's own facts (containers, images, the compose model) are in
`docker.facts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    ContainerFacts,
    ImageFacts,
    RemoteDigest,
    SwarmService,
    SwarmTask,
)
from reconciler.observe.managed_files import ObservedFile
from reconciler.state.model import RootfsSpec

__all__ = [
    "ImageSource",
    "MigrationStatus",
    "Snapshot",
]


@dataclass(frozen=True)
class MigrationStatus:
    """Whether one migration set is at head; `None` when its service is not running yet."""

    up_to_date: bool | None
    detail: str


@dataclass(frozen=True)
class ImageSource:
    """How an image the environment needs comes to exist."""

    reference: str
    kind: Literal["build", "rootfs", "pull"]
    first_user: str  # the service (or `images.<ref>`) that asks for it first
    build: BuildConfig | None = None
    rootfs: RootfsSpec | None = None


@dataclass(frozen=True)
class Snapshot:
    """One batched observation that several steps share; docker fields stay empty when docker
    was not asked (no docker-backed step selected)."""

    compose_file: Path
    compose_text: str
    # compose's model as the compose-file step's planned env-file edits leave it, when that
    # step runs (`reconciler.observe.planned`): the model later steps plan from; else as observed
    config: ComposeConfig | None = None
    # service -> compose's config hash of its resolved model (as observed, before any edit):
    # what `up` writes in the label
    config_hashes: dict[str, str] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] = ()
    sources: dict[str, ImageSource] = field(default_factory=dict)  # images needed, in make order
    images: dict[str, ImageFacts] = field(default_factory=dict)  # those of `sources` found
    # what the registry says each `pull: digest` image present locally points to
    remote: dict[str, RemoteDigest] = field(default_factory=dict)
    observed_at: float | None = None  # wall clock (epoch s) when containers were listed
    # image pins in force (none when compose-file is skipped: the file is followed as is)
    pins: dict[str, str] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()  # secret values seen while observing: never shown
    # The env files compose reads and the state's dotenv `files:`, by path (None: missing), and
    # the process variables the compose file's services and the env files refer to.
    env_texts: dict[Path, str | None] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    # the state's YAML and whole `files:` as found, by absolute path (read only when compose-file
    # runs)
    files: dict[str, ObservedFile] = field(default_factory=dict)
    # The state's `secrets:` as keyed hashes (name -> HMAC, empty before the project has a key),
    # and the keyed hashes each container (by id) was recorded with (`secret_store`).
    secret_hashes: dict[str, str] = field(default_factory=dict)
    secret_records: dict[str, dict[str, str]] = field(default_factory=dict)
    # swarm mode (`compose.mode: swarm`): the stack's services and their tasks
    swarm_services: tuple[SwarmService, ...] = ()
    swarm_tasks: tuple[SwarmTask, ...] = ()
