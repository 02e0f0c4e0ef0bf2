"""Which Docker engine a run targets: a docker context name, or a host URL.

A state's `engine:` (or the CLI's `--engine`) is given to the docker CLI as `--context NAME`
or `--host URL` on every call, so docker's own machinery reaches the engine (ssh through the
user's ssh client and config, tcp with TLS from the context or DOCKER_TLS_* variables). With
neither, the docker CLI's environment (DOCKER_HOST, DOCKER_CONTEXT) applies as it always does.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

__all__ = ["SCHEMES", "Engine", "parse_engine"]

SCHEMES = ("ssh", "tcp", "unix")
# docker's own rule for context names (cli/context/store: restrictedNamePattern).
_CONTEXT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Engine:
    """A docker engine to talk to: exactly one of `host` (a URL) and `context` (a name)."""

    host: str | None = None
    context: str | None = None

    @property
    def engine_host(self) -> str:
        """The engine's host name as the URL names it; 127.0.0.1 for a unix socket or a context
        (whose endpoint only the docker CLI's context store knows)."""
        if self.host is None or self.host.startswith("unix://"):
            return _LOCAL_HOST
        return urllib.parse.urlsplit(self.host).hostname or _LOCAL_HOST

    def __str__(self) -> str:
        return self.host or self.context or "default"


def parse_engine(text: str) -> Engine:
    """`text` as an Engine; a `ValueError` saying what is wrong with it otherwise."""
    text = text.strip()
    scheme = _SCHEME.match(text)
    if scheme is None:
        if "://" in text or not _CONTEXT_NAME.match(text):
            raise ValueError(
                f"{text!r} is neither a docker context name (letters, digits, _ . + -) "
                f"nor a URL ({', '.join(f'{s}://' for s in SCHEMES)})"
            )
        return Engine(context=text)
    kind = scheme.group(1).lower()
    if kind not in SCHEMES:
        raise ValueError(
            f"unknown engine URL scheme {kind!r}: use a docker context name or "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    parts = urllib.parse.urlsplit(text)
    if kind == "unix":
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise ValueError(f"malformed unix URL {text!r}: expected unix:///absolute/socket/path")
        return Engine(host=text)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"malformed {kind} URL {text!r}: the port is not a number") from None
    if not parts.hostname or " " in parts.netloc:
        raise ValueError(f"malformed {kind} URL {text!r}: no host name")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError(f"malformed {kind} URL {text!r}: expected {kind}://host[:port] only")
    if kind == "tcp" and parts.username is not None:
        raise ValueError(f"malformed tcp URL {text!r}: a tcp URL carries no user")
    if parts.password is not None:
        raise ValueError(
            f"malformed {kind} URL: it carries a password; use keys (ssh) or TLS files (tcp)"
        )
    if port == 0:
        raise ValueError(f"malformed {kind} URL {text!r}: port 0")
    return Engine(host=text)
