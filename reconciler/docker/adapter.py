"""The one door to Docker: the only module that imports python_on_whales.

Observation is batched: whatever the number of services, a full observation costs a fixed
number of docker CLI calls (config, config --hash, ps, inspect containers, inspect images).
Every call is recorded in `DockerAdapter.calls` with whether it mutates anything, so callers
and tests can count them. Faults are classified here (`errors.classify`) and transient ones
retried with tenacity (`retry.py`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from python_on_whales import DockerClient
from python_on_whales.components.container.models import ContainerInspectResult
from python_on_whales.exceptions import DockerException

from reconciler.docker.errors import TRANSIENT_PATTERNS, classify
from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    ContainerFacts,
    ImageFacts,
    ServiceConfig,
    normalize_reference,
)
from reconciler.docker.retry import RetryPolicy, retrying
from reconciler.errors import InputError, Location, PermanentDockerError

__all__ = ["DockerAdapter", "DockerCall", "ExecResult"]

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")

# Reads should answer in seconds; a hung daemon must surface as a (transient) timeout.
_READ_TIMEOUT = 60.0
_LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class DockerCall:
    """One docker CLI invocation made through the adapter."""

    argv: tuple[str, ...]
    mutating: bool


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

    def __post_init__(self) -> None:
        self._client = DockerClient(
            compose_files=[self.compose_file], compose_project_name=self.project
        )

    # ---- observation (read-only, batched) ---------------------------------------------

    def compose_config(self) -> ComposeConfig:
        """The normalised compose model (`docker compose config --format json`): one call."""
        try:
            out = self._read([*self._compose_cmd(), "config", "--format", "json"])
        except PermanentDockerError as error:
            raise InputError(
                f"docker compose rejects the file: {_first_line(error.output or error.message)}",
                Location(self.compose_file),
            ) from error
        return _parse_compose_config(json.loads(out))

    def config_hashes(self) -> dict[str, str]:
        """Each service's config hash, as compose computes it for its label: one call."""
        out = self._read([*self._compose_cmd(), "config", "--hash", "*"])
        hashes: dict[str, str] = {}
        for line in out.splitlines():
            name, _, digest = line.strip().rpartition(" ")
            if name:
                hashes[name] = digest
        return hashes

    def containers(self) -> list[ContainerFacts]:
        """All containers of the project with state, health and compose labels: two calls."""
        ids = self._read([*self._compose_cmd(), "ps", "--all", "--quiet"]).split()
        if not ids:
            return []
        out = self._read([*self._docker_cmd(), "container", "inspect", *ids])
        return [_container_facts(item) for item in json.loads(out)]

    def images(self, references: Iterable[str]) -> dict[str, ImageFacts]:
        """Local images for `references` (missing ones are absent from the result): one call."""
        wanted = sorted(set(references))
        if not wanted:
            return {}
        argv = [*self._docker_cmd(), "image", "inspect", *wanted]
        out = self._call(argv, mutating=False, allow_missing=True)
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
                    )
        return found

    def container_logs(self, container_id: str, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines a container wrote (stdout and stderr)."""
        return self._read(
            [*self._docker_cmd(), "logs", "--tail", str(lines), container_id], stderr=True
        )

    def exec(
        self, service: str, argv: Sequence[str], *, mutating: bool, timeout: float = _READ_TIMEOUT
    ) -> ExecResult:
        """Run `argv` in the service's running container (`compose exec -T`), no shell.

        The command's own exit code is returned, not raised; docker's own failures (service
        not running, daemon faults) raise as usual.
        """
        command = [*self._compose_cmd(), "exec", "-T", service, *argv]
        return self._exec(command, mutating=mutating, timeout=timeout)

    def _exec(self, argv: list[str], *, mutating: bool, timeout: float | None) -> ExecResult:
        def attempt() -> ExecResult:
            self.calls.append(DockerCall(tuple(argv), mutating))
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired as error:
                raise classify(argv, f"i/o timeout: no answer within {timeout} s", "") from error
            output = done.stdout + done.stderr
            if done.returncode != 0 and _docker_failed(done.returncode, done.stderr):
                raise classify(argv, done.stderr, done.stdout)
            return ExecResult(done.returncode, done.stdout, output)

        return retrying(self.retry, attempt, what=_short(argv))

    # ---- changes (mutating) -----------------------------------------------------------

    def import_rootfs(self, tarball: Path, reference: str, labels: dict[str, str]) -> None:
        """`docker import` a root filesystem tarball as `reference`, with labels."""
        changes = [f"LABEL {key}={json.dumps(value)}" for key, value in sorted(labels.items())]
        argv = [*self._docker_cmd(), "image", "import"]
        for change in changes:
            argv += ["--change", change]
        argv += [str(tarball), reference]
        self._call(argv, mutating=True, timeout=None)

    def build(self, reference: str, build: BuildConfig, labels: dict[str, str]) -> None:
        """Build `reference` from a compose build section, adding `labels`."""
        argv = [*self._docker_cmd(), "buildx", "build", "--load", "--tag", reference]
        argv += ["--file", str(build.dockerfile)]
        for key, value in sorted(build.args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        if build.target:
            argv += ["--target", build.target]
        argv.append(str(build.context))
        self._call(argv, mutating=True, timeout=None)

    def remove_containers(self, ids: Sequence[str]) -> None:
        """Force-remove containers (leftovers of an interrupted compose recreate)."""
        self._call([*self._docker_cmd(), "container", "rm", "--force", *ids], mutating=True)

    def tag(self, image_id: str, reference: str) -> None:
        """Point `reference` at `image_id` (rollback restores a tag's previous image)."""
        self._call([*self._docker_cmd(), "image", "tag", image_id, reference], mutating=True)

    def pull(self, reference: str) -> None:
        """Pull an image that no compose build section can produce."""
        self._via_client(
            ("image", "pull", reference), lambda: self._client.image.pull(reference, quiet=True)
        )

    def up(self, services: Sequence[str], *, force_recreate: bool = False) -> None:
        """`compose up -d` for `services` only; images are built and pulled beforehand."""
        self._via_client(
            (
                "compose",
                "up",
                "--detach",
                *(["--force-recreate"] if force_recreate else []),
                *services,
            ),
            lambda: self._client.compose.up(
                list(services),
                detach=True,
                build=False,
                no_build=True,
                pull="never",
                force_recreate=force_recreate,
                quiet=True,
            ),
        )

    def down(self, *, volumes: bool) -> None:
        """`compose down`, keeping named volumes unless `volumes`."""
        self._via_client(
            ("compose", "down", *(["--volumes"] if volumes else [])),
            lambda: self._client.compose.down(volumes=volumes, quiet=True),
        )

    # ---- plumbing -----------------------------------------------------------------------

    @property
    def mutating_calls(self) -> list[DockerCall]:
        """The recorded calls that changed something."""
        return [call for call in self.calls if call.mutating]

    def _docker_cmd(self) -> list[str]:
        return [str(part) for part in self._client.client_config.docker_cmd]

    def _compose_cmd(self) -> list[str]:
        return [str(part) for part in self._client.client_config.docker_compose_cmd]

    def _read(self, argv: list[str], *, stderr: bool = False) -> str:
        return self._call(argv, mutating=False, merge_stderr=stderr)

    def _call(
        self,
        argv: list[str],
        *,
        mutating: bool,
        timeout: float | None = _READ_TIMEOUT,
        allow_missing: bool = False,
        merge_stderr: bool = False,
    ) -> str:
        """Run one docker CLI command, retrying transient faults (python-on-whales: prefix).

        python-on-whales' own runner has no timeout, and its inspect of a list makes one call
        per object; batched reads therefore run the CLI form here, with a timeout.
        """

        def attempt() -> str:
            self.calls.append(DockerCall(tuple(argv), mutating))
            started = time.monotonic()
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired as error:
                raise classify(argv, f"i/o timeout: no answer within {timeout} s", "") from error
            except FileNotFoundError as error:
                raise PermanentDockerError(
                    f"docker CLI not found: {argv[0]}", command=tuple(argv)
                ) from error
            _log.debug(
                "docker call",
                argv=_short(argv),
                rc=done.returncode,
                seconds=round(time.monotonic() - started, 3),
            )
            if done.returncode != 0 and not (allow_missing and _only_missing_images(done.stderr)):
                raise classify(argv, done.stderr, done.stdout)
            return done.stdout + (done.stderr if merge_stderr else "")

        return retrying(self.retry, attempt, what=_short(argv))

    def _via_client(self, summary: tuple[str, ...], action: Callable[[], Any]) -> None:
        """Run a python-on-whales high-level call as one recorded, retried, mutating call."""

        def attempt() -> None:
            self.calls.append(DockerCall(("docker", *summary), True))
            try:
                action()
            except DockerException as error:
                raise classify(
                    list(error.docker_command), error.stderr or "", error.stdout or ""
                ) from error

        retrying(self.retry, attempt, what=" ".join(summary))


def _short(argv: Sequence[str]) -> str:
    """A loggable form of a command: long argument lists are elided."""
    text = " ".join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


# Exit codes docker itself uses for "could not run the command" (as `docker run` documents),
# and texts compose prints when the container is not there; anything else is the command's.
_DOCKER_EXEC_CODES = frozenset({125, 126, 127})
_EXEC_FAILURE_TEXTS = (
    "is not running",
    "no such service",
    "no container found",
    "error response from daemon",
)


def _docker_failed(code: int, stderr: str) -> bool:
    lowered = stderr.lower()
    if any(pattern in lowered for pattern in TRANSIENT_PATTERNS):
        return True
    return code in _DOCKER_EXEC_CODES or any(text in lowered for text in _EXEC_FAILURE_TEXTS)


def _only_missing_images(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all("no such image" in line.lower() for line in lines)


def _container_facts(item: dict[str, Any]) -> ContainerFacts:
    parsed = ContainerInspectResult.model_validate(item)
    labels = (parsed.config.labels if parsed.config else None) or {}
    state = parsed.state
    health = state.health if state else None
    last_output = None
    if health and health.log:
        last_output = (health.log[-1].output or "").strip()
    return ContainerFacts(
        id=parsed.id or "",
        name=(parsed.name or "").lstrip("/"),
        service=labels.get("com.docker.compose.service", ""),
        status=(state.status if state else None) or "unknown",
        health=(health.status if health else None) or None,
        exit_code=(state.exit_code if state else None) or 0,
        config_hash=labels.get("com.docker.compose.config-hash"),
        image_id=labels.get("com.docker.compose.image") or parsed.image or "",
        oneoff=labels.get("com.docker.compose.oneoff", "False") == "True",
        last_health_output=last_output,
    )


def _parse_compose_config(model: dict[str, Any]) -> ComposeConfig:
    project = str(model.get("name") or "")
    services: dict[str, ServiceConfig] = {}
    for name, spec in (model.get("services") or {}).items():
        build = spec.get("build")
        build_config = None
        if isinstance(build, dict):
            context = Path(str(build.get("context", ".")))
            dockerfile = Path(str(build.get("dockerfile") or "Dockerfile"))
            build_config = BuildConfig(
                context=context,
                dockerfile=dockerfile if dockerfile.is_absolute() else context / dockerfile,
                args={
                    str(k): "" if v is None else str(v)
                    for k, v in (build.get("args") or {}).items()
                },
                target=build.get("target"),
            )
        healthcheck = spec.get("healthcheck") or {}
        depends_on = {
            str(dep): str((cond or {}).get("condition", "service_started"))
            for dep, cond in (spec.get("depends_on") or {}).items()
        }
        services[str(name)] = ServiceConfig(
            name=str(name),
            image=spec.get("image"),
            build=build_config,
            has_healthcheck=bool(healthcheck.get("test")) and not healthcheck.get("disable", False),
            depends_on=depends_on,
            environment={
                str(k): "" if v is None else str(v)
                for k, v in (spec.get("environment") or {}).items()
            },
        )
    return ComposeConfig(project=project, services=services)
