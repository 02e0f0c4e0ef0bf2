"""Plain, frozen facts the adapter observes; the planner reads only these.

Kept free of python_on_whales types so that planning stays pure and testable from data files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

__all__ = [
    "BuildConfig",
    "ChangedValue",
    "ComposeConfig",
    "ContainerFacts",
    "HealthProbe",
    "ImageFacts",
    "InputSource",
    "PublishedPort",
    "RegistryLogin",
    "RemoteDigest",
    "ResourceUse",
    "ServiceConfig",
    "SwarmService",
    "SwarmTask",
    "docker_epoch",
    "normalize_reference",
    "registry_host",
    "repository",
]


@dataclass(frozen=True)
class BuildConfig:
    """A compose service's build section, paths absolute as compose normalises them."""

    context: Path
    dockerfile: Path
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass(frozen=True)
class PublishedPort:
    """A container port published on the host (TCP)."""

    target: int
    published: int
    host_ip: str = ""

    @property
    def url(self) -> str:
        """`http://HOST:PORT` for a client on the docker host (loopback when bound to all)."""
        return self.url_on("127.0.0.1")

    def url_on(self, engine_host: str) -> str:
        """`http://HOST:PORT` for a client here, the engine running on `engine_host`: that host
        when the port is bound to all its addresses, else the address it is bound to."""
        host = self.host_ip if self.host_ip not in {"", "0.0.0.0", "::"} else engine_host  # noqa: S104 - compared, not bound
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.published}"


@dataclass(frozen=True)
class InputSource:
    """A file or directory a service's container reads that compose's config hash does not
    cover: a bind mount's source, an `env_file`, a `configs:` entry's `file:` (absolute)."""

    kind: Literal["bind", "env_file", "config"]
    path: Path
    read_only: bool = True  # the container cannot write it (a `:ro` bind; env files, configs)


@dataclass(frozen=True)
class ChangedValue:
    """A value of a service that compose interpolates and that the env-file edits the
    compose-file step plans will change (`reconciler.observe.planned`)."""

    where: str  # its key path in the service ("environment.MODE"), or "configs.NAME.content"
    variables: tuple[str, ...]  # the variables whose new value changes it
    hashed: bool = True  # compose's config hash covers it (not a top-level config or secret)


@dataclass(frozen=True)
class ServiceConfig:
    """What compose's normalised model says about one service."""

    name: str
    image: str | None = None
    build: BuildConfig | None = None
    has_healthcheck: bool = False
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    environment: dict[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    ports: tuple[PublishedPort, ...] = ()
    # Names of the state's `secrets:` this service uses: where its config hash covers them
    # (interpolated into the service), and where it does not (through a compose `secrets:` or
    # `configs:` entry fed from the environment or interpolated content).
    secrets_hashed: tuple[str, ...] = ()
    secrets_unhashed: tuple[str, ...] = ()
    inputs: tuple[InputSource, ...] = ()
    scale: int = 1  # containers compose runs: `scale`, else `deploy.replicas`, else 1
    profiles: tuple[str, ...] = ()  # the profiles that activate it (none: always active)
    # swarm mode: `deploy.mode: global` (one task per node, no replica count), and the
    # file's own `deploy.update_config.failure_action` (None: not set)
    global_mode: bool = False
    failure_action: str | None = None
    # The model as the compose-file step's planned env-file edits leave it differs from the
    # one compose printed in these values (empty: the edits change nothing of this service).
    edited: tuple[ChangedValue, ...] = ()


@dataclass(frozen=True)
class ComposeConfig:
    """The normalised compose model: project name and the services the active profiles
    enable (compose leaves the others out), in file order.

    `profiles` are the profiles passed to compose (`compose.profiles`); `inactive` maps each
    service of the file that they leave out to the profiles that would activate it.
    """

    project: str
    services: dict[str, ServiceConfig]
    # compose's own JSON of this model (env files resolved into `environment`, so it may hold
    # secrets): fed back to compose for the config hash `up` computes (`resolved_config_hashes`).
    resolved: str = field(default="", repr=False, compare=False)
    profiles: tuple[str, ...] = ()
    inactive: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def image_of(self, service: str) -> str:
        """The image reference compose uses for `service` (its default name when unset)."""
        image = self.services[service].image
        return image or f"{self.project}-{service}"


@dataclass(frozen=True)
class HealthProbe:
    """One run of a container's healthcheck, as docker keeps the last five: when it started and
    ended (docker's RFC 3339 times) and its exit code (0: passed)."""

    start: str
    end: str
    exit_code: int


# Container states in which FinishedAt belongs to the run before the current one.
_RUNNING = frozenset({"running", "paused", "restarting"})
_HALF_RESTART_DELAY = 0.05  # docker waits at least 0.1 s before it restarts a container


@dataclass(frozen=True)
class ContainerFacts:
    """One container of the project as docker inspect reports it."""

    id: str
    name: str
    service: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    health: str | None  # None (no healthcheck), starting, healthy, unhealthy
    exit_code: int
    config_hash: str | None
    image_id: str
    oneoff: bool = False
    last_health_output: str | None = None
    restart_count: int = 0
    started_at: str = ""  # the daemon's StartedAt: changes on every (re)start
    restart_policy: str = ""  # "", "no", "on-failure", "always", "unless-stopped"
    # The daemon's FinishedAt: when the container's last run ended (its previous run while it
    # runs again); docker's zero time when it never ended.
    finished_at: str = ""
    health_log: tuple[HealthProbe, ...] = ()  # the last healthcheck runs, oldest first

    @property
    def started_epoch(self) -> float | None:
        """`started_at` as seconds since the epoch (None when never started or unreadable)."""
        return docker_epoch(self.started_at)

    @property
    def log_since(self) -> float | None:
        """Where this run of the container begins in its log (epoch s), so that a read from
        there holds every line of this run and none of an earlier one; None: from the log's
        start (the container never ran before).

        Not `started_at`: docker can stamp a run's first lines a few milliseconds before it
        records StartedAt. While the container runs, FinishedAt is when its previous run ended,
        which is the exact boundary. A container that ended and had restarted before has no
        record of the earlier run's end: its runs are at least docker's least restart delay
        (100 ms) apart, so the boundary is taken half of that before StartedAt.
        """
        started = self.started_epoch
        if started is None or (self.restart_count == 0 and self.status not in _RUNNING):
            return None
        finished = docker_epoch(self.finished_at)
        if self.status in _RUNNING:
            return finished if finished is not None and finished <= started else None
        return started - _HALF_RESTART_DELAY

    @property
    def completed(self) -> bool:
        """A one-shot that ran to success and that docker will not start again by itself."""
        return (
            self.status == "exited"
            and self.exit_code == 0
            and self.restart_policy in {"", "no", "on-failure"}
        )


@dataclass(frozen=True)
class SwarmService:
    """One service of a Swarm stack as `docker service inspect` reports it."""

    id: str
    name: str  # the compose service name (the stack's namespace prefix removed)
    image: str  # the spec's image, as deployed (a digest suffix when Swarm resolved one)
    replicas: int | None  # None: a global service
    labels: dict[str, str] = field(default_factory=dict)  # the service's own (deploy.labels)
    container_labels: dict[str, str] = field(default_factory=dict)  # its task template's
    # the last update: updating, paused, completed, rollback_started, rollback_paused,
    # rollback_completed (None: never updated since it was created)
    update_state: str | None = None
    update_message: str = ""
    previous_image: str | None = None  # the spec before the last update (rollback target)


@dataclass(frozen=True)
class SwarmTask:
    """One task of a stack's service (current or historical) as `docker inspect` reports it."""

    id: str
    service_id: str
    slot: int | None
    desired_state: str  # running, shutdown, ...
    state: str  # new ... starting, running, complete, failed, rejected, shutdown, ...
    message: str = ""
    error: str = ""
    exit_code: int | None = None
    container_id: str = ""
    image: str = ""  # the image of the spec this task runs
    labels: dict[str, str] = field(default_factory=dict)  # its spec's container labels
    timestamp: str = ""


@dataclass(frozen=True)
class ImageFacts:
    """A local image found for a reference."""

    reference: str
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    size: int = 0
    # `RepoDigests`: repository@sha256:... of the manifests this image was pulled or pushed as
    repo_digests: tuple[str, ...] = ()

    def registry_digests(self, reference: str) -> tuple[str, ...]:
        """The manifest digests this image is known by in `reference`'s repository: several
        when it was pulled both by a single-platform manifest and through an index."""
        wanted = repository(reference)
        found = []
        for item in self.repo_digests:
            name, _, digest = item.partition("@")
            if digest and repository(name) == wanted:
                found.append(digest)
        return tuple(found)


@dataclass(frozen=True)
class RemoteDigest:
    """What a registry says a tag points to: its manifest digest, or why it could not be read."""

    digest: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RegistryLogin:
    """How to log in to one registry: a user name, and the name of the state secret holding
    the password (its value is read from the run's secrets, never stored here)."""

    username: str
    password_secret: str


def normalize_reference(reference: str) -> str:
    """Docker's familiar form of a reference, so `docker.io/library/x` and `x:latest` meet `x`."""
    name, at, digest = reference.partition("@")
    for prefix in (
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ):
        if name.startswith(prefix):
            name = name.removeprefix(prefix)
            break
    if not at and ":" not in name.rpartition("/")[2]:
        name += ":latest"
    return f"{name}{at}{digest}"


def registry_host(reference: str) -> str:
    """The registry a reference lives in, by docker's rule: a first path component with a dot
    or a colon, or `localhost`, is a host; anything else is on Docker Hub (`docker.io`)."""
    name = reference.partition("@")[0]
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return "docker.io" if first in {"index.docker.io", "registry-1.docker.io"} else first
    return "docker.io"


def repository(reference: str) -> str:
    """A reference without its tag and digest, in docker's familiar form (`x` for docker.io/x)."""
    name = normalize_reference(reference.partition("@")[0])
    head, colon, tag = name.rpartition(":")
    return head if colon and "/" not in tag else name


def docker_epoch(text: str) -> float | None:
    """A docker RFC 3339 time (`2026-12-07T12:00:01.123456789Z`) as seconds since the epoch, to
    the microsecond; None for docker's zero time (`0001-01-01T00:00:00Z`), empty or unreadable."""
    if not text or text.startswith("0001-"):
        return None
    head, _, fraction = text.rstrip("Z").partition(".")
    try:
        moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return None
    digits = "".join(ch for ch in fraction if ch.isdigit())[:6]
    return moment.timestamp() + (int(digits) / 10 ** len(digits) if digits else 0.0)


@dataclass(frozen=True)
class ResourceUse:
    """One container's use of the engine's resources at one moment (`docker stats`): memory in
    bytes, and CPU in percent of one core (200.0: two cores busy)."""

    memory: int
    cpu: float
