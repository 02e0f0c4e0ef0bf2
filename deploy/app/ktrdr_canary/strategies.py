"""Strategy definitions: one YAML file per strategy in STRATEGIES_DIR (mounted read-only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

DEFAULT_DIR = "/app/strategies"


class StrategyError(Exception):
    """A strategy is unknown or its file is invalid."""


def strategies_dir() -> Path:
    return Path(os.environ.get("STRATEGIES_DIR", DEFAULT_DIR))


def available() -> list[str]:
    directory = strategies_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yaml") if not p.name.startswith("."))


def load(name: str) -> dict[str, Any]:
    """Load and validate strategy ``name``; raise StrategyError naming it and the known ones."""
    names = available()
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise StrategyError(
            f"unknown strategy {name!r}: no {name}.yaml in {strategies_dir()} "
            f"(available strategies: {known})"
        )
    path = strategies_dir() / f"{name}.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StrategyError(f"strategy {name!r}: {path} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise StrategyError(f"strategy {name!r}: {path} must hold a mapping")
    if config.get("name", name) != name:
        raise StrategyError(f"strategy {name!r}: {path} declares name {config.get('name')!r}")
    indicators = config.get("indicators") or {}
    for key in ("fast_ma", "slow_ma"):
        window = (indicators.get(key) or {}).get("window")
        if not isinstance(window, int) or window < 1:
            raise StrategyError(
                f"strategy {name!r}: indicators.{key}.window must be a positive integer"
            )
    if indicators["fast_ma"]["window"] >= indicators["slow_ma"]["window"]:
        raise StrategyError(
            f"strategy {name!r}: fast_ma.window must be smaller than slow_ma.window"
        )
    config.setdefault("name", name)
    return config
