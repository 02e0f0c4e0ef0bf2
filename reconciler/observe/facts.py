"""The facts observation gathers, as plain frozen data: one shared snapshot, then each step's own.

`reconciler.observe.snapshot` takes the `Snapshot` (the compose file, and docker through the
adapter in a fixed number of calls); each step's `observe` projects its own facts type from it,
adding only its own reads, and its `diff` reads nothing else. Docker's own facts (containers,
images, the compose model) are in `docker.facts`.
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
from reconciler.observe.inputs import InputDigest
from reconciler.observe.managed_files import ObservedFile
from reconciler.state.model import RootfsSpec

__all__ = [
    "ChecksFacts",
    "ComposeFileFacts",
    "ImageSource",
    "ImagesFacts",
    "MigrationStatus",
    "MigrationsFacts",
    "Readiness",
    "ServicesFacts",
    "Snapshot",
    "StackFacts",
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


@dataclass(frozen=True)
class ComposeFileFacts:
    """The compose-file step's facts: the exact texts of the compose file and of the dotenv files
    it edits (env files, dotenv `files:`; None when missing), the process variables the compose
    and env files refer to, the secrets to mask in diffs, and the other files the state manages
    beside it, by absolute path."""

    compose_file: Path
    compose_text: str
    secrets: frozenset[str] = frozenset()
    env_texts: dict[Path, str | None] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    files: dict[str, ObservedFile] = field(default_factory=dict)


@dataclass(frozen=True)
class ImagesFacts:
    """The images step's facts: what each needed image is made from, and what exists."""

    compose_file: Path  # build paths in the compose file resolve against it
    sources: dict[str, ImageSource] = field(default_factory=dict)  # in make order
    images: dict[str, ImageFacts] = field(default_factory=dict)
    context_digests: dict[str, str] = field(default_factory=dict)  # the digest each must carry
    # directory -> (digest its requirement files ask for, digest its marker records)
    wheelhouses: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # `pull: digest` images present locally: the registry's digest for their tag (or the error)
    remote: dict[str, RemoteDigest] = field(default_factory=dict)
    # base images (`rootfs:`) the target engine lacks or has stale, as the local engine has
    # them, when the run targets another engine: copied rather than made again
    local: dict[str, ImageFacts] = field(default_factory=dict)


@dataclass(frozen=True)
class ServicesFacts:
    """The services step's facts: compose's model and hashes, the containers, the images, and
    the digests of the files compose does not hash (now, and as recorded per container)."""

    config: ComposeConfig
    config_hashes: dict[str, str] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] = ()
    images: dict[str, ImageFacts] = field(default_factory=dict)
    observed_at: float | None = None  # wall clock (epoch s) when containers were listed
    pins: dict[str, str] = field(default_factory=dict)  # image pins in force
    secret_hashes: dict[str, str] = field(default_factory=dict)  # secret name -> keyed hash now
    # container id -> secret name -> keyed hash of the value it was created with
    secret_records: dict[str, dict[str, str]] = field(default_factory=dict)
    inputs: dict[str, dict[str, InputDigest]] = field(default_factory=dict)  # service -> label
    recorded: dict[str, dict[str, str]] = field(default_factory=dict)  # container id -> label

    def config_current(self, container: ContainerFacts) -> bool:
        """The container's config-hash label is compose's hash of the current model (of its
        resolved model, env files merged: what `up` labels with on any compose version); a
        container made from another configuration has another hash."""
        wanted = self.config_hashes.get(container.service)
        return wanted is None or container.config_hash == wanted

    def changed_inputs(self, container: ContainerFacts) -> list[str]:
        """Labels of the inputs whose digest differs from the one recorded for this container
        (none when it has no record: made by someone else, it is taken as current)."""
        recorded = self.recorded.get(container.id)
        if recorded is None:
            return []
        current = self.inputs.get(container.service, {})
        return [
            label
            for label, digest in current.items()
            if label in recorded and recorded[label] != digest.digest
        ]


@dataclass(frozen=True)
class StackFacts:
    """The services step's facts in swarm mode: compose's model and config hashes (what the
    stack must run), the stack's services and tasks as Swarm has them, and the images."""

    config: ComposeConfig
    config_hashes: dict[str, str] = field(default_factory=dict)
    services: dict[str, SwarmService] = field(default_factory=dict)  # by compose service name
    tasks: tuple[SwarmTask, ...] = ()
    images: dict[str, ImageFacts] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)  # image pins in force
    prune: bool = False  # `compose.prune`: services of the stack the file dropped are removed

    def current_tasks(self, service: str) -> list[SwarmTask]:
        """The tasks Swarm wants running for `service` (desired state running), newest first."""
        found = self.services.get(service)
        if found is None:
            return []
        tasks = [t for t in self.tasks if t.service_id == found.id and t.desired_state == "running"]
        return sorted(tasks, key=lambda task: task.timestamp, reverse=True)


@dataclass(frozen=True)
class MigrationsFacts:
    """The migrations step's facts: each declared migration set's status, by name."""

    statuses: dict[str, MigrationStatus] = field(default_factory=dict)


@dataclass(frozen=True)
class ChecksFacts:
    """The checks step's facts: the images whose size budgets it measures, the containers whose
    logs it reads, and compose's model (the URLs a host command is given)."""

    images: dict[str, ImageFacts] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] = ()
    config: ComposeConfig | None = None


@dataclass(frozen=True)
class Readiness:
    """Where one service stands while waiting (a compose service's containers, or a stack
    service's tasks): ready, failed for good, or neither yet, and why, for people."""

    service: str
    ready: bool
    failed: bool
    summary: str
