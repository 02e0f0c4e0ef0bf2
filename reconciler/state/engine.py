"""Which Docker engine a run targets: a docker context name, or a host URL.

A state's `engine:` (or the CLI's `--engine`) is given to the docker CLI as `--context NAME`
or `--host URL` on every call, so docker's own machinery reaches the engine (ssh through the
user's ssh client and config, tcp with TLS from the context or DOCKER_TLS_* variables). With
neither, the docker CLI's environment (DOCKER_HOST, DOCKER_CONTEXT) applies as it always does.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from dataclasses import dataclass

__all__ = ["SCHEMES", "Engine", "parse_engine"]

SCHEMES = ("ssh", "tcp", "unix")
# docker's own rule for context names (cli/context/store: restrictedNamePattern).
_CONTEXT_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.+-]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# The host and user of an ssh:// or tcp:// URL reach ssh's argv (docker runs `ssh ... user@host`):
# neither may start with `-` (ssh would read an option: `-oProxyCommand=...`), nor hold anything
# but the characters of a host name, an IP address or a login name.
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
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
    """`text` as an Engine; a `ValueError` saying what is wrong with it otherwise.

    Nothing is stripped or repaired: an engine with whitespace or a control character in it,
    or whose user or host could be read as an option, is refused, never passed on.
    """
    _refuse_controls(text)
    scheme = _SCHEME.match(text)
    if scheme is None:
        if "://" in text or not _CONTEXT_NAME.fullmatch(text):
            raise ValueError(
                f"{text!r} is neither a docker context name (letters, digits, _ . + -, starting "
                f"with a letter or digit) nor a URL ({', '.join(f'{s}://' for s in SCHEMES)})"
            )
        return Engine(context=text)
    kind = scheme.group(1).lower()
    if kind not in SCHEMES:
        raise ValueError(
            f"unknown engine URL scheme {kind!r}: use a docker context name or "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if any(char.isspace() for char in text):
        raise ValueError(f"malformed {kind} URL: it contains whitespace")
    parts = urllib.parse.urlsplit(text)
    if kind == "unix":
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise ValueError(f"malformed unix URL {text!r}: expected unix:///absolute/socket/path")
        return Engine(host=text)
    if parts.password is not None:  # first: every later message shows the URL
        raise ValueError(
            f"malformed {kind} URL: it carries a password; use keys (ssh) or TLS files (tcp)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"malformed {kind} URL {text!r}: the port is not a number") from None
    if not parts.hostname:
        raise ValueError(f"malformed {kind} URL {text!r}: no host name")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError(f"malformed {kind} URL {text!r}: expected {kind}://host[:port] only")
    if kind == "tcp" and parts.username is not None:
        raise ValueError(f"malformed tcp URL {text!r}: a tcp URL carries no user")
    _check_host_and_user(kind, text, parts)
    if port == 0:
        raise ValueError(f"malformed {kind} URL {text!r}: port 0")
    return Engine(host=text)


def _refuse_controls(text: str) -> None:
    """No control or format character anywhere: the engine reaches docker's and ssh's argv and
    every message naming it, where a newline or an escape sequence is never what was meant.
    The text is not shown: it may hold a password."""
    for position, char in enumerate(text, start=1):
        if unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"}:
            raise ValueError(
                f"the engine contains the control character {char!r} at position {position}; "
                "give a docker context name or an ssh://, tcp://, unix:// URL on one line"
            )


def _check_host_and_user(kind: str, text: str, parts: urllib.parse.SplitResult) -> None:
    """The host is a host name or an IP address, the user a login name: neither starts with
    `-`, neither holds `%`-escapes, `=` or other characters ssh or docker could misread."""
    userinfo, at, host = parts.netloc.rpartition("@")
    if parts.port is not None:
        host = host[: host.rindex(":")]
    if not (_HOST_NAME.fullmatch(host) or _IPV6.fullmatch(host)):
        raise ValueError(
            f"malformed {kind} URL {text!r}: the host {host!r} is not a host name or an IP "
            f"address{_option_like(host)}"
        )
    if at and not _USER.fullmatch(userinfo):
        raise ValueError(
            f"malformed {kind} URL {text!r}: the user {userinfo!r} is not a login name "
            f"(letters, digits, . _ -, not starting with '-'){_option_like(userinfo)}"
        )


def _option_like(part: str) -> str:
    return " (it starts with '-': ssh would read it as an option)" if part[:1] == "-" else ""
