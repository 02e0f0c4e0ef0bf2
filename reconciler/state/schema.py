"""The state file's JSON Schema, from the pydantic models, for editors and other validators.

    # yaml-language-server: $schema=../reconciler-state.schema.json

at the top of a state file gives completion and inline errors in editors using the YAML
language server (VS Code's YAML extension, Neovim, Helix, ...). A fleet file has its own
(`schema --fleet`), kept apart so that the state schema stays what editors and tools expect.
"""

from __future__ import annotations

from typing import Any

from reconciler.state.fleet import FleetSpec
from reconciler.state.model import State

__all__ = ["SCHEMA_DIALECT", "fleet_schema", "state_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def state_schema() -> dict[str, Any]:
    """The JSON Schema of a state file, with the models' descriptions."""
    schema = State.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "reconciler state",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def fleet_schema() -> dict[str, Any]:
    """The JSON Schema of a fleet file (`python -m reconciler schema --fleet`)."""
    schema = FleetSpec.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "reconciler fleet",
        **{key: value for key, value in schema.items() if key != "title"},
    }
