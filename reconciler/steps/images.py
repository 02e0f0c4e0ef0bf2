"""images step: fill wheelhouses, make base images, build what is missing or stale, pull the rest.

Every image reconciler makes carries `io.reconciler.context-digest`, the digest of its inputs
(build context, Dockerfile, args, target and declared base images; or its rootfs spec). A tag
whose label differs is remade. `observe` adds to the snapshot's image facts the digests of
those inputs and the wheelhouses' markers (files only, no docker call); `diff` is pure; `apply`
goes through the adapter.
"""

from __future__ import annotations

from pathlib import Path

from reconciler import rootfs, wheelhouse
from reconciler.build_context import DIGEST_LABEL
from reconciler.docker.adapter import DockerAdapter
from reconciler.facts import ImagesFacts, Snapshot
from reconciler.logs import get_logger
from reconciler.observe import edited_files, wanted_digests
from reconciler.plans import Action, Change, InSync, Plan, Step
from reconciler.state import State
from reconciler.steps.contract import StepDefinition

__all__ = ["STEP", "apply", "diff", "observe"]

_log = get_logger(__name__)
WHEELHOUSE = "wheelhouse:"


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> ImagesFacts:
    """The images needed and found (from the snapshot), their input digests, the wheelhouses."""
    return ImagesFacts(
        compose_file=snapshot.compose_file,
        sources=snapshot.sources,
        images=snapshot.images,
        context_digests=wanted_digests(
            snapshot.sources, compose_file=snapshot.compose_file, edited=edited_files(state)
        ),
        wheelhouses={
            directory: (wheelhouse.wanted_digest(spec), wheelhouse.observed_digest(Path(directory)))
            for directory, spec in state.wheelhouses.items()
        },
    )


def diff(state: State, facts: ImagesFacts, earlier: Plan) -> Plan:
    """Downloads for stale wheelhouses, then a make (or pull) per missing or stale image."""
    changes: list[Change] = []
    ok: list[InSync] = []
    for directory, (wanted, have) in facts.wheelhouses.items():
        target = WHEELHOUSE + state.shown(Path(directory))
        if have == wanted:
            ok.append(InSync(Step.IMAGES, target, "wheels match the requirement files"))
        else:
            reason = "not downloaded yet" if have is None else "requirement files changed"
            changes.append(
                Change(
                    Step.IMAGES,
                    target,
                    Action.DOWNLOAD,
                    reason,
                    before=have,
                    after=wanted,
                    key=directory,
                )
            )
    for reference, source in facts.sources.items():
        image = facts.images.get(reference)
        if source.kind == "pull":
            if image is None:
                reason = f"missing locally; {source.first_user} has no build"
                changes.append(Change(Step.IMAGES, reference, Action.PULL, reason))
            else:
                ok.append(InSync(Step.IMAGES, reference, f"present ({_short_id(image.id)})"))
            continue
        wanted = facts.context_digests[reference]
        action = Action.BUILD if source.kind == "build" else Action.IMPORT
        have = image.labels.get(DIGEST_LABEL) if image else None
        if image is None:
            reason = f"missing; made from {_how(source.kind, source.first_user)}"
            changes.append(Change(Step.IMAGES, reference, action, reason, after=wanted))
        elif have != wanted:
            changed = "build inputs changed" if source.kind == "build" else "rootfs spec changed"
            reason = changed if have else "not made by reconciler (no input digest label)"
            changes.append(
                Change(Step.IMAGES, reference, action, reason, before=have, after=wanted)
            )
        else:
            ok.append(InSync(Step.IMAGES, reference, f"up to date ({_short_id(image.id)})"))
    return Plan(tuple(changes), tuple(ok))


def apply(
    changes: tuple[Change, ...], state: State, facts: ImagesFacts, adapter: DockerAdapter
) -> tuple[Change, ...]:
    """Download wheelhouses, then make images in plan order (base images first)."""
    for change in changes:
        adapter.stop.check(f"{change.action} {change.target}")
        if change.action is Action.DOWNLOAD:
            wheelhouse.download(Path(change.key), state.wheelhouses[change.key], adapter.stop)
    # Inputs may have changed since observing (a wheelhouse was just filled): digest them now,
    # so the label says what the image was really made from.
    digests = wanted_digests(
        facts.sources, compose_file=facts.compose_file, edited=edited_files(state)
    )
    for change in changes:
        source = facts.sources.get(change.key)
        if source is None:
            continue
        reference = change.key
        adapter.stop.check(f"{change.action} {reference}")
        labels = {DIGEST_LABEL: digests[reference]} if reference in digests else {}
        if change.action is Action.PULL:
            _log.info("pulling image", image=reference)
            adapter.pull(reference)
        elif source.rootfs is not None:
            _log.info("making base image", image=reference)
            rootfs.build_rootfs_image(reference, source.rootfs, labels, adapter)
        elif source.build is not None:
            _log.info("building image", image=reference, context=str(source.build.context))
            adapter.build(reference, source.build, labels)
    return changes


def _how(kind: str, user: str) -> str:
    return f"its rootfs spec ({user})" if kind == "rootfs" else f"{user}'s build"


def _short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


STEP = StepDefinition(Step.IMAGES, observe, diff, apply)
