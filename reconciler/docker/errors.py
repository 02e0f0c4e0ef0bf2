"""Sort docker CLI failures into transient (retry) and permanent (fail at once), and tell
docker's own failure to run a command from the command's exit (`docker_failed`): the one
module for docker's fault texts.

The patterns are the daemon's and CLI's own texts for faults that go away by themselves.

Docker's output is mostly chatter around one reason: compose's progress events (` Container
x  Creating`), buildkit's step log (`#8 [4/4] RUN ...`), container logs of an attached `up`.
The summary is the reason: the last line that is none of these (compose's final error line,
buildkit's `ERROR: failed to solve: ...`, `Error response from daemon: ...`), and the
transient-or-permanent decision is made on that reason alone, so a service named `error` or a
build step that prints "connection refused" cannot decide it. The full text stays in `output`.
Recorded real outputs: tests/facts/docker_errors/.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.errors import DockerError, PermanentDockerError, TransientDockerError
from reconciler.runtime.processes import exit_text

__all__ = [
    "SSH_PERMANENT_PATTERNS",
    "SSH_TRANSIENT_PATTERNS",
    "TRANSIENT_PATTERNS",
    "LockImageMissing",
    "LockNameInUse",
    "classify",
    "docker_failed",
    "is_ssh_fault",
    "killed",
    "last_line",
    "lock_start_error",
    "only_missing_images",
    "redact_keys",
]

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

_NO_MESSAGE = "docker exited with an error and no message"

# An ssh:// engine: the docker CLI runs `ssh ... docker system dial-stdio` and, when ssh fails,
# wraps ssh's own stderr: `... command [ssh ...] has exited with exit status 255, make sure the
# URL is valid, and Docker 18.09 or later is installed on the remote host: stderr=<ssh's text>`.
# ssh's text decides; these are checked before TRANSIENT_PATTERNS (which match the wrapper's
# "error during connect").
_SSH_WRAPPED = re.compile(
    r"command \[ssh\b(?P<args>.*?)\] has exited with (?P<status>[^,]+),.*?stderr=(?P<ssh>.*)",
    re.S,
)
SSH_PERMANENT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("remote host identification has changed", "the engine host's key changed"),
    ("host key verification failed", "the engine host's key is not (or no longer) in known_hosts"),
    ("permission denied", "the engine refused the ssh key (or user)"),
    ("too many authentication failures", "the engine refused the ssh keys offered"),
    ("could not resolve hostname", "the engine's host name does not resolve"),
    ("bad configuration option", "the ssh client configuration is invalid"),
    ("command not found", "no docker CLI on the engine host"),
    ("unknown command", "the engine host's docker CLI is too old for dial-stdio"),
)
SSH_TRANSIENT_PATTERNS: tuple[str, ...] = (
    "connection refused",
    "connection closed by",
    "closed by remote host",  # an established connection dropped (`Connection to H closed ...`)
    "connection reset",
    "connection timed out",
    "operation timed out",
    "no route to host",
    "network is unreachable",
    "kex_exchange_identification",
    "broken pipe",
    "temporary failure in name resolution",
)
# ssh prints key fingerprints (never private keys); neither is repeated in our messages.
_KEY_MATERIAL = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|SHA256:[A-Za-z0-9+/=]{20,}|MD5(?::[0-9a-f]{2}){16}"
    r"|(?:ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-\S+) AAAA[A-Za-z0-9+/=]+",
    re.S,
)

# Colours, cursor moves and show/hide-cursor of a TTY progress display.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

# Lines that only report progress; they may carry any name (a service called `error`).
_PROGRESS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        # compose's events, plain (` Container x  Creating`) or TTY (`✔ Container x  Created0.0s`).
        r"^(?:DRY-RUN MODE -\s*)?(?:[^\w\s\"'(\[]\s+)?"
        r"(?:Container|Network|Volume|Image|Service)\s+\S+(?:\s|$)",
        # compose's pull events by service or layer id (` api Pulling`, ` 8a1e Pull complete`).
        r"^[A-Za-z0-9][\w.-]*\s+(?:Pulling|Pulled|Error|Warning|Skipped|Interrupted|Waiting"
        r"|Downloading|Download complete|Extracting|Verifying Checksum|Pull complete"
        r"|Already exists|Pulling fs layer|Retrying|Building|Built)\b",
        # TTY headers and steps: `[+] Running 3/4`, `[+] Building 1.2s (8/8)`, `=> [2/4] RUN x`.
        r"^\[\+\]\s",
        r"^=>\s",
        # buildkit steps and their log (`#12 [stage 2/4] RUN ...`, `#8 0.328 ...`), but not
        # a step's own `#8 ERROR: ...` line.
        r"^#\d+(?:\s(?!ERROR:)|$)",
        # buildkit's failed-step excerpt: `------`, ` > [4/4] RUN x:`, `0.328 output`,
        # `Dockerfile:4`, `   4 | >>> RUN x`.
        r"^-{3,}$",
        r"^>\s",
        r"^\d+\.\d+\s",
        r"^Dockerfile(?:\.[\w.-]+)?:\d+$",
        r"^\d+\s+\|",
        # an attached `up`: `Attaching to a-1, b-1`, `a-1  | log line`, stop chatter.
        r"^Attaching to\s",
        r"^[A-Za-z0-9][\w.-]*\s+\|(?:\s|$)",
        r"^Aborting on container exit",
        r"^Gracefully [Ss]topping",
    )
)

# Lines that are neither progress nor reason: shown only when there is nothing else.
_CHATTER: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"^(?:Run|See) 'docker [^']*--help'",
        r"^Usage:\s",
        r"^(?:WARN|WARNING|INFO|DEBU)\[\d+\]",
        r"^time=\"[^\"]*\"\s+level=(?:warning|info|debug|trace)\b",
        r"^View build details:\s",
    )
)

# The reason goes on in the next line: `2 errors occurred:` then indented `* ...` items.
_CONTINUED = re.compile(r":$")
_CONTINUATION = re.compile(r"^(?:\s+\S|[*-]\s)")
_MAX_LINES = 4


@dataclass(frozen=True)
class _Line:
    raw: str  # ANSI removed, trailing space removed, leading space kept
    text: str  # stripped

    @property
    def progress(self) -> bool:
        return any(pattern.search(self.text) for pattern in _PROGRESS)

    @property
    def chatter(self) -> bool:
        return any(pattern.search(self.text) for pattern in _CHATTER)

    @property
    def reason(self) -> bool:
        return not (self.progress or self.chatter)


def classify(argv: Sequence[str], stderr: str, stdout: str = "") -> DockerError:
    """The error for a failed docker call, transient when its reason says so."""
    text = (stderr or stdout).strip()
    ssh = _ssh_fault(_ANSI.sub("", text))
    if ssh is not None:
        message, transient = ssh
        kind_ = TransientDockerError if transient else PermanentDockerError
        return kind_(message, command=tuple(argv), output=redact_keys(text))
    summary = _summary(stderr or "", stdout or "") or _NO_MESSAGE
    lowered = summary.lower()
    kind = (
        TransientDockerError
        if any(pattern in lowered for pattern in TRANSIENT_PATTERNS)
        else PermanentDockerError
    )
    return kind(summary, command=tuple(argv), output=text)


def killed(argv: Sequence[str], returncode: int, stderr: str, stdout: str = "") -> DockerError:
    """The error for a docker CLI that a signal ended (`returncode` < 0: the OOM killer, an
    operator's kill): `docker compose up was killed by signal 9 (SIGKILL)`, never the
    `canceled` or the progress line it printed as it went (kept in `output`). Permanent: it
    may have done part of its work, so it is not repeated blindly."""
    text = (stderr or stdout).strip()
    return PermanentDockerError(
        f"{command_name(argv)} was {exit_text(returncode)}", command=tuple(argv), output=text
    )


# docker's and compose's global options that take a value (skipped to find the subcommand).
_VALUED = frozenset(
    {"-H", "--host", "--context", "-c", "--config", "-f", "--file", "-p", "--project-name"}
    | {"--project-directory", "--env-file", "--profile", "--log-level", "--ansi", "--progress"}
)


def command_name(argv: Sequence[str]) -> str:
    """A docker command as a person names it: the program and its first two subcommand words
    (`docker compose up`, `docker image inspect`), its options and their values left out."""
    if not argv:
        return "docker"
    words = [argv[0].rsplit("/", 1)[-1]]
    skip = False
    for token in argv[1:]:
        if skip:
            skip = False
        elif token.startswith("-"):
            skip = token in _VALUED
        else:
            words.append(token)
            if len(words) == 3:
                break
    return " ".join(words)


def is_ssh_fault(text: str) -> bool:
    """True when `text` holds the docker CLI's report of ssh failing to reach an ssh:// engine
    (its own wrapper text: no command run in a container prints it)."""
    return _SSH_WRAPPED.search(_ANSI.sub("", text)) is not None


def redact_keys(text: str) -> str:
    """`text` with any key material (private key blocks, public keys, fingerprints) elided."""
    return _KEY_MATERIAL.sub("[key elided]", text)


def _ssh_fault(text: str) -> tuple[str, bool] | None:
    """For ssh's failure to reach an ssh:// engine: a clear message and whether it is transient."""
    match = _SSH_WRAPPED.search(text)
    if match is None:
        return None
    lines = [line.strip() for line in match.group("ssh").splitlines() if line.strip()]
    # ssh's warnings come first; its reason is the last line (`Host key verification failed.`).
    said = redact_keys(lines[-1] if lines else f"ssh {match.group('status').strip()}")
    lowered = " ".join(lines).lower()
    head = f"ssh to the engine{_ssh_target(match.group('args').split())} failed: {said}"
    for pattern, meaning in SSH_PERMANENT_PATTERNS:
        if pattern in lowered:
            return f"{head} ({meaning}; not retried)", False
    if any(pattern in lowered for pattern in SSH_TRANSIENT_PATTERNS):
        return f"{head} (connection lost or refused)", True
    return head, False


def _ssh_target(args: list[str]) -> str:
    """` at USER@HOST:PORT` from the docker CLI's ssh arguments (`-l USER -p PORT -- HOST`)."""
    if "--" not in args or args.index("--") + 1 >= len(args):
        return ""
    host = args[args.index("--") + 1]
    options = dict(itertools.pairwise(args))
    user = f"{options['-l']}@" if "-l" in options else ""
    port = f":{options['-p']}" if "-p" in options else ""
    return f" at {user}{host}{port}"


def _summary(stderr: str, stdout: str = "") -> str:
    """The telling line(s) of docker's output: its reason, never a progress line.

    The last reason line of stderr, else of stdout (compose build, an attached `up`), with
    the lines it continues or repeats; else the last chatter line; else the last line.
    """
    streams = [_lines(stderr), _lines(stdout)]
    for lines in streams:
        if any(line.reason for line in lines):
            return _telling(lines)
    for lines in streams:
        chatter = [line.text for line in lines if line.chatter]
        if chatter:
            return chatter[-1]
    for lines in streams:
        if lines:
            return lines[-1].text
    return ""


def _lines(text: str) -> list[_Line]:
    """Non-empty lines of `text`, ANSI escapes removed."""
    lines: list[_Line] = []
    for part in _ANSI.sub("", text).splitlines():
        raw = part.rstrip()
        if raw.strip():
            lines.append(_Line(raw, raw.strip()))
    return lines


def _telling(lines: list[_Line]) -> str:
    """The last reason line, with the reason lines right before it that belong to it.

    Those are a header it continues (`2 errors occurred:` then `    * ...` items), joined
    with spaces, and sibling errors of the same kind (two `Error response from daemon: No such
    container: ...` lines), joined with "; ". A repeated line is shown once; past
    `_MAX_LINES` lines the rest is elided.
    """
    end = max(index for index, line in enumerate(lines) if line.reason)
    start = end
    joiners: list[str] = []
    while start > 0 and lines[start - 1].reason:
        before, current = lines[start - 1], lines[start]
        if _CONTINUED.search(before.text) or _CONTINUATION.match(current.raw):
            joiners.insert(0, " ")
        elif _kind(before.text) == _kind(lines[end].text):
            joiners.insert(0, "; ")
        else:
            break
        start -= 1
    parts = [line.text for line in lines[start : end + 1]]
    summary = parts[0]
    for shown, (joiner, previous, part) in enumerate(
        zip(joiners, parts[:-1], parts[1:], strict=True), start=1
    ):
        if shown == _MAX_LINES:
            return summary + " ..."
        if part != previous:
            summary += joiner + part
    return summary


def _kind(text: str) -> str:
    """What an error line is before its details: `Error response from daemon: No such container`."""
    head, sep, rest = text.partition(": ")
    if not sep:
        return text
    detail, sep, _ = rest.partition(": ")
    return f"{head}: {detail}" if sep else head


# Exit codes docker itself uses for "could not run the command" (as `docker run` documents),
# and texts compose prints when the container is not there; anything else is the command's.
_DOCKER_EXEC_CODES = frozenset({125, 126, 127})
_EXEC_FAILURE_TEXTS = (
    "is not running",
    "no such service",
    "no container found",
    "error response from daemon",
)
_DOCKER_UNREACHABLE = ("cannot connect to the docker daemon", "error during connect")


def docker_failed(code: int, stderr: str) -> bool:
    """Did docker fail to run the command (rather than the command exiting nonzero)?

    Judged on docker's own texts only: a migration whose output says "connection refused" is
    the command's failure, not docker's.
    """
    lowered = stderr.lower()
    if any(pattern in lowered for pattern in _DOCKER_UNREACHABLE) or is_ssh_fault(stderr):
        return True
    return code in _DOCKER_EXEC_CODES or any(text in lowered for text in _EXEC_FAILURE_TEXTS)


def only_missing_images(stderr: str) -> bool:
    """True when every line of `stderr` says an image is missing (and nothing else failed)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all("no such image" in line.lower() for line in lines)


def last_line(text: str) -> str:
    """The last non-blank line of `text` (docker's reason is its last word), else all of it."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


class LockNameInUse(PermanentDockerError):
    """The engine already has a container of the lock's name: the lock is held, or stale."""


class LockImageMissing(PermanentDockerError):
    """The engine lacks the lock's image (`--pull never`: nothing was created)."""


def lock_start_error(
    argv: Sequence[str], name: str, returncode: int | None, stderr: str
) -> DockerError:
    """The error for an engine-lock `docker run` that printed no id: the name in use, the
    image missing, the container ended at once, else the classified fault."""
    lowered = stderr.lower()
    if "conflict" in lowered and "is already in use" in lowered:
        return LockNameInUse(last_line(stderr), command=tuple(argv), output=stderr)
    if "no such image" in lowered:
        return LockImageMissing(last_line(stderr), command=tuple(argv), output=stderr)
    if returncode == 0:  # the container ended at once, saying nothing
        return PermanentDockerError(
            f"the lock container {name} ended at once", command=tuple(argv), output=stderr
        )
    return classify(argv, stderr)
