"""Secrets never printed: a registry of secret values and the redaction every output goes through.

Values are registered when observed: environment entries and build args whose key looks secret
(PASSWORD, SECRET, TOKEN, KEY, DSN, ...), passwords inside URLs, lines of that kind in the
compose file, and the environment variables a state lists in `sensitive_env`. Observation
records them in its snapshot (`Snapshot.secrets`, passed on in `ComposeFileFacts.secrets`), so a
diff masks them from its inputs alone, and adds them to the run's `Secrets`. The CLI wraps stdout
and stderr in `RedactingStream` over its run's `Secrets`, and reports are redacted before they
are written, so a changed secret shows as changed (`***`) but never in clear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TextIO

__all__ = ["MASK", "RedactingStream", "Secrets", "looks_secret"]

MASK = "***"
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|KEY|DSN|CREDENTIAL|AUTH", re.I)
_URL_CREDENTIALS = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]+:)(?P<password>[^@\s'\"]+)(?P<at>@)"
)
_ASSIGNMENT = re.compile(
    r"^\s*-?\s*['\"]?(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)['\"]?\s*[:=]\s*"
    r"(?P<q>['\"]?)(?P<value>.*?)(?P=q)['\"]?\s*(?:#.*)?$"
)
_MIN_LENGTH = 4  # shorter values would mask ordinary words


def looks_secret(name: str) -> bool:
    """True for a key such as DB_PASSWORD, API_TOKEN, SECRET_KEY or SENTRY_DSN."""
    return bool(_SECRET_NAME.search(name))


class Secrets:
    """The secret values one run has seen, and the redaction of its output.

    Each run (each CLI invocation, each library call given one) owns its own: nothing leaks
    between runs in one process, and a plan's text never depends on what ran before.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        for value in values:
            self.register(value)

    @property
    def values(self) -> frozenset[str]:
        """The registered values."""
        return frozenset(self._values)

    def register(self, value: str) -> None:
        """Never print `value` (values shorter than four characters are ignored)."""
        if len(value) >= _MIN_LENGTH:
            self._values.add(value)

    def update(self, values: Iterable[str]) -> None:
        """Register every value of `values`."""
        for value in values:
            self.register(value)

    def register_mapping(self, mapping: Mapping[str, object]) -> None:
        """Register values under secret-looking keys, and passwords inside any URL value."""
        for key, value in mapping.items():
            if not isinstance(value, str):
                continue
            if looks_secret(str(key)):
                self.register(value)
            for match in _URL_CREDENTIALS.finditer(value):
                self.register(match.group("password"))

    def register_environment(self, names: Iterable[str]) -> None:
        """Register the current values of these environment variables."""
        for name in names:
            value = os.environ.get(name)
            if value:
                self.register(value)

    def register_compose_text(self, text: str) -> None:
        """Register literal values assigned to secret-looking keys in a compose file's text."""
        for line in text.splitlines():
            match = _ASSIGNMENT.match(line)
            if not match:
                continue
            value = match.group("value").strip().strip("'\"")
            if looks_secret(match.group("name")) and value and "${" not in value:
                self.register(value)
            for url in _URL_CREDENTIALS.finditer(value):
                if "${" not in url.group("password"):
                    self.register(url.group("password"))

    def redact(self, text: str) -> str:
        """`text` with every registered secret and every URL password replaced by ***."""
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return _URL_CREDENTIALS.sub(lambda m: m.group("head") + MASK + m.group("at"), text)

    def mask_line(self, line: str) -> str:
        """A compose-file line with the value of a secret-looking key masked (for diffs)."""
        match = _ASSIGNMENT.match(line.rstrip("\r\n"))
        if match and looks_secret(match.group("name")) and match.group("value"):
            start, end = match.span("value")
            return line[:start] + MASK + line[end:]
        return self.redact(line)


class RedactingStream:
    """A text stream that redacts secrets from everything written through it."""

    def __init__(self, inner: TextIO, secrets: Secrets) -> None:
        self._inner = inner
        self._secrets = secrets

    def write(self, text: str) -> int:
        self._inner.write(self._secrets.redact(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:
        return self._inner.encoding
