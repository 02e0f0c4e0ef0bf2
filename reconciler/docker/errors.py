"""Sort docker CLI failures into transient (retry) and permanent (fail at once).

The patterns are the daemon's and CLI's own texts for faults that go away by themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.errors import DockerError, PermanentDockerError, TransientDockerError

__all__ = ["TRANSIENT_PATTERNS", "classify"]

TRANSIENT_PATTERNS: tuple[str, ...] = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "i/o timeout",
    "context deadline exceeded",
    "connection reset by peer",
    "connection refused",
    "tls handshake timeout",
    "client.timeout exceeded",
    "unexpected eof",
    "device or resource busy",
)


def classify(argv: Sequence[str], stderr: str, stdout: str = "") -> DockerError:
    """The error for a failed docker call, transient when its text says so."""
    text = (stderr or stdout).strip()
    lowered = text.lower()
    summary = _summary(text) or "docker exited with an error and no message"
    kind = (
        TransientDockerError
        if any(pattern in lowered for pattern in TRANSIENT_PATTERNS)
        else PermanentDockerError
    )
    return kind(summary, command=tuple(argv), output=text)


def _summary(text: str) -> str:
    """The most telling line of docker's output: the last error line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""
