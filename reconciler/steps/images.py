"""images step: build tags that are missing or whose build inputs changed; pull the rest.

A built image carries `io.reconciler.context-digest`; a tag whose label differs from the
digest of its current build inputs is rebuilt. `diff` is pure; `apply` goes through the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from reconciler.build_context import DIGEST_LABEL
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import BuildConfig, ComposeConfig
from reconciler.errors import InputError, Location
from reconciler.observe import Observed, desired_images
from reconciler.plan import Change, InSync, Plan, Step

__all__ = ["apply", "diff"]

_log = structlog.get_logger(__name__)


def diff(pins: Mapping[str, str], observed: Observed) -> Plan:
    """A build (or pull) per image reference that is missing or stale; ok rows for the rest."""
    config = observed.config
    assert config is not None, "images step needs docker observation"
    changes: list[Change] = []
    ok: list[InSync] = []
    seen: set[str] = set()
    built_by: dict[str, str] = {}
    for service, reference in desired_images(pins, config).items():
        build = config.services[service].build
        if reference in seen:
            _check_same_build(reference, service, built_by.get(reference), config, observed)
            continue
        seen.add(reference)
        if build is not None:
            built_by[reference] = service
        image = observed.images.get(reference)
        if build is None:
            if image is None:
                changes.append(
                    Change(
                        Step.IMAGES,
                        reference,
                        "pull",
                        f"missing locally; {service} has no build section",
                    )
                )
            else:
                ok.append(InSync(Step.IMAGES, reference, f"present ({_short_id(image.id)})"))
            continue
        wanted = observed.context_digests[reference]
        if image is None:
            changes.append(
                Change(
                    Step.IMAGES,
                    reference,
                    "build",
                    f"missing; built from {service}'s build section",
                    after=wanted,
                )
            )
        elif image.labels.get(DIGEST_LABEL) != wanted:
            have = image.labels.get(DIGEST_LABEL)
            reason = (
                "build inputs changed"
                if have
                else "not built by reconciler (no input digest label)"
            )
            changes.append(
                Change(Step.IMAGES, reference, "build", reason, before=have, after=wanted)
            )
        else:
            ok.append(InSync(Step.IMAGES, reference, f"up to date ({_short_id(image.id)})"))
    return Plan(tuple(changes), tuple(ok))


def apply(
    changes: tuple[Change, ...], pins: Mapping[str, str], observed: Observed, adapter: DockerAdapter
) -> None:
    """Build or pull each planned image, one at a time, in plan order."""
    config = observed.config
    assert config is not None
    builders: dict[str, BuildConfig | None] = {}
    for service, reference in desired_images(pins, config).items():
        builders.setdefault(reference, config.services[service].build)  # first one, as in diff
    for change in changes:
        if change.action == "pull":
            _log.info("pulling image", image=change.target)
            adapter.pull(change.target)
            continue
        build = builders[change.target]
        assert build is not None, "a build change always has a build section"
        assert change.after is not None, "a build change carries the wanted digest"
        _log.info("building image", image=change.target, context=str(build.context))
        adapter.build(change.target, build, {DIGEST_LABEL: change.after})


def _check_same_build(
    reference: str, service: str, first: str | None, config: ComposeConfig, observed: Observed
) -> None:
    """Two services may share an image only if they build it the same way (or not at all)."""
    build = config.services[service].build
    if build is None or first is None or build == config.services[first].build:
        return
    raise InputError(
        f"services {first!r} and {service!r} both use image {reference} but build it "
        "differently; give them distinct image names or the same build section",
        Location(observed.compose_file, key=f"services.{service}.build"),
    )


def _short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
