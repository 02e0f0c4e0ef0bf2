"""The facts one observation gathers, as plain frozen data: what every step's `diff` reads.

`reconciler.observe` fills them (files, docker through the adapter); the step modules only read
them. Docker's own facts (containers, images, the compose model) are in `docker.facts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reconciler.docker.facts import BuildConfig, ComposeConfig, ContainerFacts, ImageFacts
from reconciler.state.model import RootfsSpec

__all__ = ["ImageSource", "MigrationStatus", "Observed"]


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
class Observed:
    """Everything observed in one pass; docker fields stay empty when docker was not asked."""

    compose_file: Path
    compose_text: str
    config: ComposeConfig | None = None
    config_hashes: dict[str, str] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] = ()
    images: dict[str, ImageFacts] = field(default_factory=dict)
    context_digests: dict[str, str] = field(default_factory=dict)
    # directory -> (digest its requirement files ask for, digest its marker records)
    wheelhouses: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    sources: dict[str, ImageSource] = field(default_factory=dict)  # images needed, in make order
    migrations: dict[str, MigrationStatus] = field(default_factory=dict)
    # image pins in force (none when compose-file is skipped: the file is followed as is)
    pins: dict[str, str] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()  # secret values seen while observing: never shown
    observed_at: float | None = None  # wall clock (epoch s) when containers were listed
