"""Pure parsers of the docker CLI's JSON and text output into facts (`reconciler.docker.facts`).

No process runs here and nothing imports python_on_whales: the adapter runs the commands and
hands their output over. The inspect parsers built on python_on_whales' models (containers,
swarm services and tasks) stay in the adapter, the one module allowed to import it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.docker.errors import last_line
from reconciler.docker.facts import (
    BuildConfig,
    ComposeConfig,
    InputSource,
    PublishedPort,
    ResourceUse,
    ServiceConfig,
)
from reconciler.errors import PermanentDockerError

__all__ = ["byte_size", "compose_config", "container_stats", "hash_lines", "manifest_digest"]


def hash_lines(out: str) -> dict[str, str]:
    """`config --hash` output (`SERVICE HASH` per line) as service -> hash."""
    hashes: dict[str, str] = {}
    for line in out.splitlines():
        name, _, digest = line.strip().rpartition(" ")
        if name:
            hashes[name] = digest
    return hashes


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # fullmatch: `$` passes a final newline


def manifest_digest(output: str, reference: str) -> str:
    """The digest in `imagetools inspect --format '{{json .Manifest}}'` output (a descriptor:
    mediaType, digest, size); a `PermanentDockerError` when the output is not one."""
    try:
        descriptor = json.loads(output)
    except json.JSONDecodeError:
        descriptor = None
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise PermanentDockerError(
            f"unexpected answer for the manifest of {reference}: {last_line(output)[:200]!r}",
            output=output,
        )
    return digest


def _uses(material: object, secrets: Mapping[str, str]) -> set[str]:
    """The names of `secrets` whose value appears in `material` (compose's resolved JSON)."""
    text = json.dumps(material, ensure_ascii=False)
    return {
        name
        for name, value in secrets.items()
        if value and json.dumps(value, ensure_ascii=False)[1:-1] in text
    }


def _unhashed_sources(model: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, set[str]]:
    """("secrets"|"configs", entry) -> names of `secrets` that compose's top-level entry reads:
    from the environment (`environment: NAME`) or interpolated into its `content`."""
    found: dict[str, set[str]] = {}
    for kind in ("secrets", "configs"):
        for entry, spec in (model.get(kind) or {}).items():
            if not isinstance(spec, dict):
                continue
            names = _uses({k: v for k, v in spec.items() if k != "environment"}, secrets)
            if spec.get("environment") in secrets:
                names.add(str(spec["environment"]))
            if names:
                found[f"{kind}/{entry}"] = names
    return found


def _service_secrets(
    spec: dict[str, Any], secrets: Mapping[str, str], unhashed: Mapping[str, set[str]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The secrets a service's config hash covers (compose leaves `build` out of the hash), and
    those it reaches only through unhashed compose secrets and configs."""
    hashed = _uses({k: v for k, v in spec.items() if k != "build"}, secrets)
    reached: set[str] = set()
    for kind in ("secrets", "configs"):
        for item in spec.get(kind) or []:
            source = item.get("source") if isinstance(item, dict) else item
            reached |= unhashed.get(f"{kind}/{source}", set())
    return tuple(sorted(hashed)), tuple(sorted(reached - hashed))


def compose_config(
    model: dict[str, Any],
    text: str = "",
    secrets: Mapping[str, str] | None = None,
    *,
    profiles: Sequence[str] = (),
) -> ComposeConfig:
    """The facts of compose's normalised model (`config --format json`: `model` parsed, `text`
    as printed), with the secrets each service's config hash covers and those it does not."""
    project = str(model.get("name") or "")
    secrets = secrets or {}
    unhashed = _unhashed_sources(model, secrets) if secrets else {}
    config_files = {
        str(name): Path(str(spec["file"]))
        for name, spec in (model.get("configs") or {}).items()
        if isinstance(spec, dict) and spec.get("file")
    }
    services: dict[str, ServiceConfig] = {}
    for name, spec in (model.get("services") or {}).items():
        hashed, reached = _service_secrets(spec, secrets, unhashed) if secrets else ((), ())
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
            ports=_published_ports(spec.get("ports") or []),
            secrets_hashed=hashed,
            secrets_unhashed=reached,
            inputs=_inputs(spec, config_files),
            scale=_scale(spec),
            profiles=tuple(str(profile) for profile in (spec.get("profiles") or ())),
            global_mode=(spec.get("deploy") or {}).get("mode") == "global",
            failure_action=((spec.get("deploy") or {}).get("update_config") or {}).get(
                "failure_action"
            ),
        )
    return ComposeConfig(
        project=project, services=services, resolved=text, profiles=tuple(profiles)
    )


def _inputs(spec: dict[str, Any], config_files: dict[str, Path]) -> tuple[InputSource, ...]:
    """The bind mounts' sources and the file-backed configs a service reads (compose's
    normalised model lists env files only merged into `environment`: observe adds them)."""
    found: list[InputSource] = []
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict) and volume.get("type") == "bind" and volume.get("source"):
            read_only = bool(volume.get("read_only"))
            found.append(InputSource("bind", Path(str(volume["source"])), read_only))
    for config in spec.get("configs") or []:
        name = str(config.get("source", "")) if isinstance(config, dict) else str(config)
        if name in config_files:
            found.append(InputSource("config", config_files[name]))
    return tuple(found)


def _scale(spec: dict[str, Any]) -> int:
    """How many containers compose runs for a service: `scale`, else `deploy.replicas`, else 1.

    compose refuses a file where both are set and differ, so either one is the answer.
    """
    scale = spec.get("scale")
    if scale is None:
        scale = (spec.get("deploy") or {}).get("replicas")
    return 1 if scale is None else max(int(scale), 0)


def _published_ports(ports: list[Any]) -> tuple[PublishedPort, ...]:
    """The TCP ports compose publishes on the host (the first of a published range)."""
    found = []
    for port in ports:
        if not isinstance(port, dict) or port.get("protocol", "tcp") != "tcp":
            continue
        published = str(port.get("published") or "").partition("-")[0]
        if published.isdigit() and str(port.get("target", "")).isdigit():
            found.append(
                PublishedPort(int(port["target"]), int(published), str(port.get("host_ip") or ""))
            )
    return tuple(found)


def container_stats(out: str) -> dict[str, ResourceUse]:
    """`docker stats --no-stream --no-trunc --format '{{json .}}'` output as container ID ->
    its use. A container whose figures docker could not read (`--`, as for one that just
    stopped) is left out."""
    found: dict[str, ResourceUse] = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            memory = byte_size(str(item["MemUsage"]).partition("/")[0])
            cpu = float(str(item["CPUPerc"]).strip().rstrip("%"))
            container = str(item["ID"])
        except (ValueError, KeyError, TypeError):
            continue
        found[container] = ResourceUse(memory, cpu)
    return found


# The units docker prints sizes in: binary for memory (go-units' BytesSize), decimal elsewhere.
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*")


def byte_size(text: str) -> int:
    """A size as docker prints it (`312KiB`, `1.944GiB`, `25.6MB`, `0B`) in bytes; ValueError
    for anything else."""
    match = _SIZE.fullmatch(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2).lower()])
