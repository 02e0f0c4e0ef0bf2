"""`classify` over recorded docker failures (tests/facts/docker_errors): the message is docker's
reason, never a progress line, and only that reason decides transient or permanent.

The recorded cases need no Docker engine; a new case is a new entry in cases.yaml and its files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.docker.errors import TRANSIENT_PATTERNS, classify
from reconciler.errors import DockerError, PermanentDockerError, TransientDockerError

FACTS = Path(__file__).parent.parent / "facts" / "docker_errors"
CASES: list[dict[str, Any]] = YAML(typ="safe", pure=True).load(
    (FACTS / "cases.yaml").read_text(encoding="utf-8")
)["cases"]
KINDS: dict[str, type[DockerError]] = {
    "transient": TransientDockerError,
    "permanent": PermanentDockerError,
}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ARGV = ["docker", "compose", "up", "--detach"]

by_case = pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])


def recorded(case: dict[str, Any]) -> tuple[str, str]:
    """The case's stderr and stdout, byte for byte (CRLF kept)."""
    stderr = FACTS / case.get("stderr", f"{case['id']}.stderr")
    stdout = FACTS / f"{case['id']}.stdout"
    return (
        stderr.read_bytes().decode("utf-8"),
        stdout.read_bytes().decode("utf-8") if stdout.exists() else "",
    )


def classified(case: dict[str, Any]) -> DockerError:
    """`classify` applied to the case as the adapter would call it."""
    stderr, stdout = recorded(case)
    return classify(case["argv"], stderr, stdout)


# ---- the recorded cases ------------------------------------------------------------------


def test_index_and_files_match() -> None:
    """Every case names an existing file and a known kind; every recorded file has a case."""
    used = {"cases.yaml"}
    for case in CASES:
        assert {"id", "setup", "argv", "rc", "summary", "kind"} <= case.keys(), case["id"]
        assert case["kind"] in KINDS, case["id"]
        assert case["rc"] != 0, case["id"]
        used.add(case.get("stderr", f"{case['id']}.stderr"))
        used.add(f"{case['id']}.stdout")
        assert (FACTS / case.get("stderr", f"{case['id']}.stderr")).is_file(), case["id"]
    assert {path.name for path in FACTS.iterdir()} <= used
    assert len({case["id"] for case in CASES}) == len(CASES)


@by_case
def test_summary_is_the_reason(case: dict[str, Any]) -> None:
    """The message holds docker's own reason for the failure (the case's `summary`)."""
    assert case["summary"] in classified(case).message


@by_case
def test_summary_leaves_out_progress(case: dict[str, Any]) -> None:
    """The message holds none of the case's `lacks` (progress lines, names, step output)."""
    message = classified(case).message
    for text in case.get("lacks", []):
        assert text not in message


@by_case
def test_summary_is_one_line_of_dockers_text(case: dict[str, Any]) -> None:
    """The message is one clean line (no escapes, no line breaks) taken from docker's output."""
    message = classified(case).message
    assert message
    assert not set(message) & {"\n", "\r", "\x1b"}
    stderr, stdout = recorded(case)
    text = ANSI.sub("", stderr + stdout)
    for part in message.split("; "):
        assert part in text


@by_case
def test_kind_follows_the_reason(case: dict[str, Any]) -> None:
    """Transient or permanent as the case's `kind` says, judged on the reason alone."""
    assert type(classified(case)) is KINDS[case["kind"]]


@by_case
def test_error_keeps_command_and_full_output(case: dict[str, Any]) -> None:
    """`command` is the argv and `output` the full text (stderr, else stdout), stripped."""
    stderr, stdout = recorded(case)
    error = classified(case)
    assert error.command == tuple(case["argv"])
    assert error.output == (stderr or stdout).strip()


# ---- behaviour kept from before ----------------------------------------------------------


@pytest.mark.parametrize("pattern", TRANSIENT_PATTERNS)
def test_each_transient_pattern_is_transient(pattern: str) -> None:
    """Each transient pattern in docker's reason makes the error transient, in any letter case."""
    error = classify(ARGV, f"Error response from daemon: {pattern.upper()}\n")
    assert isinstance(error, TransientDockerError)
    assert error.message == f"Error response from daemon: {pattern.upper()}"


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        (
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            TransientDockerError,
        ),
        ("read unix @->/run/docker.sock: i/o timeout", TransientDockerError),
        (
            'error during connect: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.41/containers/json": read unix @->/var/run/docker.sock: i/o timeout',
            TransientDockerError,
        ),
        ("Error response from daemon: context deadline exceeded", TransientDockerError),
        ("i/o timeout: no answer within 30 s", TransientDockerError),
        ("ERROR: failed to solve: process did not complete successfully", PermanentDockerError),
        ("services.api Additional property imagez is not allowed", PermanentDockerError),
    ],
)
def test_single_line_messages_keep_their_text_and_kind(
    stderr: str, kind: type[DockerError]
) -> None:
    """A one-line message (as the fake docker of test_docker_faults prints) is the summary."""
    error = classify(ARGV, stderr + "\n")
    assert type(error) is kind
    assert error.message == stderr
    assert error.output == stderr


def test_no_output_has_a_stock_message() -> None:
    """No stderr and no stdout: a stock permanent message and empty output."""
    error = classify(ARGV, "", "")
    assert isinstance(error, PermanentDockerError)
    assert error.message == "docker exited with an error and no message"
    assert error.output == ""


def test_stdout_is_used_when_stderr_is_empty() -> None:
    """With an empty stderr, stdout is both the summary's source and the output."""
    error = classify(ARGV, "", "Error: boom\n")
    assert error.message == "Error: boom"
    assert error.output == "Error: boom"


def test_default_stdout_is_empty() -> None:
    """`stdout` may be left out: the signature is classify(argv, stderr, stdout="")."""
    error = classify(ARGV, "Error response from daemon: conflict\n")
    assert error.message == "Error response from daemon: conflict"


# ---- progress lines never speak for the failure ------------------------------------------

REASON = "dependency failed to start: container fx-08-db-1 exited (1)"

PROGRESS_LINES = [
    " Container fx-08-error-1  Creating",
    " Container fx-08-error-1  Created",
    " Container fx-08-timeout-1  Starting",
    " Container fx-08-db-1  Error",
    " Network fx-08_default  Creating",
    ' Volume "fx-08_refused"  Created',
    " ✔ Container fx-08-error-1  Created                0.1s ",
    " ✘ Container fx-08-db-1     Error                  0.0s ",
    " ⠿ Container fx-08-error-1  Starting               0.2s ",
    "[+] Running 3/4",
    "[+] Building 2.3s (8/9)",
    " => ERROR [error 4/4] RUN make                     0.3s",
    " api Pulling ",
    " api Error Get https://registry/v2/: connection refused",
    " 8a1e25ce7c4f Pull complete",
    '#0 building with "default" instance using docker driver',
    "#12 [error 2/4] RUN make",
    "#12 0.215 dial tcp 10.0.0.7:443: i/o timeout",
    "#12 DONE 0.3s",
    "Attaching to db-1, error-1",
    "error-1  | connection refused",
    "Aborting on container exit...",
    'time="2024-05-01T10:00:00Z" level=warning msg="the attribute `version` is obsolete"',
]


@pytest.mark.parametrize("progress", PROGRESS_LINES)
def test_progress_before_the_reason_is_dropped(progress: str) -> None:
    """A progress line before compose's final error line never becomes the summary."""
    error = classify(ARGV, f"{progress}\n{REASON}\n")
    assert error.message == REASON
    assert isinstance(error, PermanentDockerError)


@pytest.mark.parametrize("progress", PROGRESS_LINES)
def test_progress_after_the_reason_is_dropped(progress: str) -> None:
    """A progress line after the reason (teardown, log lines) does not hide the reason."""
    error = classify(ARGV, f"Error response from daemon: conflict\n{progress}\n")
    assert error.message == "Error response from daemon: conflict"


def test_transient_words_in_progress_do_not_make_it_transient() -> None:
    """Service names, container logs and build-step output with transient words stay out."""
    stderr = "\n".join(
        [
            " Container p-timeout-1  Creating",
            " Container p-refused-1  Error",
            "db-1  | dial tcp 10.0.0.7:5432: connect: connection refused",
            "#8 0.328 read tcp 10.0.0.7:443: i/o timeout",
            "------",
            " > [4/4] RUN ./fetch:",
            "0.328 read: connection reset by peer",
            "------",
            'ERROR: failed to solve: process "/bin/sh -c ./fetch" did not complete successfully: exit code: 1',
        ]
    )
    error = classify(ARGV, stderr)
    assert isinstance(error, PermanentDockerError)
    assert error.message.startswith("ERROR: failed to solve: process")


def test_transient_reason_after_progress_is_transient() -> None:
    """A transient reason still makes the error transient when progress lines precede it."""
    stderr = (
        " Container p-api-1  Creating\n"
        " Container p-api-1  Created\n"
        " Container p-api-1  Starting\n"
        'Error response from daemon: Post "http://docker/v1.41/containers/x/start": context deadline exceeded\n'
    )
    error = classify(ARGV, stderr)
    assert isinstance(error, TransientDockerError)
    assert error.message.endswith("context deadline exceeded")


def test_buildkit_step_error_gives_way_to_the_final_error() -> None:
    """Buildkit's `#N ERROR:` step line is a reason, but the final `ERROR: failed to solve` wins."""
    stderr = (
        "#8 [4/4] RUN /fail.sh\n"
        "#8 ERROR: executor failed running [/bin/sh -c /fail.sh]: exit code: 3\n"
        "ERROR: failed to solve: executor failed running [/bin/sh -c /fail.sh]: exit code: 3\n"
    )
    assert classify(ARGV, stderr).message.startswith("ERROR: failed to solve:")


def test_only_progress_falls_back_to_the_last_line() -> None:
    """Output that is all progress still gives a summary: its last line."""
    error = classify(ARGV, " Container p-api-1  Creating\n Container p-api-1  Created\n")
    assert error.message == "Container p-api-1  Created"


def test_usage_hint_is_not_the_reason() -> None:
    """The CLI's trailing `Run 'docker run --help'` hint gives way to the error above it."""
    stderr = "docker: Error response from daemon: conflict.\n\nRun 'docker run --help' for more information\n"
    assert classify(ARGV, stderr).message == "docker: Error response from daemon: conflict."


def test_warning_only_output_is_the_summary() -> None:
    """With no reason line at all, a warning line is shown rather than nothing."""
    stderr = 'time="2024-05-01T10:00:00Z" level=warning msg="network p_default not found"\n'
    assert "network p_default not found" in classify(ARGV, stderr).message


def test_reason_split_over_lines_is_joined() -> None:
    """A header ending in ':' and its indented items (dockerd's multi-error form) stay together."""
    stderr = (
        " Container p-api-1  Removing\n"
        "Error response from daemon: 2 errors occurred:\n"
        "\t* container api: device or resource busy\n"
        "\t* container db: removal already in progress\n"
    )
    error = classify(ARGV, stderr)
    assert error.message == (
        "Error response from daemon: 2 errors occurred: * container api: device or resource busy"
        " * container db: removal already in progress"
    )
    assert isinstance(error, TransientDockerError)


def test_unrelated_line_before_the_reason_is_not_joined() -> None:
    """Only lines that continue or repeat the reason's kind join it; others stay out."""
    stderr = "some unrelated note\nError response from daemon: No such container: a\n"
    assert classify(ARGV, stderr).message == "Error response from daemon: No such container: a"


def test_long_reason_is_cut_after_its_first_lines() -> None:
    """A header with many items keeps the header and its first items, then '...'."""
    items = "".join(f"\t* container c{n}: removal already in progress\n" for n in range(6))
    message = classify(ARGV, f"Error response from daemon: 6 errors occurred:\n{items}").message
    assert message.startswith("Error response from daemon: 6 errors occurred: * container c0:")
    assert "c2" in message
    assert "c3" not in message
    assert message.endswith(" ...")
