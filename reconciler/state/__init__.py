"""The declared state: pydantic models (`model`) and their YAML loader (`load`).

Everything downstream (observe, plan, apply) takes a validated `State`; nothing here does I/O
beyond reading the state file itself.
"""

from reconciler.state.load import load_state
from reconciler.state.model import ComposeSpec, ServiceSpec, State

__all__ = ["ComposeSpec", "ServiceSpec", "State", "load_state"]
