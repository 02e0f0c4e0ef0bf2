"""The one door to Docker: the only module that imports python_on_whales.

Observation is batched: whatever the number of services, a full observation costs a fixed
number of docker CLI calls (config, ps, inspect containers, inspect images; config --hash of
the model when it is new).
Every call is recorded in `DockerAdapter.calls` with whether it mutates anything, so callers
and tests can count them. Faults are classified by `errors` (`classify`; `docker_failed` tells
docker's own failure from an exec'd command's exit), transient ones retried with tenacity
(`retry.py`), and the output parsed into facts by `parse` (all but the inspect results read
through python_on_whales' models, which stay here).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reconciler.docker import parse
from reconciler.docker.errors import (
    LockImageMissing,
    LockNameInUse,
    classify,
    docker_failed,
    killed,
    last_line,
    lock_start_error,
    only_missing_images,
)
from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    ContainerFacts,
    HealthProbe,
    ImageFacts,
    RegistryLogin,
    ResourceUse,
    SwarmService,
    SwarmTask,
    normalize_reference,
    registry_host,
)
from reconciler.docker.parse import manifest_digest
from reconciler.docker.retry import RetryPolicy, retrying
from reconciler.errors import (
    DockerError,
    InputError,
    Location,
    PermanentDockerError,
    RegistryError,
)
from reconciler.logs import ProgressEvent, get_logger
from reconciler.runtime import processes
from reconciler.runtime.files import read_bytes
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.processes import Background, Finished, OnStop, ProcessTimeout
from reconciler.state.engine import Engine
from reconciler.state.project import project_name

__all__ = [
    "DockerAdapter",
    "DockerCall",
    "ExecResult",
    "LockContainer",
    "LockFacts",
    "LockImageMissing",
    "LockNameInUse",
    "manifest_digest",
]

_log = get_logger(__name__)
_T = TypeVar("_T")

# The docker CLI's own default engine (no --host, --context, DOCKER_HOST or current context).
_DEFAULT_HOST = "unix:///var/run/docker.sock"
# Reads should answer in seconds; a hung daemon must surface as a (transient) timeout.
_READ_TIMEOUT = 60.0
# compose up/down of a whole project: long enough for any real recreate, short of forever.
_UP_TIMEOUT = 900.0
# Where the docker CLI looks for its plugins after the user's own directory.
_PLUGIN_ROOTS = ("/usr/local/lib", "/usr/local/libexec", "/usr/lib", "/usr/libexec")
_LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class DockerCall:
    """One docker CLI invocation made through the adapter."""

    argv: tuple[str, ...]
    mutating: bool
    # The engine lock's own calls (`reconciler.locks.engine`): its create changes the engine,
    # never the project, so `mutating_calls` leaves them out.
    engine_lock: bool = False


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container said, and its exit code."""

    exit_code: int
    stdout: str
    output: str  # stdout then stderr


@dataclass
class DockerAdapter:
    """Docker operations for one compose project, batched and retried."""

    compose_file: Path
    project: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    calls: list[DockerCall] = field(default_factory=list)
    stop: StopToken = field(default_factory=StopToken)
    env_files: tuple[Path, ...] = ()  # passed to every compose call as --env-file, in order
    # The values of the state's `secrets:` (read on first call), for compose's interpolation:
    # added to the environment of every compose call, and of a build whose args hold one.
    secrets: Callable[[], Mapping[str, str]] | None = field(default=None, repr=False)
    profiles: tuple[str, ...] = ()  # passed to every compose call as --profile
    # Registry host -> credentials (the state's `registries:`): `docker login` once per adapter
    # (one run), before the first pull or digest read of an image in that registry.
    registries: Mapping[str, RegistryLogin] = field(default_factory=dict)
    # The engine every call targets (`--host URL` or `--context NAME` on each docker argv);
    # None: the docker CLI's own default (DOCKER_HOST / DOCKER_CONTEXT, else its context).
    engine: Engine | None = None
    # `compose.mode: swarm`: the project is a stack (`docker stack deploy`); its containers are
    # its tasks', and an exec runs in one of a service's running task containers.
    swarm: bool = False

    def __post_init__(self) -> None:
        self._docker: str | None = None  # the docker CLI's path, found on the first call
        self._login_lock = threading.Lock()
        self._logged_in: set[str] = set()
        self._abandoned = threading.Event()

    def abandon_reads(self) -> None:
        """End the backoffs of reads in flight: their caller found the input invalid and will
        not wait ~20 s for an engine that may not be there to answer a question it dropped."""
        self._abandoned.set()

    def resume_reads(self) -> None:
        """Let reads retry again (a new observation starts)."""
        self._abandoned.clear()

    # ---- observation (read-only, batched) ---------------------------------------------

    def secret_values(self) -> dict[str, str]:
        """NAME -> value of the state's secrets (read once per adapter, then from memory)."""
        return dict(self.secrets()) if self.secrets is not None else {}

    def compose_config(self) -> ComposeConfig:
        """The normalised compose model (`docker compose config --format json`): one call."""
        try:
            out = self._read(
                [*self._compose_config_cmd(), "config", "--format", "json"], compose=True
            )
        except PermanentDockerError as error:
            raise InputError(
                f"docker compose rejects the file: {last_line(error.output or error.message)}",
                Location(self.compose_file),
            ) from error
        return parse.compose_config(
            json.loads(out), out, self.secret_values(), profiles=self.profiles
        )

    def service_profiles(self) -> dict[str, tuple[str, ...]]:
        """Every service's `profiles`, with all profiles enabled (`--profile '*'`): one call.

        Asked only when the compose file defines services the active profiles leave out, to
        say which profiles would activate them.
        """
        argv = [*self._compose_config_cmd(), "--profile", "*", "config", "--format", "json"]
        model = json.loads(self._read(argv, compose=True))
        return {
            str(name): tuple(str(profile) for profile in (spec.get("profiles") or ()))
            for name, spec in (model.get("services") or {}).items()
        }

    def resolved_config_hashes(self, config: ComposeConfig) -> dict[str, str]:
        """compose's config hash of each service of its own resolved model: one call.

        `config.resolved` (what `config --format json` printed: env files already merged into
        `environment`, every `$` escaped) is fed back on stdin, so compose hashes exactly the
        model `up` hashes for the container's label, on either side of compose's env_file fix
        (docker/compose#14001: before 5.5.0, `config --hash` of the file leaves env_file out).
        All profiles are enabled so every service of the model is hashed. The model may hold
        secrets: it goes through stdin, never argv or logs.
        """
        return parse.hash_lines(
            self._call(
                self._resolved_hash_argv(), mutating=False, compose=True, stdin=config.resolved
            ).stdout
        )

    def resolved_hashes_key(self, config: ComposeConfig) -> str | None:
        """A digest of all `resolved_config_hashes(config)` depends on: its argv, the model
        it feeds compose and compose's binary (path, size, mtime); no call. None when the
        binary is not found where the docker CLI looks for it."""
        binary = _compose_binary(_compose_plugin())
        if binary is None:
            return None
        digest = hashlib.sha256()
        for part in (*self._resolved_hash_argv(), binary, config.resolved):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def _resolved_hash_argv(self) -> list[str]:
        return [
            *self._compose_base_cmd(),
            "--project-name",
            self.project_name,
            "--project-directory",
            str(self.compose_file.parent),
            "--profile",
            "*",
            "--file",
            "-",
            "config",
            "--hash",
            "*",
        ]

    def containers(self) -> list[ContainerFacts]:
        """All containers of the project with state, health and compose labels: two calls.

        Listed by the docker CLI with compose's own project label, as `compose ps --all` does,
        which spares a compose start-up (about 0.15 s) per observation.
        """
        if self.swarm:  # a stack's task containers, by the stack's own label
            label = f"label=com.docker.stack.namespace={self.project_name}"
        else:
            label = f"label=com.docker.compose.project={self.project_name}"
        argv = [*self._docker_cmd(), "container", "ls", "--all", "--quiet", "--no-trunc"]
        ids = self._read([*argv, "--filter", label]).split()
        if not ids:
            return []
        out = self._read([*self._docker_cmd(), "container", "inspect", *ids])
        stack = self.project_name if self.swarm else None
        return [_container_facts(item, stack) for item in json.loads(out)]

    def stack_config(self, overlay: str) -> str:
        """`docker stack config -c FILE -c -`: the stack file as stack deploy reads it (merged
        with `overlay`, on stdin; interpolated with the state's secrets in the environment).
        Reads no engine. A file stack deploy rejects is an InputError naming the key."""
        argv = [*self._docker_cmd(), "stack", "config"]
        argv += ["--compose-file", str(self.compose_file), "--compose-file", "-"]
        try:
            return self._call(argv, mutating=False, compose=True, stdin=overlay).stdout
        except PermanentDockerError as error:
            raise InputError(
                "docker stack deploy rejects the compose file: "
                + last_line(error.output or error.message),
                Location(self.compose_file),
            ) from error

    def stack_services(self) -> list[SwarmService]:
        """The stack's services (`service ls` by its namespace label, then one batched
        `service inspect`): two calls, one when it has none."""
        label = f"label=com.docker.stack.namespace={self.project_name}"
        argv = [*self._docker_cmd(), "service", "ls", "--quiet", "--filter", label]
        ids = self._read(argv).split()
        if not ids:
            return []
        out = self._read([*self._docker_cmd(), "service", "inspect", *ids])
        return [_swarm_service(item, self.project_name) for item in json.loads(out)]

    def stack_tasks(self, service_ids: Sequence[str]) -> list[SwarmTask]:
        """Every task of these services, current and historical (`service ps`, then one
        batched `inspect --type task`): two calls, none without services."""
        if not service_ids:
            return []
        argv = [*self._docker_cmd(), "service", "ps", "--quiet", "--no-trunc", *service_ids]
        ids = sorted(set(self._read(argv).split()))
        if not ids:
            return []
        out = self._read([*self._docker_cmd(), "inspect", "--type", "task", *ids])
        return [_swarm_task(item) for item in json.loads(out)]

    def stack_deploy(self, overlay: str, *, prune: bool, with_registry_auth: bool) -> None:
        """`docker stack deploy -c FILE -c - --detach` (`overlay` on stdin: the labels
        reconciler stamps), without resolving images in a registry (they are the engine's own,
        built or pulled by the images step). Mutating: never retried once it may have started.
        Detached: the caller waits for the services itself, each to its own deadline."""
        argv = [*self._docker_cmd(), "stack", "deploy"]
        argv += ["--compose-file", str(self.compose_file), "--compose-file", "-"]
        argv += ["--detach=true", "--resolve-image", "never"]
        argv += ["--prune"] if prune else []
        argv += ["--with-registry-auth"] if with_registry_auth else []
        argv.append(self.project_name)
        self._call(
            argv,
            mutating=True,
            timeout=_UP_TIMEOUT,
            compose=True,
            stdin=overlay,
        )

    def service_rollback(self, service: str) -> None:
        """`docker service rollback --detach STACK_SERVICE`: back to the previous spec (for an
        update Swarm paused rather than rolled back). Mutating: never retried."""
        name = f"{self.project_name}_{service}"
        argv = [*self._docker_cmd(), "service", "rollback", "--detach", "--quiet", name]
        self._call(argv, mutating=True)

    def stack_remove(self) -> None:
        """`docker stack rm STACK` (`down` in swarm mode)."""
        self._call([*self._docker_cmd(), "stack", "rm", self.project_name], mutating=True)

    def running_task_container(self, service: str) -> str:
        """The id of a running task container of a stack's service (one read); a
        PermanentDockerError when it has none."""
        label = f"label=com.docker.swarm.service.name={self.project_name}_{service}"
        argv = [*self._docker_cmd(), "container", "ls", "--quiet", "--no-trunc"]
        argv += ["--filter", label, "--filter", "status=running"]
        ids = self._read(argv).split()
        if not ids:
            raise PermanentDockerError(
                f"service {service} of stack {self.project_name} has no running task",
                command=tuple(argv),
            )
        return sorted(ids)[0]

    @property
    def project_name(self) -> str:
        """The compose project name, by compose's own rules (`reconciler.state.project`)."""
        return project_name(self.compose_file, self.project)

    def images(self, references: Iterable[str], *, local: bool = False) -> dict[str, ImageFacts]:
        """The target engine's images for `references` (missing ones are absent from the
        result), or with `local` the local engine's (see `transfer`): one call."""
        wanted = sorted(set(references))
        if not wanted:
            return {}
        docker = self._local_docker_cmd() if local else self._docker_cmd()
        argv = [*docker, "image", "inspect", *wanted]
        out = self._call(argv, mutating=False, allow_missing=True).stdout
        found: dict[str, ImageFacts] = {}
        normalized = {normalize_reference(ref): ref for ref in wanted}
        for item in json.loads(out) if out.strip() else []:
            names = [*(item.get("RepoTags") or []), *(item.get("RepoDigests") or [])]
            for name in names:
                ref = normalized.get(normalize_reference(name))
                if ref is not None:
                    found[ref] = ImageFacts(
                        reference=ref,
                        id=item["Id"],
                        labels=dict((item.get("Config") or {}).get("Labels") or {}),
                        size=int(item.get("Size") or 0),
                        repo_digests=tuple(item.get("RepoDigests") or ()),
                    )
        return found

    def remote_digest(self, reference: str) -> str:
        """The manifest digest `reference`'s tag points to in its registry: one read, retried
        on transient faults like every read, after a login when the state has credentials
        for that registry.

        `docker buildx imagetools inspect` resolves the tag itself (plain HTTP for a loopback
        registry, as dockerd does) and reports the top-level descriptor: for a multi-platform
        image that is the index's digest, the one `RepoDigests` records after a pull by tag.
        """
        self._login_for(reference)
        argv = [*self._docker_cmd(), "buildx", "imagetools", "inspect"]
        argv += ["--format", "{{json .Manifest}}", reference]
        return manifest_digest(self._read(argv), reference)

    def container_logs(self, container_id: str, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines a container wrote (stdout and stderr)."""
        return self._read(
            [*self._docker_cmd(), "logs", "--tail", str(lines), container_id], stderr=True
        )

    def container_stats(self, container_ids: Sequence[str]) -> dict[str, ResourceUse]:
        """`docker stats --no-stream`: each running container's memory and CPU use now (docker
        takes two readings about a second apart for the CPU share), by full container ID."""
        if not container_ids:
            return {}
        argv = [*self._docker_cmd(), "stats", "--no-stream", "--no-trunc"]
        return parse.container_stats(self._read([*argv, "--format", "{{json .}}", *container_ids]))

    def logs_since(self, container_id: str, since: str) -> str:
        """Every line a container wrote since `since` (RFC 3339), each prefixed by its timestamp.

        stdout and stderr interleaved as docker stores them.
        """
        return self._read(
            [*self._docker_cmd(), "logs", "--timestamps", "--since", since, container_id],
            stderr=True,
        )

    def exec(
        self,
        service: str,
        argv: Sequence[str],
        *,
        mutating: bool,
        timeout: float = _READ_TIMEOUT,
        retry: bool = True,
    ) -> ExecResult:
        """Run `argv` in the service's running container (`compose exec -T`), no shell.

        The command's own exit code is returned, not raised; docker's own failures (service
        not running, daemon faults) raise as usual. A mutating exec (a migration) is never
        retried once it may have started, and a first stop request lets it finish. `retry=False`
        is for callers that retry on their own deadline (checks).
        """
        if self.swarm:  # in one of the service's running task containers (this engine's)
            container = self.running_task_container(service)
            command = [*self._docker_cmd(), "container", "exec", container, *argv]
        else:
            command = [*self._compose_cmd(), "exec", "-T", service, *argv]
        done = self._call(
            command,
            mutating=mutating,
            timeout=timeout,
            exec_in_container=True,
            retry=retry,
            compose=not self.swarm,
        )
        return ExecResult(done.returncode, done.stdout, done.stdout + done.stderr)

    # ---- changes (mutating) -----------------------------------------------------------

    def import_rootfs(
        self, tarball: Path, reference: str, labels: dict[str, str], *, engine_lock: bool = False
    ) -> None:
        """`docker import` a root filesystem tarball as `reference`, with labels (`engine_lock`:
        the engine lock's own image, recorded as such)."""
        changes = [f"LABEL {key}={json.dumps(value)}" for key, value in sorted(labels.items())]
        argv = [*self._docker_cmd(), "image", "import"]
        for change in changes:
            argv += ["--change", change]
        argv += [str(tarball), reference]
        self._call(argv, mutating=True, timeout=None, on_stop=OnStop.CUT, engine_lock=engine_lock)

    @property
    def targets_another_engine(self) -> bool:
        """The run names its engine (`engine:` or --engine) and it is not a local unix socket:
        images made on this host can be copied to it (`transfer`)."""
        return self.engine is not None and not str(self.engine).startswith("unix://")

    def transfer(self, reference: str, on_bytes: Callable[[int], None]) -> None:
        """Copy `reference` from the local engine (the docker CLI's default: DOCKER_HOST /
        DOCKER_CONTEXT, else its current context) to the target: `docker image save` there
        piped into `docker image load` on the target, through this process, which counts the
        bytes for `on_bytes`. Never retried: a load may have started. A stop cuts it; a
        truncated stream loads nothing."""
        source = [*self._local_docker_cmd(), "image", "save", reference]
        sink = [*self._docker_cmd(), "image", "load"]
        self.calls.append(DockerCall(tuple(source), False))
        self.calls.append(DockerCall(tuple(sink), True))
        try:
            saved, loaded = processes.pipe(
                source, sink, stop=self.stop, on_bytes=on_bytes, what=f"transfer {reference}"
            )
        except ProcessTimeout as error:  # no timeout is set; kept for the contract of pipe
            raise PermanentDockerError(str(error), command=tuple(sink)) from error
        except FileNotFoundError as error:
            raise PermanentDockerError(
                f"docker CLI not found: {source[0]}", command=tuple(source)
            ) from error
        _log.debug("docker call", argv=_short(sink), rc=loaded.returncode, seconds=loaded.seconds)
        # A save cut off by the load's early end (SIGPIPE) says nothing: the load's failure does.
        cut = saved.returncode == -signal.SIGPIPE and loaded.returncode != 0
        ends = [(loaded, sink, loaded.stdout), (saved, source, "")]
        for ended, argv, stdout in ends if cut else reversed(ends):
            if ended.returncode < 0:
                raise killed(argv, ended.returncode, ended.stderr, stdout)
            if ended.returncode != 0:
                raise classify(argv, ended.stderr, stdout)

    def build(self, reference: str, build: BuildConfig, labels: dict[str, str]) -> None:
        """Build `reference` from a compose build section, adding `labels`."""
        argv = [*self._docker_cmd(), "buildx", "build", "--load", "--tag", reference]
        argv += ["--file", str(build.dockerfile)]
        hidden = [value for value in self.secret_values().values() if value]
        env: dict[str, str] = {}
        for key, value in sorted(build.args.items()):
            if any(secret in value for secret in hidden):
                env[key] = value  # `--build-arg KEY` alone: buildx reads it from its environment
                argv += ["--build-arg", key]
            else:
                argv += ["--build-arg", f"{key}={value}"]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        if build.target:
            argv += ["--target", build.target]
        argv.append(str(build.context))

        def output(line: str) -> None:  # the build's progress as it comes, for a live view
            _log.debug(ProgressEvent.BUILD_OUTPUT, image=reference, line=line)

        self._call(
            argv, mutating=True, timeout=None, on_stop=OnStop.CUT, on_line=output, env=env or None
        )

    def remove_containers(self, ids: Sequence[str]) -> None:
        """Force-remove containers (leftovers of an interrupted compose recreate)."""
        self._call([*self._docker_cmd(), "container", "rm", "--force", *ids], mutating=True)

    def tag(self, image_id: str, reference: str) -> None:
        """Point `reference` at `image_id` (rollback restores a tag's previous image)."""
        self._call([*self._docker_cmd(), "image", "tag", image_id, reference], mutating=True)

    def pull(self, reference: str) -> None:
        """Pull an image that no compose build section can produce (after a login when the
        state has credentials for its registry). Mutating: never retried once it may have
        started."""
        self._login_for(reference)
        argv = [*self._docker_cmd(), "image", "pull", "--quiet", reference]
        self._call(argv, mutating=True, on_stop=OnStop.CUT)

    def login(self, host: str) -> None:
        """`docker login --username U --password-stdin HOST`: the password goes to the CLI's
        stdin only (never argv, logs or errors). Like any `docker login`, it stores the
        credentials in the docker client's config (`$DOCKER_CONFIG/config.json`, by default
        `~/.docker/config.json`, or its credential helper). Not mutating for the environment:
        retried on transient faults like a read.
        """
        spec = self.registries[host]
        password = self.secret_values().get(spec.password_secret)
        if password is None:
            raise RegistryError(
                f"registry {host}: password_secret {spec.password_secret} is not one of the "
                "state's secrets"
            )
        argv = [*self._docker_cmd(), "login", "--username", spec.username]
        argv += ["--password-stdin", host]
        try:
            self._call(argv, mutating=False, stdin=password)
        except DockerError as error:
            reason = error.message.replace(password, "***") if password else error.message
            raise RegistryError(
                f"registry {host}: docker login as {spec.username} failed: {reason}"
            ) from None
        _log.info("logged in to registry", registry=host, username=spec.username)

    def _login_for(self, reference: str) -> None:
        """Log in to `reference`'s registry first, once per adapter, when it has credentials."""
        host = registry_host(reference)
        if host not in self.registries:
            return
        with self._login_lock:
            if host not in self._logged_in:
                self.login(host)
                self._logged_in.add(host)

    def up(self, services: Sequence[str], *, force_recreate: bool = False) -> None:
        """`compose up -d` for `services` only; images are built and pulled beforehand.

        Run as a CLI argv here rather than through python-on-whales' `compose.up`, which gives
        no hold on the child process: a recreate must run to its end on a first stop request,
        and be terminated on a second.
        """
        argv = [*self._compose_cmd(), "up", "--detach", "--no-build", "--pull", "never"]
        if force_recreate:
            argv.append("--force-recreate")
        self._call(
            [*argv, *services],
            mutating=True,
            timeout=_UP_TIMEOUT,
            on_line=_compose_output,
            compose=True,
        )

    def down(self, *, volumes: bool) -> None:
        """`compose down` of every service, keeping named volumes unless `volumes`.

        With every profile enabled (`--profile '*'`): compose 2.26 leaves running the containers
        of services whose profile is not enabled, such as those of a profile a state enabled
        before; the whole project goes down whatever its profiles.
        """
        if self.swarm:
            self.stack_remove()
            return
        argv = [*self._compose_cmd(), "--profile", "*", "down"]
        argv += ["--volumes"] if volumes else []
        self._call(argv, mutating=True, timeout=_UP_TIMEOUT, compose=True)

    # ---- the engine lock (reconciler.locks.engine) ------------------------------------------

    def engine_endpoint(self) -> str:
        """The URL of the engine the calls reach, as the docker CLI resolves it: the state's URL;
        a context's docker endpoint (`docker context inspect`: one local call, no daemon);
        else DOCKER_HOST, else DOCKER_CONTEXT or the CLI config's current context, else the
        default socket (no call for these last: the local engine costs nothing)."""
        engine = self.engine or Engine()
        if engine.host is not None:
            return engine.host
        if engine.context is None:
            if os.environ.get("DOCKER_HOST"):
                return os.environ["DOCKER_HOST"]
            if not os.environ.get("DOCKER_CONTEXT") and _current_context() in (None, "default"):
                return _DEFAULT_HOST
        argv = [*self._docker_cmd(), "context", "inspect"]
        out = self._read([*argv, "--format", "{{json .Endpoints.docker.Host}}"])
        try:
            host = json.loads(out.strip().splitlines()[0])
        except (ValueError, IndexError):
            host = None
        if not isinstance(host, str) or not host:
            raise PermanentDockerError(
                f"no docker endpoint in the context of engine {engine}: {out.strip()[:200]!r}",
                command=tuple(argv),
            )
        return host

    def lock_start(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        command: Sequence[str],
        *,
        timeout: float = _READ_TIMEOUT,
    ) -> LockContainer:
        """`docker run --interactive --rm --name NAME ...`: the engine lock's container, left
        running beside the run, with this process holding its stdin (`processes.Background`).

        Returns once the container printed its first line (its id: it runs); raises
        `LockNameInUse` when the engine has a container of that name, `LockImageMissing` when
        it lacks `image` (nothing was created for either), else the classified fault. Never
        retried: a create that may have started is not repeated.
        """
        argv = [*self._docker_cmd(), "container", "run", "--interactive", "--rm"]
        argv += ["--pull", "never", "--name", name, "--network", "none", "--log-driver", "none"]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        argv += [image, *command]
        self.calls.append(DockerCall(tuple(argv), mutating=True, engine_lock=True))
        what = f"docker container run --name {name}"
        try:
            child = processes.start(argv)
        except FileNotFoundError as error:
            raise PermanentDockerError(
                f"docker CLI not found: {argv[0]}", command=tuple(argv)
            ) from error
        try:
            line = child.first_line(stop=self.stop, timeout=timeout, what=what)
        except ProcessTimeout as error:
            raise PermanentDockerError(
                f"no answer within {timeout:g} s; not retried, as it may have run",
                command=tuple(argv),
                output=error.stderr,
            ) from error
        if line is not None and line.strip():
            _log.debug("docker call", argv=_short(argv), held=True)
            return LockContainer(child, line.strip())
        child.terminate()
        raise lock_start_error(argv, name, child.returncode, child.stderr())

    def lock_inspect(self, name: str) -> LockFacts | None:
        """The container called `name` (its id, state and labels); None when there is none."""
        argv = [*self._docker_cmd(), "container", "inspect", name]
        try:
            out = self._read(argv)
        except PermanentDockerError as error:
            if "no such container" in f"{error.message}\n{error.output}".lower():
                return None
            raise
        items = json.loads(out) if out.strip() else []
        if not items:
            return None
        item = items[0]
        return LockFacts(
            id=str(item.get("Id") or ""),
            status=str((item.get("State") or {}).get("Status") or "unknown"),
            labels={
                str(k): str(v) for k, v in ((item.get("Config") or {}).get("Labels") or {}).items()
            },
        )

    def lock_remove(self, container_id: str, *, force: bool = False) -> bool:
        """Remove a lock container by id (never by name: a newer lock under the same name is
        someone else's); without `force` the engine refuses a running one. False when there
        was none."""
        argv = [*self._docker_cmd(), "container", "rm", *(["--force"] if force else [])]
        try:
            self._call([*argv, container_id], mutating=True, engine_lock=True)
        except PermanentDockerError as error:
            if "no such container" in f"{error.message}\n{error.output}".lower():
                return False
            raise
        return True

    def lock_release(self, held: LockContainer, *, timeout: float = 30.0) -> None:
        """Release the engine lock: close its container's stdin; with `--rm` the CLI returns once
        the engine removed it (no further call). When the CLI fails or hangs (the connection is
        gone), the container is removed by id, which raises if the engine cannot be reached."""
        if held.process.close(timeout) and held.process.returncode == 0:
            return
        held.process.terminate()
        self.lock_remove(held.container_id, force=True)

    # ---- plumbing -----------------------------------------------------------------------

    @property
    def engine_host(self) -> str:
        """The target engine's host name, from its URL (127.0.0.1 for a local engine)."""
        return (self.engine or Engine()).engine_host

    @property
    def mutating_calls(self) -> list[DockerCall]:
        """The recorded calls that changed something of the project (the engine lock's own
        calls are left out: see `DockerCall.engine_lock`)."""
        return [call for call in self.calls if call.mutating and not call.engine_lock]

    # The argv prefixes are python_on_whales' (`ClientConfig.docker_cmd` and
    # `.docker_compose_cmd` for the adapter's options; tests/cli/test_main_startup.py holds them
    # equal), built here: importing python_on_whales costs about 0.08 s, and a plan needs none
    # of it but these lists.

    def _docker_cmd(self) -> list[str]:
        engine = self.engine or Engine()
        return [
            *self._local_docker_cmd(),
            *(["--context", engine.context] if engine.context is not None else []),
            *(["--host", engine.host] if engine.host is not None else []),
        ]

    def _local_docker_cmd(self) -> list[str]:
        if self._docker is None:
            self._docker = _docker_path()
        return [self._docker]

    def _compose_cmd(self) -> list[str]:
        return [
            *self._docker_cmd(),
            "compose",
            *("--file", str(self.compose_file)),
            *(part for profile in self.profiles for part in ("--profile", profile)),
            *(part for path in self.env_files for part in ("--env-file", str(path))),
            *(["--project-name", self.project] if self.project is not None else []),
        ]

    def _compose_base_cmd(self) -> list[str]:
        """compose with no options, for `config` alone: the compose plugin run by itself
        (standalone) when it is found where the docker CLI looks, else `docker compose`.

        `config` never talks to the engine, so the docker CLI in front of the plugin only
        costs time: its own start and a `docker-cli-plugin-metadata` run of the plugin before
        the real one, about 0.05 s per call (half of a `config`), on a plan's critical path.
        """
        plugin = _compose_plugin()
        return [str(plugin)] if plugin is not None else [*self._docker_cmd(), "compose"]

    def _compose_config_cmd(self) -> list[str]:
        """`_compose_cmd()` with `_compose_base_cmd()` in front of the same options (as it is
        should python_on_whales ever put something else before them)."""
        compose, prefix = self._compose_cmd(), [*self._docker_cmd(), "compose"]
        if compose[: len(prefix)] != prefix:
            return compose
        return [*self._compose_base_cmd(), *compose[len(prefix) :]]

    def _read(self, argv: list[str], *, stderr: bool = False, compose: bool = False) -> str:
        done = self._call(argv, mutating=False, compose=compose)
        return done.stdout + (done.stderr if stderr else "")

    def _call(
        self,
        argv: list[str],
        *,
        mutating: bool,
        timeout: float | None = _READ_TIMEOUT,
        allow_missing: bool = False,
        exec_in_container: bool = False,
        on_stop: OnStop | None = None,
        retry: bool = True,
        on_line: Callable[[str], None] | None = None,
        compose: bool = False,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        engine_lock: bool = False,
    ) -> Finished:
        """Run one docker CLI command through `reconciler.runtime.processes`, retrying what is safe.

        A `compose` call gets the state's secrets in its environment (compose interpolates
        the whole file for every command); `env` adds more variables; `stdin` is written to
        its standard input. None of them is in argv.

        Reads are retried on transient faults. A mutating call is retried only when its fault
        proves that nothing ran (the CLI could not reach the daemon at all); a timeout or a
        connection lost mid-way may have left it running, so it fails at once, saying so. A
        first stop request cuts a read or a build; other mutations finish first.
        """
        if on_stop is None:
            on_stop = OnStop.FINISH if mutating else OnStop.CUT
        extra = {**(self.secret_values() if compose else {}), **(env or {})}
        environment = {**os.environ, **extra} if extra else None

        what = _short(argv, 120)

        def attempt() -> Finished:
            self.calls.append(DockerCall(tuple(argv), mutating, engine_lock))
            try:
                done = processes.run(
                    argv,
                    stop=self.stop,
                    on_stop=on_stop,
                    timeout=timeout,
                    what=what,
                    on_line=on_line,
                    env=environment,
                    stdin=stdin,
                )
            except ProcessTimeout as error:
                if mutating:
                    raise PermanentDockerError(
                        f"no answer within {timeout:g} s; not retried, as it may have run"
                        + (
                            " and may still be running in the container"
                            if exec_in_container
                            else ""
                        ),
                        command=tuple(argv),
                        output=error.stderr,
                    ) from error
                raise classify(argv, f"i/o timeout: no answer within {timeout} s", "") from error
            except FileNotFoundError as error:
                raise PermanentDockerError(
                    f"docker CLI not found: {argv[0]}", command=tuple(argv)
                ) from error
            # A read that ended as a stop came is not used; its end is never logged after the
            # line that says the run acts on the stop (another thread's cut).
            with self.stop.unless_stopped(f"after {what}", cut=on_stop is OnStop.CUT):
                _log.debug(
                    "docker call",
                    argv=_short(argv),
                    rc=done.returncode,
                    seconds=round(done.seconds, 3),
                )
            if done.returncode == 0:
                return done
            if done.returncode < 0:  # the docker CLI itself was killed, whatever it printed
                raise killed(argv, done.returncode, done.stderr, done.stdout)
            if exec_in_container and not docker_failed(done.returncode, done.stderr):
                return done  # the command's own exit code, for the caller to judge
            if allow_missing and only_missing_images(done.stderr):
                return done
            raise classify(argv, done.stderr, done.stdout)

        if not retry:
            return attempt()
        return retrying(
            self.retry,
            attempt,
            what=_short(argv),
            mutating=mutating,
            stop=self.stop,
            abandoned=None if mutating else self._abandoned,
        )


def _docker_path() -> str:
    """The docker CLI on PATH, as python_on_whales finds it; its `ClientNotFoundError` when
    there is none."""
    found = shutil.which("docker")
    if found is None:
        from python_on_whales import DockerClient  # noqa: PLC0415 - raises the error it always did

        return str(DockerClient().client_config.docker_cmd[0])
    return str(Path(found))


def _compose_plugin() -> Path | None:
    """The compose CLI plugin the docker CLI runs: the first executable docker-compose where
    it looks (the user's plugin directory first); None when there is none, or when
    RECONCILER_COMPOSE_VIA_DOCKER=1 asks for every compose command through `docker` (a
    wrapper named docker on PATH that must see them all)."""
    if os.environ.get("RECONCILER_COMPOSE_VIA_DOCKER") == "1":
        return None
    home = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    directories = [Path(home), *(Path(root) / "docker" for root in _PLUGIN_ROOTS)]
    for directory in directories:
        path = directory / "cli-plugins" / "docker-compose"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _compose_binary(plugin: Path | None) -> str | None:
    """`path size mtime_ns` of the compose plugin; None when there is none (or it is gone)."""
    if plugin is None:
        return None
    try:
        info = plugin.stat()
    except OSError:
        return None
    return f"{plugin} {info.st_size} {info.st_mtime_ns}"


@dataclass(frozen=True)
class LockContainer:
    """A running engine-lock container, and the `docker run` child whose stdin keeps it so."""

    process: Background
    container_id: str  # the short id it printed (its HOSTNAME)

    @property
    def running(self) -> bool:
        """True while the lock's `docker run` runs: the container and its connection live."""
        return self.process.alive


@dataclass(frozen=True)
class LockFacts:
    """A container found under the lock's name."""

    id: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    labels: dict[str, str]


def _current_context() -> str | None:
    """The docker CLI config's `currentContext` ($DOCKER_CONFIG, else ~/.docker), if any."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    try:
        config = json.loads(read_bytes(Path(directory, "config.json"), "docker CLI config"))
    except (OSError, ValueError, InputError):
        return None
    current = config.get("currentContext") if isinstance(config, dict) else None
    return current if isinstance(current, str) and current else None


def _compose_output(line: str) -> None:
    """compose's progress lines (container created, waiting, healthy, started), for a live view."""
    _log.debug(ProgressEvent.COMPOSE_OUTPUT, line=line)


def _short(argv: Sequence[str], limit: int = 300) -> str:
    """A loggable form of a command: long argument lists are elided."""
    text = " ".join(argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _container_facts(item: dict[str, Any], stack: str | None = None) -> ContainerFacts:
    """A container's facts; for a stack's task container (`stack`: the stack's name), its
    service is the swarm service's name without the stack's prefix.

    Read from docker's JSON as it is, the fields python_on_whales' `ContainerInspectResult`
    names (tests/cli/test_main_startup.py holds the two equal): its models are not imported on
    a plan's path."""
    labels: dict[str, str] = dict(_object(item.get("Config")).get("Labels") or {})
    if stack is not None:
        swarm_service = labels.get("com.docker.swarm.service.name", "")
        labels = {**labels, "com.docker.compose.service": swarm_service.removeprefix(f"{stack}_")}
        labels.pop("com.docker.compose.config-hash", None)
    state = _object(item.get("State"))
    health = _object(state.get("Health"))
    log = health.get("Log") or []
    last_output = (str(_object(log[-1]).get("Output") or "")).strip() if log else None
    return ContainerFacts(
        id=str(item.get("Id") or ""),
        name=str(item.get("Name") or "").lstrip("/"),
        service=labels.get("com.docker.compose.service", ""),
        status=str(state.get("Status") or "unknown"),
        health=str(health.get("Status") or "") or None,
        exit_code=int(state.get("ExitCode") or 0),
        config_hash=labels.get("com.docker.compose.config-hash"),
        image_id=labels.get("com.docker.compose.image") or str(item.get("Image") or ""),
        oneoff=labels.get("com.docker.compose.oneoff", "False") == "True",
        last_health_output=last_output,
        restart_count=int(item.get("RestartCount") or 0),
        started_at=str(state.get("StartedAt") or ""),
        finished_at=str(state.get("FinishedAt") or ""),
        health_log=tuple(
            HealthProbe(
                str(_object(probe).get("Start") or ""),
                str(_object(probe).get("End") or ""),
                int(_object(probe).get("ExitCode") or 0),
            )
            for probe in log
        ),
        restart_policy=str(
            ((item.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or ""
        ),
    )


def _object(value: object) -> dict[str, Any]:
    """`value` when docker's JSON has an object there, else an empty one (null, absent)."""
    return value if isinstance(value, dict) else {}


def _swarm_service(item: dict[str, Any], stack: str) -> SwarmService:
    from python_on_whales.components.service.models import (  # noqa: PLC0415
        ServiceInspectResult,
    )

    parsed = ServiceInspectResult.model_validate(item)
    spec = parsed.spec
    template = spec.task_template if spec else None
    container = template.container_spec if template else None
    mode = (item.get("Spec") or {}).get("Mode") or {}
    replicated = mode.get("Replicated")
    previous = ((item.get("PreviousSpec") or {}).get("TaskTemplate") or {}).get("ContainerSpec")
    status = parsed.update_status
    return SwarmService(
        id=parsed.id or "",
        name=((spec.name if spec else None) or "").removeprefix(f"{stack}_"),
        image=(container.image if container else None) or "",
        replicas=int(replicated.get("Replicas") or 0) if isinstance(replicated, dict) else None,
        labels=dict((spec.labels if spec else None) or {}),
        container_labels=dict((container.labels if container else None) or {}),
        update_state=(status.state if status else None) or None,
        update_message=(status.message if status else None) or "",
        previous_image=str(previous.get("Image")) if isinstance(previous, dict) else None,
    )


def _swarm_task(item: dict[str, Any]) -> SwarmTask:
    from python_on_whales.components.task.models import TaskInspectResult  # noqa: PLC0415

    parsed = TaskInspectResult.model_validate(item)
    status = parsed.status
    container_status = status.container_status if status else None
    spec = parsed.spec.container_spec if parsed.spec else None
    return SwarmTask(
        id=parsed.id or "",
        service_id=parsed.service_id or "",
        slot=parsed.slot,
        desired_state=str(parsed.desired_state or ""),
        state=str((status.state if status else None) or ""),
        message=(status.message if status else None) or "",
        error=(status.err if status else None) or "",
        exit_code=container_status.exit_code if container_status else None,
        container_id=(container_status.container_id if container_status else None) or "",
        image=(spec.image if spec else None) or "",
        labels=dict((spec.labels if spec else None) or {}),
        timestamp=str(item.get("Status", {}).get("Timestamp") or ""),
    )
