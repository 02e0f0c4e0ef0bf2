"""What the checks step probes beyond HTTP and exec: service logs, host commands, Prometheus.

Each probe is one attempt that returns a detail or raises `NotYet` (try again until the
check's deadline) or `Failed` (can no longer pass). The checks step owns the retry loop.
"""

from __future__ import annotations

__all__ = ["ENGINE_HOST", "Failed", "NotYet"]

# In a check's URL: the target engine's host name (`engine:`), where its published ports are.
ENGINE_HOST = "{engine_host}"


class NotYet(Exception):
    """An attempt that did not pass (yet); its message is the detail."""


class Failed(Exception):
    """A check that can no longer pass; its message is the detail."""
