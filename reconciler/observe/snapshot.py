"""Take the shared snapshot: the compose file's bytes, and docker facts through the adapter.

`observe` returns a frozen `Snapshot`; each step's own `observe` projects its facts from it
(adding only that step's own reads, such as `observe_migrations`). Docker is asked only when a
docker-backed step is selected, with a fixed number of calls whatever the number of services.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reconciler.compose.dotenv import parse_dotenv
from reconciler.compose.edit import ServiceImage, read_services
from reconciler.compose.yaml_set import pin_environment
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    ContainerFacts,
    RemoteDigest,
    SwarmService,
    SwarmTask,
)
from reconciler.errors import ApplyError, DockerError, InputError, Location, RegistryError
from reconciler.images.build_context import context_digest, ignore_patterns
from reconciler.images.rootfs import rootfs_digest
from reconciler.observe.config_hashes import config_hashes
from reconciler.observe.env_files import (
    dotenv_paths,
    dotenv_specs,
    env_file_paths,
    env_file_values,
    image_variables,
    plan_file_edits,
)
from reconciler.observe.facts import ImageSource, MigrationStatus, Snapshot
from reconciler.observe.inputs import env_file_sources
from reconciler.observe.managed_files import ObservedFile, desired_file, observe_file
from reconciler.observe.planned import planned_images, planned_model, referenced_variables
from reconciler.plans import Action, Change, Step
from reconciler.runtime.files import decode_utf8, read_optional_bytes, read_text
from reconciler.secrets.redact import Secrets, looks_secret, text_format
from reconciler.secrets.store import SecretRecords, keyed_hash
from reconciler.state import State
from reconciler.state.load import yaml_key_position
from reconciler.state.model import MigrationSpec, PullPolicy
from reconciler.state.paths import parse_path

__all__ = [
    "DOCKER_STEPS",
    "activating",
    "base_images",
    "check_active_services",
    "check_build_files",
    "check_compose_services",
    "check_model",
    "check_stack_file",
    "check_stack_images",
    "desired_images",
    "digest_policy",
    "edited_files",
    "image_sources",
    "likely_images",
    "migration_status",
    "observe",
    "observe_files",
    "observe_migrations",
    "pull_policy",
    "pulls_always",
    "read_compose_config",
    "read_compose_text",
    "read_env_texts",
    "read_remote_digest",
    "tail",
    "wanted_digests",
]

_REVISION = re.compile(r"^([0-9A-Za-z_]+)(?:\s|$)")
DOCKER_STEPS = frozenset({Step.IMAGES, Step.SERVICES, Step.MIGRATIONS, Step.CHECKS})


def read_compose_text(path: Path, root: Path | None = None) -> str:
    """The compose file's exact text (BOM and line endings kept), through the bounded reader."""
    try:
        return read_text(path, "compose file", root=root)
    except FileNotFoundError:
        raise InputError("compose file not found", Location(path)) from None


def read_env_texts(state: State) -> dict[Path, str | None]:
    """The text of each env file and dotenv `files:` entry (None when missing)."""
    texts: dict[Path, str | None] = {}
    for path in dotenv_paths(state):
        raw = read_optional_bytes(path, "env file", root=state.confine)
        texts[path] = None if raw is None else decode_utf8(raw, path)
    return texts


def _observe_env_files(
    state: State, text: str, found: Secrets, *, check: bool
) -> tuple[dict[Path, str | None], dict[str, str]]:
    """The dotenv files and the process variables the compose and env files refer to,
    checked: a file that is not dotenv, or an interpolated pin that cannot be made, is an
    InputError here, before any docker call (when `check`: the compose-file step runs).
    Secret-looking keys' values, found and wanted, are registered."""
    files = read_env_texts(state)
    names = image_variables(text, source=state.compose.file) | referenced_variables(text, files)
    environment = {name: os.environ[name] for name in sorted(names) if name in os.environ}
    if check:
        plan_file_edits(state, text, files, environment)
    for path, content in files.items():
        if content is not None:
            found.register_mapping(parse_dotenv(content, source=path).resolved(environment))
    for spec in dotenv_specs(state).values():
        found.register_mapping(spec.dotenv_values())
    found.register_mapping(environment)
    return files, environment


def check_compose_services(state: State, path: Path, text: str) -> dict[str, ServiceImage]:
    """The compose file must parse, and define every service the state names (no docker).

    Returns the file's services, as `read_services` gives them.
    """
    defined = read_services(text, source=path)
    for name in state.services:
        if name not in defined:
            raise InputError(
                f"service {name!r} is not defined in {path} "
                f"(it defines: {', '.join(defined) or 'no services'})",
                state.location(f"services.{name}"),
            )
    return defined


def activating(profiles: Iterable[str]) -> str:
    """How messages name the profiles that activate a service."""
    names = list(profiles)
    if not names:
        return "no profile (compose's model leaves it out)"
    return ("profile " if len(names) == 1 else "profiles ") + " or ".join(names)


def check_active_services(state: State, config: ComposeConfig) -> None:
    """A service the state pins or waits for must be one the active profiles enable.

    Raising at once, before anything changes, is what a compose user would expect: compose
    itself would neither start nor wait for that service, and `up SERVICE` would enable its
    profile as a side effect. The error says which profiles would activate it.
    """
    active = ", ".join(config.profiles) or "none"
    for name, spec in state.services.items():
        if name not in config.inactive:
            continue
        key = f"services.{name}.image" if spec.image else f"services.{name}"
        raise InputError(
            f"service {name!r} is not in the active profiles (compose.profiles: {active}); "
            f"{activating(config.inactive[name])} activates it: add that to compose.profiles, "
            f"or remove services.{name} from the state",
            state.location(key),
        )


def _with_inactive(
    config: ComposeConfig, defined: Mapping[str, ServiceImage], adapter: DockerAdapter
) -> ComposeConfig:
    """`config` with the file's services the active profiles leave out, and their profiles
    (one more docker call, only when there are some)."""
    left_out = [name for name in defined if name not in config.services]
    if not left_out:
        return config
    profiles = adapter.service_profiles()
    return dataclasses.replace(config, inactive={name: profiles.get(name, ()) for name in left_out})


def likely_images(
    state: State, defined: Mapping[str, ServiceImage], pins: Mapping[str, str]
) -> set[str]:
    """The image references the observation will most likely need, known before compose's
    model is read: pins, declared images, and literal `image:` values of the file. Inspected
    alongside the first round of reads; what compose's model adds is inspected after it."""
    likely = {*pins.values(), *state.images}
    for name, service in defined.items():
        if name not in pins and service.image and "$" not in service.image:
            likely.add(service.image)
    return likely


def check_model(
    state: State,
    config: ComposeConfig,
    defined: Mapping[str, ServiceImage],
    pins: Mapping[str, str],
    adapter: DockerAdapter,
) -> ComposeConfig:
    """compose's model checked against the state: the services it pins active in the chosen
    profiles, and in swarm mode each service's image named. Returns `config` with the file's
    inactive services (one more `compose config`, only when there are some)."""
    config = _with_inactive(config, defined, adapter)
    check_active_services(state, config)
    if adapter.swarm:
        check_stack_images(state, config, pins, defined)
    return config


def read_compose_config(adapter: DockerAdapter, path: Path, text: str) -> ComposeConfig:
    """compose's normalised model (`compose config`: no engine); a rejection points at the
    service compose names, if any."""
    try:
        return adapter.compose_config()
    except InputError as error:
        match = re.search(r"services\.([A-Za-z0-9._-]+?)(?:\.| |$)", error.message)
        service = read_services(text, source=path).get(match.group(1)) if match else None
        if service is None or (error.location and error.location.line):
            raise
        where = Location(path, service.line, service.column, f"services.{service.service}")
        raise InputError(error.message, where) from error


def desired_images(pins: Mapping[str, str], config: ComposeConfig) -> dict[str, str]:
    """service -> image reference it should run: its pin, else compose's image."""
    return {name: pins.get(name) or config.image_of(name) for name in config.services}


_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)


def check_build_files(sources: Iterable[ImageSource]) -> None:
    """Every Dockerfile and `.dockerignore` of the builds is a readable UTF-8 file (InputError
    at file:line:column otherwise); a missing one is left to the build's own message."""
    for source in sources:
        if source.build is not None:
            with contextlib.suppress(FileNotFoundError):
                read_text(source.build.dockerfile, "Dockerfile")
            ignore_patterns(source.build.context)


def base_images(build: BuildConfig) -> list[str]:
    """Images a Dockerfile builds FROM (stage names included; callers filter)."""
    try:
        return _FROM.findall(read_text(build.dockerfile, "Dockerfile"))
    except FileNotFoundError:
        return []


def image_sources(
    state: State, config: ComposeConfig, pins: Mapping[str, str]
) -> dict[str, ImageSource]:
    """Every image needed, in the order to make them: base images before what builds FROM them.

    A state-declared build or rootfs wins over the compose file's build section.
    """
    sources: dict[str, ImageSource] = {}

    def add(reference: str, user: str, compose_build: BuildConfig | None) -> None:
        if reference in sources:
            first = sources[reference]
            if first.kind == "pull" and compose_build is not None:
                # Compose lists services alphabetically: a later service may be the one that
                # builds the image an earlier one only names.
                sources[reference] = ImageSource(reference, "build", user, build=compose_build)
                return
            _check_same_build(first, user, compose_build, state)
            return
        declared = state.images.get(reference)
        if declared is not None and declared.rootfs is not None:
            sources[reference] = ImageSource(reference, "rootfs", user, rootfs=declared.rootfs)
        elif declared is not None and declared.build is not None:
            spec = declared.build
            build = BuildConfig(
                context=spec.context,
                dockerfile=spec.dockerfile or spec.context / "Dockerfile",
                args=dict(spec.args),
                target=spec.target,
            )
            sources[reference] = ImageSource(reference, "build", user, build=build)
        elif compose_build is not None:
            sources[reference] = ImageSource(reference, "build", user, build=compose_build)
        else:
            sources[reference] = ImageSource(reference, "pull", user)

    for service, reference in desired_images(pins, config).items():
        add(reference, service, config.services[service].build)
    for reference in state.images:
        add(reference, f"images.{reference}", None)
    for reference, spec in state.images.items():
        source = sources[reference]
        if spec.pull != "missing" and source.kind != "pull":
            raise InputError(
                f"`pull: {spec.pull}` is for images pulled from a registry, but service "
                f"{source.first_user!r} builds {reference} (its compose build section)",
                state.location(f"images.{reference}.pull"),
            )
    return _base_first(sources)


def digest_policy(state: State) -> list[str]:
    """The references the state declares `pull: digest` (their tags are compared with the
    registry)."""
    return sorted(ref for ref, spec in state.images.items() if spec.pull == "digest")


def pull_policy(state: State, reference: str) -> PullPolicy:
    """The state's `pull:` for an image (`missing` when it does not declare one)."""
    declared = state.images.get(reference)
    return declared.pull if declared is not None else "missing"


def pulls_always(state: State, change: Change) -> bool:
    """Is `change` a `pull: always` pull: made at every apply, whatever was observed (so
    neither drift left after an apply, nor a reason to recreate the image's users)?"""
    return (
        change.step is Step.IMAGES
        and change.action is Action.PULL
        and pull_policy(state, change.key) == "always"
    )


def read_remote_digest(adapter: DockerAdapter, reference: str) -> RemoteDigest:
    """What the registry says `reference`'s tag points to; a failure is kept as the fact (the
    images step decides what it means), after the adapter's retries."""
    try:
        return RemoteDigest(digest=adapter.remote_digest(reference))
    except (DockerError, RegistryError) as error:
        reason = error.message if isinstance(error, DockerError) else str(error)
        return RemoteDigest(error=reason)


def _check_same_build(
    first: ImageSource, user: str, build: BuildConfig | None, state: State
) -> None:
    """Two services may share an image only if the compose file builds it one way (or not)."""
    if first.reference in state.images or build is None or first.build in (None, build):
        return
    raise InputError(
        f"services {first.first_user!r} and {user!r} both use image {first.reference} but build "
        "it differently; give them distinct image names, the same build section, "
        f"or declare images.{first.reference}.build in the state",
        Location(state.compose.file, key=f"services.{user}.build"),
    )


def _base_first(sources: dict[str, ImageSource]) -> dict[str, ImageSource]:
    ordered: dict[str, ImageSource] = {}
    visiting: set[str] = set()

    def visit(reference: str) -> None:
        if reference in ordered or reference in visiting:
            return
        visiting.add(reference)
        source = sources[reference]
        if source.build is not None:
            for base in base_images(source.build):
                if base in sources:
                    visit(base)
        ordered[reference] = source

    for kind in ("rootfs", "build", "pull"):
        for reference, source in sources.items():
            if source.kind == kind:
                visit(reference)
    return ordered


def edited_files(state: State) -> tuple[Path, ...]:
    """The files reconciler edits besides the compose file: env files and `files:` entries."""
    return tuple(dict.fromkeys([*dotenv_paths(state), *(Path(name) for name in state.files)]))


def wanted_digests(
    sources: Mapping[str, ImageSource], *, compose_file: Path, edited: Collection[Path] = ()
) -> dict[str, str]:
    """The input digest each made image must carry; a build's covers its declared bases too.
    The compose file and the `edited` files are left out of build contexts."""
    digests: dict[str, str] = {}
    for reference, source in sources.items():
        if source.rootfs is not None:
            digests[reference] = rootfs_digest(source.rootfs)
        elif source.build is not None:
            digest = context_digest(source.build, compose_file=compose_file, edited=edited)
            bases = [digests[base] for base in base_images(source.build) if base in digests]
            if bases:
                digest = (
                    "sha256:" + hashlib.sha256("\0".join([digest, *bases]).encode()).hexdigest()
                )
            digests[reference] = digest
    return digests


def observe(
    state: State, adapter: DockerAdapter, steps: Collection[Step], pins: Mapping[str, str]
) -> Snapshot:
    """The snapshot `steps` need: the file always, docker only for docker-backed steps.

    `pins` are the image pins in force (the state's, or none when compose-file is skipped).
    With the compose-file step selected, the snapshot's model is compose's as that step's
    env-file edits will leave it (`reconciler.observe.planned`), and its image sources follow it.
    At most six docker calls, whatever the number of services, concurrent where independent:
    the compose model, containers (list, then one batched inspect) and one batched inspect
    of the images the file and state name (and those the compose-file step's env-file edits
    make it name); then, only when compose's model names further images (an interpolated
    `image:`, a Dockerfile's base), one more inspect; and only for a model not seen before, or
    one whose remembered hashes a container's label contradicts, compose's config hash of it
    (`reconciler.observe.config_hashes`, which remembers it). Besides, one registry read per
    `pull: digest` image present locally (and a `docker login` per registry with credentials),
    concurrent with the compose reads.
    """
    path = state.compose.file
    text = read_compose_text(path, state.confine)
    found = Secrets()
    found.register_environment(state.sensitive_env)
    found.register_compose_text(text)
    defined = check_compose_services(state, path, text)
    env_texts, environment = _observe_env_files(
        state, text, found, check=Step.COMPOSE_FILE in steps
    )
    files: dict[str, ObservedFile] = {}
    if Step.COMPOSE_FILE in steps:
        files = observe_files(state, text, found)
    local = Snapshot(
        compose_file=path,
        compose_text=text,
        pins=dict(pins),
        secrets=found.values,
        files=files,
        env_texts=env_texts,
        environment=environment,
    )
    if not DOCKER_STEPS.intersection(steps):
        return local
    # The state's secrets, read once per run (the adapter keeps them): before any compose call.
    secret_values = adapter.secret_values()
    editing = Step.COMPOSE_FILE in steps  # later steps plan from the model its edits leave
    likely = likely_images(state, defined, pins)
    if editing:
        likely |= planned_images(
            state, text, env_texts, environment=environment, secrets=secret_values
        )
    found.update(secret_values.values())
    secret_hashes, secret_records = _secret_hashes(adapter.project_name, secret_values)
    followed = digest_policy(state)
    workers = 4 + min(len(followed), 4)
    adapter.resume_reads()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="observe") as pool:
        config_read = pool.submit(read_compose_config, adapter, path, text)
        containers_read = pool.submit(adapter.containers)
        swarm_read = pool.submit(_observe_stack, state, adapter) if adapter.swarm else None
        likely_read = pool.submit(adapter.images, likely)
        # compose's model needs no engine: every input check on it (and on the Dockerfiles and
        # .dockerignore files it names) is made before waiting on the engine's answers, so bad
        # input is exit 3 at once even when the engine is unreachable (its reads abandoned).
        try:
            config = check_model(state, config_read.result(), defined, pins, adapter)
            if editing:
                config = planned_model(
                    state, config, text, env_texts, environment=environment, secrets=secret_values
                )
            sources = image_sources(state, config, pins)
            check_build_files(sources.values())
        except InputError:
            adapter.abandon_reads()
            raise
        for service in config.services.values():
            found.register_mapping(service.environment)
            if service.build is not None:
                found.register_mapping(service.build.args)
        # A tag is compared with the registry only when its image is here (else it is pulled).
        present = likely_read.result()
        remote_reads = {
            ref: pool.submit(read_remote_digest, adapter, ref) for ref in followed if ref in present
        }
        images = {ref: facts for ref, facts in present.items() if ref in sources}
        if not likely.issuperset(sources):  # compose's model names images the file did not
            images.update(adapter.images(set(sources) - likely))
        containers = tuple(containers_read.result())
        observed_at = time.time()
        config = _with_env_files(state, config, text, env_texts, secret_values)
        hashes = config_hashes(adapter, config, containers)
        swarm_services, swarm_tasks = swarm_read.result() if swarm_read is not None else ((), ())
        return dataclasses.replace(
            local,
            config=config,
            config_hashes=hashes,
            swarm_services=swarm_services,
            swarm_tasks=swarm_tasks,
            containers=containers,
            sources=sources,
            images=images,
            remote={ref: read.result() for ref, read in remote_reads.items()},
            observed_at=observed_at,
            secrets=found.values,
            secret_hashes=secret_hashes,
            secret_records=secret_records,
        )


def _observe_stack(
    state: State, adapter: DockerAdapter
) -> tuple[tuple[SwarmService, ...], tuple[SwarmTask, ...]]:
    """swarm mode: the compose file as stack deploy reads it must load (else an InputError
    naming the key, before anything changes), then the stack's services and their tasks."""
    check_stack_file(state, adapter)
    services = adapter.stack_services()
    tasks = adapter.stack_tasks([service.id for service in services])
    return tuple(services), tuple(tasks)


def check_stack_file(state: State, adapter: DockerAdapter) -> None:
    """swarm mode: the compose file must load as stack deploy reads it (`docker stack config`:
    no engine), else an InputError at the key it names."""
    try:
        adapter.stack_config("{}\n")
    except InputError as error:
        raise _at_compose_key(state, error) from error


_STACK_KEY = re.compile(r"\b(services\.[A-Za-z0-9._-]+(?:\.[A-Za-z0-9_-]+)*)")


def _at_compose_key(state: State, error: InputError) -> InputError:
    """`error` (stack deploy's loader naming a key such as `services.api.depends_on`) located
    at that key's line and column in the compose file, or at its service's."""
    path = state.compose.file
    match = _STACK_KEY.search(error.message)
    if match is None:
        return error
    parts = match.group(1).split(".")
    text = read_compose_text(path)
    line, column = yaml_key_position(text, parts[:3], source=path)
    return InputError(error.message, Location(path, line, column, match.group(1)))


def check_stack_images(
    state: State,
    config: ComposeConfig,
    pins: Mapping[str, str],
    defined: Mapping[str, ServiceImage],
) -> None:
    """swarm mode: every service names its image. stack deploy ignores `build:` (reconciler
    builds first, then deploys the image by name), so a build-only service has no image to
    run; compose's default name for it (PROJECT-SERVICE) is not one stack deploy would use."""
    for name, spec in config.services.items():
        if spec.image or pins.get(name):
            continue
        service = defined.get(name)
        where = (
            Location(state.compose.file, service.line, service.column, f"services.{name}")
            if service is not None
            else Location(state.compose.file, key=f"services.{name}")
        )
        raise InputError(
            f"service {name!r} has `build:` but no `image:`: in `compose.mode: swarm` "
            "docker stack deploy ignores `build:` and runs images by name; give it an "
            f"`image:` (or pin services.{name}.image in the state) for reconciler to build "
            "and deploy",
            where,
        )


def observe_files(state: State, compose_text: str, found: Secrets) -> dict[str, ObservedFile]:
    """Read the state's `files:` and check every edit the compose-file step will plan (the
    environment pins too), so bad input fails before docker is asked anything; register the
    secret values they hold in `found`."""
    pin_environment(compose_text, state.environment_pins(), source=state.compose.file)
    for service in state.services.values():
        found.register_mapping(service.environment)
    files: dict[str, ObservedFile] = {}
    dotenv = dotenv_specs(state)
    for name, spec in state.files.items():
        if Path(name) in dotenv:
            continue  # read as text with the env files
        observed = observe_file(Path(name), spec, state.confine)
        desired = desired_file(spec, observed)
        for dotted, value in (spec.values or {}).items():
            if isinstance(value, str) and looks_secret(parse_path(dotted)[-1]):
                found.register(value)
        for data in (observed.data, desired.data):
            if data is not None:  # by meaning, in the file's format (JSON, YAML, dotenv, ...)
                found.register_text(data.decode("utf-8", "replace"), text_format(observed.path))
        files[name] = observed
    return files


def _secret_hashes(
    project: str, values: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The secrets' keyed hashes now, and those recorded per container: none before the
    project has a key (a plan never makes one; the first apply that brings a user up does)."""
    if not values:
        return {}, {}
    records = SecretRecords(project)
    key = records.key()
    if key is None:
        return {}, {}
    return {name: keyed_hash(key, name, value) for name, value in values.items()}, records.read()


def _with_env_files(
    state: State,
    config: ComposeConfig,
    text: str,
    env_texts: Mapping[Path, str | None],
    secret_values: Mapping[str, str],
) -> ComposeConfig:
    """compose's model with each service's `env_file` paths added to its inputs (compose's
    normalised model has merged them into `environment`); paths interpolate as compose does,
    with the process environment (and the state's secrets, which compose's calls get there)
    over the interpolation env files."""
    process = {**os.environ, **secret_values}
    parsed = {
        path: parse_dotenv(content, source=path)
        for path in env_file_paths(state)
        if (content := env_texts.get(path)) is not None
    }
    environment = {**env_file_values(state, parsed, process), **process}
    found = env_file_sources(text, state.compose.file, environment)
    if not found:
        return config
    services = {
        name: dataclasses.replace(spec, inputs=(*spec.inputs, *found.get(name, ())))
        for name, spec in config.services.items()
    }
    return dataclasses.replace(config, services=services)


def observe_migrations(
    state: State, adapter: DockerAdapter, containers: Iterable[ContainerFacts]
) -> dict[str, MigrationStatus]:
    """The status of every declared migration set (read-only exec calls)."""
    running = {c.service for c in containers if c.status == "running" and not c.oneoff}
    statuses: dict[str, MigrationStatus] = {}
    for spec in state.migrations:
        if spec.service not in running:
            statuses[spec.name] = MigrationStatus(None, f"service {spec.service} is not running")
        else:
            statuses[spec.name] = migration_status(spec, adapter)
    return statuses


def migration_status(spec: MigrationSpec, adapter: DockerAdapter) -> MigrationStatus:
    """Whether one migration set is at head: alembic current vs heads, or the check argv."""
    if spec.alembic is None:
        assert spec.check is not None, "validated: check is set when alembic is not"
        result = adapter.exec(spec.service, spec.check, mutating=False, timeout=spec.timeout)
        if result.exit_code == 0:
            return MigrationStatus(True, "check passed")
        return MigrationStatus(False, f"check exited {result.exit_code}: {tail(result.output, 1)}")
    current = _revisions(spec, "current", adapter)
    heads = _revisions(spec, "heads", adapter)
    if not heads:
        raise ApplyError(f"migration {spec.name}: `alembic heads` lists no revision")
    shown = ", ".join(sorted(current)) or "empty database"
    if current == heads:
        return MigrationStatus(True, f"at head {shown}")
    return MigrationStatus(False, f"current {shown}, head {', '.join(sorted(heads))}")


def _revisions(spec: MigrationSpec, verb: str, adapter: DockerAdapter) -> set[str]:
    assert spec.alembic is not None
    result = adapter.exec(spec.service, [*spec.alembic.command, verb], mutating=False)
    if result.exit_code != 0:
        raise ApplyError(
            f"migration {spec.name}: alembic {verb} failed (exit {result.exit_code}):\n"
            f"  {tail(result.output)}"
        )
    revisions = set()
    for line in result.stdout.splitlines():
        match = _REVISION.match(line.strip())
        if match and not line.startswith(("INFO", "WARN", "ERROR")):
            revisions.add(match.group(1))
    return revisions


def tail(text: str, lines: int = 10) -> str:
    """The last `lines` lines of `text`, joined by a newline and an indent: the further lines
    of a message are indented (the CLI shows only those as lines: `cli.printable`)."""
    return "\n  ".join(text.strip().splitlines()[-lines:])
