"""The compose model as the compose-file step's edits will leave it: what later steps plan from.

The compose-file step plans dotenv edits (the state's `files:` keys, pins of interpolated
images: `env_files.plan_file_edits`) before anything is written. compose interpolates the file
with the env files' values, so the model it printed before those edits (`docker compose
config`) is not the one `compose up` runs after them. From the env files' texts as the edits
will leave them (in memory: nothing is written) this module finds the variables whose value
changes and the values of each service that refer to one (`compose.references`). In the
observed model it then sets what those values become where later steps read them: the image
(what the images step pulls or builds, and the services step runs), the build (context,
dockerfile, args, target), the scale and the environment; and it lists the changed values on
the service (`ServiceConfig.edited`), which the services step recreates, naming the variables.
Pure: the caller reads the texts and the process variables (`referenced_variables`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.compose.dotenv import parse_dotenv
from reconciler.compose.interpolate import InterpolationError, parse_template
from reconciler.compose.references import Reference, load_document, service_references
from reconciler.docker.facts import BuildConfig, ChangedValue, ComposeConfig, ServiceConfig
from reconciler.observe.env_files import env_file_paths, env_file_values, plan_file_edits
from reconciler.state import State

__all__ = ["edited_reason", "planned_images", "planned_model", "referenced_variables"]

_SCALE = frozenset({"scale", "deploy.replicas"})


@dataclass(frozen=True)
class _Edited:
    """The interpolation scope before and after the planned edits, and the compose file's
    references to variables, by service."""

    before: Mapping[str, str]
    after: Mapping[str, str]
    references: Mapping[str, tuple[Reference, ...]]

    def changed(self, service: str) -> list[Reference]:
        """The references of `service` whose value the edits change, in file order."""
        return [
            ref
            for ref in self.references.get(service, ())
            if ref.render(self.before) != ref.render(self.after)
        ]


def referenced_variables(compose_text: str, env_texts: Mapping[Path, str | None]) -> set[str]:
    """The variables the compose file's services and the env files refer to: the process
    variables compose may take instead of (or into) an env file's value."""
    names = {
        name
        for references in service_references(load_document(compose_text)).values()
        for ref in references
        for name in ref.names
    }
    for path, text in env_texts.items():
        if text is None:
            continue
        for entry in parse_dotenv(text, source=path).entries:
            names.update(
                _entry_names(entry.template, entry.interpolated, entry.inherited, entry.key)
            )
    return names


def _entry_names(template: str, interpolated: bool, inherited: bool, key: str) -> Iterable[str]:
    if inherited:
        return (key,)
    if not interpolated or "$" not in template:
        return ()
    try:
        return tuple(parse_template(template).names())
    except InterpolationError:
        return ()


def planned_model(
    state: State,
    config: ComposeConfig,
    compose_text: str,
    env_texts: Mapping[Path, str | None],
    *,
    environment: Mapping[str, str],
    secrets: Mapping[str, str] | None = None,
) -> ComposeConfig:
    """`config` (compose's model of the observed files) as the compose-file step's planned
    dotenv edits will leave it. `environment`: the process variables the files refer to;
    `secrets`: the state's secrets, which compose's calls get in their environment."""
    edited = _edited(state, compose_text, env_texts, environment, secrets or {})
    if edited is None:
        return config
    services = {
        name: _planned_service(spec, edited.changed(name), edited, state.compose.file)
        for name, spec in config.services.items()
    }
    return dataclasses.replace(config, services=services)


def planned_images(
    state: State,
    compose_text: str,
    env_texts: Mapping[Path, str | None],
    *,
    environment: Mapping[str, str],
    secrets: Mapping[str, str] | None = None,
) -> set[str]:
    """The image references the planned edits make services name (known before compose's
    model is read, so the observation inspects them in its first round)."""
    edited = _edited(state, compose_text, env_texts, environment, secrets or {})
    if edited is None:
        return set()
    return {
        image
        for service in edited.references
        for ref in edited.changed(service)
        if ref.where == "image" and (image := ref.render(edited.after)) and "\0" not in image
    }


def _edited(
    state: State,
    compose_text: str,
    env_texts: Mapping[Path, str | None],
    environment: Mapping[str, str],
    secrets: Mapping[str, str],
) -> _Edited | None:
    """The scopes before and after the planned edits; None when the edits change no
    variable compose interpolates with."""
    edits = plan_file_edits(state, compose_text, env_texts, environment)
    after_texts = {**env_texts, **edits.texts}
    paths = env_file_paths(state)
    if all(after_texts.get(path) == env_texts.get(path) for path in paths):
        return None
    process = {**environment, **secrets}  # compose's own environment wins over env files
    before, after = _scope(state, env_texts, process), _scope(state, after_texts, process)
    if before == after:
        return None
    return _Edited(before, after, service_references(load_document(compose_text)))


def _scope(
    state: State, texts: Mapping[Path, str | None], process: Mapping[str, str]
) -> dict[str, str]:
    """The values compose interpolates with, given these env file texts."""
    parsed = {
        path: parse_dotenv(text, source=path)
        for path in env_file_paths(state)
        if (text := texts.get(path)) is not None
    }
    return {**env_file_values(state, parsed, process), **process}


def _planned_service(
    spec: ServiceConfig, changed: list[Reference], edited: _Edited, compose_file: Path
) -> ServiceConfig:
    """One service as the edits leave it: the values they change set, and listed."""
    if not changed:
        return spec
    values = tuple(
        ChangedValue(ref.where, _changed_names(ref, edited), ref.hashed) for ref in changed
    )
    rendered = {ref.where: ref.render(edited.after) for ref in reversed(changed)}  # own first
    rendered = {where: value for where, value in rendered.items() if "\0" not in (value or "")}
    return dataclasses.replace(
        spec,
        image=rendered.get("image") or spec.image,
        build=_planned_build(spec.build, rendered, compose_file),
        scale=_planned_scale(spec.scale, rendered),
        environment=_planned_pairs(spec.environment, rendered, "environment."),
        edited=values,
    )


def _changed_names(ref: Reference, edited: _Edited) -> tuple[str, ...]:
    """The variables of `ref` whose value differs (all of them, if none alone does)."""
    names = tuple(n for n in ref.names if edited.before.get(n) != edited.after.get(n))
    return names or ref.names


def _planned_scale(scale: int, rendered: Mapping[str, str | None]) -> int:
    for where in _SCALE:
        value = rendered.get(where)
        if value is not None and value.strip().isdigit():
            return int(value.strip())
    return scale


def _planned_pairs(
    pairs: Mapping[str, str], rendered: Mapping[str, str | None], prefix: str
) -> dict[str, str]:
    """A name -> value section (`environment`, build `args`) with the changed entries set:
    `KEY: value` and bare `KEY` entries by key, `- KEY=value` items by their text."""
    result = dict(pairs)
    for where, value in rendered.items():
        if not where.startswith(prefix):
            continue
        rest = where.removeprefix(prefix)
        if "." in rest:
            continue  # deeper than an entry: not a name -> value section
        if rest.isdigit() and value is not None and "=" in value:
            key, _, item = value.partition("=")
            result[key] = item
        elif value is None:
            result.pop(rest, None)
        else:
            result[rest] = value
    return result


def _planned_build(
    build: BuildConfig | None, rendered: Mapping[str, str | None], compose_file: Path
) -> BuildConfig | None:
    """The build section with the changed context, dockerfile, target and args set."""
    if build is None or not any(
        where == "build" or where.startswith("build.") for where in rendered
    ):
        return build
    context = build.context
    new_context = rendered.get("build.context", rendered.get("build"))
    if new_context:
        context = _path(new_context, compose_file.parent)
    dockerfile = build.dockerfile
    if dockerfile.is_relative_to(build.context):
        dockerfile = context / dockerfile.relative_to(build.context)
    new_dockerfile = rendered.get("build.dockerfile")
    if new_dockerfile:
        dockerfile = _path(new_dockerfile, context)
    target = rendered.get("build.target", build.target)
    return BuildConfig(
        context=context,
        dockerfile=dockerfile,
        args=_planned_pairs(build.args, rendered, "build.args."),
        target=target or None,
    )


def _path(value: str, base: Path) -> Path:
    """A path compose resolves against `base` (a URL, such as a git context, is kept)."""
    if "://" in value or value.startswith("git@"):
        return Path(value)
    path = Path(value)
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


_SHOWN_VALUES = 4  # a reason names this many changed values, then counts the others


def edited_reason(values: tuple[ChangedValue, ...], reference: str) -> str:
    """Why the compose-file step's env-file edits recreate (or update) a service: the variables,
    and where compose interpolates them (its new image when that is one of them)."""
    names = list(dict.fromkeys(name for value in values for name in value.variables))
    places = [value.where for value in values]
    shown = ", ".join(places[:_SHOWN_VALUES])
    if len(places) > _SHOWN_VALUES:
        shown += f" and {len(places) - _SHOWN_VALUES} more"
    verb = "changes" if len(names) == 1 else "change"
    reason = (
        f"{', '.join(names)} {verb} with the compose-file step's env-file edits; compose "
        f"interpolates {'it' if len(names) == 1 else 'them'} into {shown}"
    )
    if "image" in places:
        reason += f" (image {reference})"
    if all(not value.hashed for value in values):
        reason += " (not covered by compose's config hash)"
    return reason
