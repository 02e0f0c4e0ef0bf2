"""Gather the actual state: the compose file's bytes, and docker facts through the adapter.

Returns frozen `Observed` data; the step modules diff it against the declared `State`. Docker
is asked only when a docker-backed step is selected, with a fixed number of calls.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.build_context import context_digest
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig, ContainerFacts, ImageFacts
from reconciler.errors import InputError, Location
from reconciler.plan import Step
from reconciler.state import State

__all__ = ["DOCKER_STEPS", "Observed", "desired_images", "observe", "read_compose_text"]

DOCKER_STEPS = frozenset({Step.IMAGES, Step.SERVICES, Step.MIGRATIONS, Step.CHECKS})


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


def read_compose_text(path: Path) -> str:
    """The compose file's exact text (BOM and line endings kept)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read compose file: {error.strerror}", Location(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise InputError("compose file is not UTF-8", Location(path, line)) from None


def desired_images(pins: Mapping[str, str], config: ComposeConfig) -> dict[str, str]:
    """service -> image reference it should run: its pin, else compose's image."""
    return {name: pins.get(name) or config.image_of(name) for name in config.services}


def observe(
    state: State, adapter: DockerAdapter, steps: Collection[Step], pins: Mapping[str, str]
) -> Observed:
    """Observe what `steps` need: the file always, docker only for docker-backed steps.

    `pins` are the image pins in force (the state's, or none when compose-file is skipped).
    """
    path = state.compose.file
    text = read_compose_text(path)
    if not DOCKER_STEPS.intersection(steps):
        return Observed(compose_file=path, compose_text=text)
    config = adapter.compose_config()
    wanted = desired_images(pins, config)
    digests: dict[str, str] = {}
    for service, reference in wanted.items():
        build = config.services[service].build
        if build is not None and reference not in digests:
            digests[reference] = context_digest(build, compose_file=path)
    return Observed(
        compose_file=path,
        compose_text=text,
        config=config,
        config_hashes=adapter.config_hashes(),
        containers=tuple(adapter.containers()),
        images=adapter.images(wanted.values()),
        context_digests=digests,
    )
