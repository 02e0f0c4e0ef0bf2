"""images step: fill wheelhouses, make base images, build what is missing or stale, pull the rest.

An image nothing builds is pulled by its `pull:` policy (`images.<ref>.pull`): `missing` (the
default) when it is absent; `digest` also when the registry's manifest digest for its tag is
not among the local image's RepoDigests (the tag moved); `always` at every apply.

Every image reconciler makes carries `io.reconciler.context-digest`, the digest of its inputs
(build context, Dockerfile, args, target and declared base images; or its rootfs spec). A tag
whose label differs is remade. `observe` adds to the snapshot's image facts the digests of
those inputs and the wheelhouses' markers (files only, no docker call); `diff` is pure; `apply`
goes through the adapter.

On another engine (`engine:` or --engine, not a local socket), builds run there (the docker CLI
sends the build context, wheelhouses included). A base image (`rootfs:`) the target lacks, or
has stale, is copied from the local engine when the local one carries the wanted digest
(`transfer`: docker save | docker load, with a progress line every 2 s) instead of being
debootstrapped again; `observe` asks the local engine for those only (one call).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ImageFacts, RemoteDigest, registry_host
from reconciler.errors import RegistryError
from reconciler.images import rootfs, wheelhouse
from reconciler.images.build_context import DIGEST_LABEL
from reconciler.logs import ProgressEvent, get_logger
from reconciler.observe.facts import ImageSource, Snapshot
from reconciler.observe.snapshot import edited_files, pull_policy, wanted_digests
from reconciler.plans import Action, Change, InSync, Plan, Step
from reconciler.secrets.redact import Secrets
from reconciler.state import State
from reconciler.steps.contract import StepDefinition, plain

__all__ = ["STEP", "ImagesFacts", "apply", "diff", "fingerprint", "observe"]

_log = get_logger(__name__)
WHEELHOUSE = "wheelhouse:"
_PROGRESS_EVERY = 2.0  # seconds between two progress lines of a transfer


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


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> ImagesFacts:
    """The images needed and found (from the snapshot), their input digests, the wheelhouses;
    on another engine, the local engine's copies of the base images it lacks (one call)."""
    digests = wanted_digests(
        snapshot.sources, compose_file=snapshot.compose_file, edited=edited_files(state)
    )
    lacking = [
        reference
        for reference, source in snapshot.sources.items()
        if source.rootfs is not None
        and _made_from(snapshot.images.get(reference)) != digests.get(reference)
    ]
    local = (
        adapter.images(lacking, local=True) if lacking and adapter.targets_another_engine else {}
    )
    return ImagesFacts(
        compose_file=snapshot.compose_file,
        sources=snapshot.sources,
        images=snapshot.images,
        remote=snapshot.remote,
        context_digests=digests,
        local=local,
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
            _diff_pull(state, facts, source, changes, ok)
            continue
        wanted = facts.context_digests[reference]
        action = Action.BUILD if source.kind == "build" else Action.IMPORT
        have = _made_from(image)
        copy = facts.local.get(reference)
        if copy is not None and _made_from(copy) == wanted and have != wanted:
            reason = (
                f"{'missing' if image is None else 'stale'} on the engine; the local engine has "
                f"it ({_short_id(copy.id)}, {copy.size / 2**20:.0f} MiB): docker save | load"
            )
            changes.append(
                Change(Step.IMAGES, reference, Action.TRANSFER, reason, before=have, after=wanted)
            )
        elif image is None:
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


def _diff_pull(
    state: State,
    facts: ImagesFacts,
    source: ImageSource,
    changes: list[Change],
    ok: list[InSync],
) -> None:
    """An image nothing builds, by its pull policy: `missing` pulls it when absent; `digest`
    also when its tag moved in the registry; `always` at every apply."""
    reference = source.reference
    image = facts.images.get(reference)
    policy = pull_policy(state, reference)
    if policy == "always":
        have = "missing locally" if image is None else f"present ({_short_id(image.id)})"
        reason = f"pull: always: pulled at every apply; {have}"
        changes.append(Change(Step.IMAGES, reference, Action.PULL, reason))
        return
    if image is None:
        reason = f"missing locally; {source.first_user} has no build"
        changes.append(Change(Step.IMAGES, reference, Action.PULL, reason))
        return
    if policy == "missing":
        ok.append(InSync(Step.IMAGES, reference, f"present ({_short_id(image.id)})"))
        return
    remote = facts.remote.get(reference)
    if remote is None or remote.digest is None:
        why = remote.error if remote is not None else "not read"
        raise RegistryError(
            f"images.{reference} (pull: digest): cannot read what the tag points to in "
            f"registry {registry_host(reference)}: {why}"
        )
    local = image.registry_digests(reference)
    if remote.digest in local:
        matched = _short(remote.digest)
        reason = f"present ({_short_id(image.id)}); tag matches the registry ({matched})"
        ok.append(InSync(Step.IMAGES, reference, reason))
        return
    if not local:
        reason = (
            f"the local image {_short_id(image.id)} has no digest from the registry; "
            f"the tag there points to {_short(remote.digest)}"
        )
    else:
        reason = (
            f"tag {reference} moved in the registry: "
            f"{', '.join(map(_short, local))} -> {_short(remote.digest)}"
        )
    before = ", ".join(local) or None
    changes.append(
        Change(Step.IMAGES, reference, Action.PULL, reason, before=before, after=remote.digest)
    )


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
            _log.info(ProgressEvent.PULLING_IMAGE, image=reference)
            adapter.pull(reference)
        elif change.action is Action.TRANSFER:
            _transfer(reference, facts.local[reference].size, adapter)
        elif source.rootfs is not None:
            _log.info(ProgressEvent.MAKING_BASE_IMAGE, image=reference)
            rootfs.build_rootfs_image(reference, source.rootfs, labels, adapter)
        elif source.build is not None:
            _log.info(
                ProgressEvent.BUILDING_IMAGE, image=reference, context=str(source.build.context)
            )
            adapter.build(reference, source.build, labels)
    return changes


def _made_from(image: ImageFacts | None) -> str | None:
    """The input digest an image carries (None: absent, or not made by reconciler)."""
    return image.labels.get(DIGEST_LABEL) if image is not None else None


def _transfer(reference: str, size: int, adapter: DockerAdapter) -> None:
    """Copy a base image from the local engine, saying how far it got every 2 s."""
    total = max(size, 1)
    said = [time.monotonic()]

    def progress(sent: int) -> None:
        now = time.monotonic()
        if now - said[0] >= _PROGRESS_EVERY:
            said[0] = now
            _log.info(
                ProgressEvent.TRANSFERRING_IMAGE,
                image=reference,
                sent_mib=round(sent / 2**20, 1),
                of_mib=round(total / 2**20, 1),
                percent=min(100, round(100 * sent / total)),
            )

    _log.info(
        ProgressEvent.TRANSFERRING_IMAGE, image=reference, of_mib=round(total / 2**20, 1), percent=0
    )
    started = time.monotonic()
    adapter.transfer(reference, progress)
    _log.info("transferred image", image=reference, seconds=round(time.monotonic() - started, 1))


def _how(kind: str, user: str) -> str:
    return f"its rootfs spec ({user})" if kind == "rootfs" else f"{user}'s build"


def _short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _short(digest: str) -> str:
    """`sha256:` and the first 12 hex digits of a manifest digest."""
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}"


def fingerprint(state: State, facts: ImagesFacts, secrets: Secrets) -> dict[str, object]:
    """By image reference: what it is made from, the image found (whether its input label
    matches, not the digest: it covers build args), and the registry's digest for a `pull:
    digest` one; by wheelhouse: whether it is downloaded and in sync."""
    targets: dict[str, object] = {}
    for reference, source in facts.sources.items():
        target = {
            "source": plain(source, secrets),
            "image": _fingerprint_image(
                facts.images.get(reference), facts.context_digests.get(reference), secrets
            ),
        }
        remote = facts.remote.get(reference)
        if remote is not None:  # `pull: digest`: what the tag pointed to in the registry
            target["registry"] = plain(remote, secrets)
        targets[reference] = target
    for directory, (wanted, have) in facts.wheelhouses.items():
        targets[f"wheelhouse {state.shown(Path(directory))}"] = {
            "downloaded": have is not None,
            "in_sync": have == wanted,
        }
    return targets


def _fingerprint_image(image: ImageFacts | None, wanted: str | None, secrets: Secrets) -> object:
    if image is None:
        return None
    labels = {key: value for key, value in image.labels.items() if key != DIGEST_LABEL}
    return {
        "id": image.id,
        "size": image.size,
        "labels": plain(labels, secrets),
        # The input digest covers build args (maybe secret): only whether it matches is kept.
        "inputs_current": None if wanted is None else image.labels.get(DIGEST_LABEL) == wanted,
        "repo_digests": list(image.repo_digests),
    }


STEP = StepDefinition(
    step=Step.IMAGES, observe=observe, diff=diff, fingerprint=fingerprint, apply=apply
)
