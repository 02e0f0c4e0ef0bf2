"""pydantic v2 models of a state file (DESIGN.md §2 core keys).

`load.py` feeds them plain data from YAML and turns their validation errors into `InputError`s
that point at file:line:column; path rules needing the file's location live there too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from reconciler.errors import Location

__all__ = ["ComposeSpec", "ServiceSpec", "State", "valid_image_reference"]

# distribution/reference's grammar: [host[:port]/]path[:tag][@digest], path lower-case.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
_MAX_REFERENCE = 255


def valid_image_reference(value: str) -> str:
    """Accept an image reference docker would accept, else raise ValueError saying why."""
    if len(value) > _MAX_REFERENCE:
        raise ValueError(f"image reference longer than {_MAX_REFERENCE} characters")
    if not _REFERENCE.match(value):
        raise ValueError(
            f"invalid image reference {value!r}: expected [registry/]name[:tag][@digest], "
            "name in lower case"
        )
    return value


ImageReference = Annotated[str, AfterValidator(valid_image_reference)]
_SERVICE_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ComposeSpec(_Strict):
    """Which compose file and project the state governs."""

    file: Path = Field(
        strict=False,  # YAML gives a str; strict mode would only take a Path object
        description="Compose file; relative to the state file's directory.",
    )
    project: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Compose project name; compose's own default when absent.",
    )


class ServiceSpec(_Strict):
    """Desired facts of one compose service."""

    image: ImageReference | None = Field(
        default=None, description="Pins services.<name>.image in the compose file."
    )
    health_timeout: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Seconds to wait for the service to become healthy (or running).",
    )


class State(_Strict):
    """A declared state: the root model of a state file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    compose: ComposeSpec
    services: dict[Annotated[str, Field(pattern=_SERVICE_NAME)], ServiceSpec] = Field(
        default_factory=dict
    )
    allow_outside_root: bool = Field(
        default=False,
        description="Allow paths outside the state's root (git work tree or state directory).",
    )

    # Set by the loader, never by the file: where the state came from and its root.
    _source: Path = PrivateAttr(default=Path("<memory>"))
    _root: Path = PrivateAttr(default=Path())
    _positions: dict[str, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> Path:
        """The state file this state was loaded from."""
        return self._source

    @property
    def root(self) -> Path:
        """The directory every path of this state must stay inside (unless allowed out)."""
        return self._root

    def located(self, source: Path, root: Path, positions: dict[str, tuple[int, int]]) -> State:
        """A copy that knows its file, root and key positions (the loader's job)."""
        copy = self.model_copy()
        copy._source, copy._root, copy._positions = source, root, positions
        return copy

    def location(self, key: str) -> Location:
        """Where `key` (a dotted path such as `services.web.image`) sits in the state file."""
        line, column = self._positions.get(key, (None, None))
        return Location(self._source, line, column, key)

    def pins(self) -> dict[str, str]:
        """services.<name>.image values the compose file must carry."""
        return {name: spec.image for name, spec in self.services.items() if spec.image}
