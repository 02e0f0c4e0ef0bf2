"""The state file's JSON Schema, from the pydantic models, for editors and other validators.

    # yaml-language-server: $schema=../reconciler-state.schema.json

at the top of a state file gives completion and inline errors in editors using the YAML
language server (VS Code's YAML extension, Neovim, Helix, ...).
"""

from __future__ import annotations

from typing import Any

from reconciler.state.model import State

__all__ = ["SCHEMA_DIALECT", "state_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def state_schema() -> dict[str, Any]:
    """The JSON Schema of a state file, with the models' descriptions."""
    schema = State.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "reconciler state",
        **{key: value for key, value in schema.items() if key != "title"},
    }
