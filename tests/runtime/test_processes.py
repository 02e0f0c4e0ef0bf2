"""`processes.pipe`: source | sink through reconciler, counting bytes; the transfer of images
between engines rides on it (`DockerAdapter.transfer`)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import DockerError, StopRequested
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from reconciler.state.engine import parse_engine

SIZE = 5 * 2**20 + 123


def test_every_byte_reaches_the_sink_and_is_counted() -> None:
    """Every byte of the source reaches the sink and is counted."""
    counts: list[int] = []
    source = ["head", "-c", str(SIZE), "/dev/zero"]
    saved, loaded = processes.pipe(source, ["wc", "-c"], stop=StopToken(), on_bytes=counts.append)
    assert (saved.returncode, loaded.returncode) == (0, 0)
    assert loaded.stdout.strip() == str(SIZE)
    assert counts[-1] == SIZE
    assert counts == sorted(counts)


def test_a_failing_sink_ends_the_pipe_with_its_code_and_message() -> None:
    """A sink that fails ends the pipe with the sink's exit code and message."""
    source = ["head", "-c", str(SIZE), "/dev/zero"]
    sink = ["sh", "-c", "head -c 10 >/dev/null; echo refused >&2; exit 3"]
    _, loaded = processes.pipe(source, sink, stop=StopToken(), on_bytes=lambda _: None)
    assert loaded.returncode == 3
    assert loaded.stderr.strip() == "refused"


def test_a_failing_source_is_reported() -> None:
    """A source that fails is reported with its exit code and message."""
    source = ["sh", "-c", "echo 'no such image' >&2; exit 1"]
    saved, loaded = processes.pipe(source, ["wc", "-c"], stop=StopToken(), on_bytes=lambda _: None)
    assert saved.returncode == 1
    assert "no such image" in saved.stderr
    assert loaded.stdout.strip() == "0"


def test_a_stop_cuts_both_and_leaves_no_child(tmp_path: Path) -> None:
    """A stop ends a pipe whose source never ends (`cat /dev/zero`): both sides are gone."""
    pids = tmp_path / "pids"
    source = ["sh", "-c", f"echo $$ >> {pids}; exec cat /dev/zero"]
    sink = ["sh", "-c", f"echo $$ >> {pids}; exec cat >/dev/null"]
    stop = StopToken()
    threading.Timer(0.5, stop.request).start()
    with pytest.raises(StopRequested):
        processes.pipe(source, sink, stop=stop, on_bytes=lambda _: None)
    for pid in pids.read_text().split():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_the_adapter_saves_locally_and_loads_on_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapter transfers an image by `docker save` locally piped into `docker load` on the target."""
    seen: list[tuple[list[str], list[str]]] = []

    def fake_pipe(
        source: list[str], sink: list[str], **_: object
    ) -> tuple[processes.Finished, processes.Finished]:
        seen.append((source, sink))
        return (
            processes.Finished(tuple(source), 0, "", "", 0.1),
            processes.Finished(tuple(sink), 1, "", "Error: connection reset by peer", 0.1),
        )

    monkeypatch.setattr(processes, "pipe", fake_pipe)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    compose = tmp_path / "compose.yml"
    compose.write_text("services: {}\n")
    engine = parse_engine("ssh://deploy@core.example:2222")
    adapter = DockerAdapter(compose, "p", engine=engine)
    assert adapter.targets_another_engine
    with pytest.raises(DockerError, match="connection reset by peer"):
        adapter.transfer("base:1", lambda _: None)
    ((source, sink),) = seen
    assert source[-3:] == ["image", "save", "base:1"]
    assert "ssh://deploy@core.example:2222" not in source
    assert sink[-2:] == ["image", "load"]
    assert "ssh://deploy@core.example:2222" in sink
    assert [call.mutating for call in adapter.calls] == [False, True]


@pytest.mark.parametrize(
    ("engine", "another"),
    [(None, False), ("unix:///var/run/docker.sock", False), ("tcp://10.0.0.2:2376", True)],
)
def test_which_engines_get_copies(tmp_path: Path, engine: str | None, another: bool) -> None:
    """Only an adapter aimed at an engine on another host (tcp, ssh) copies images over to it."""
    compose = tmp_path / "compose.yml"
    compose.write_text("services: {}\n")
    parsed = parse_engine(engine) if engine else None
    assert DockerAdapter(compose, "p", engine=parsed).targets_another_engine is another


@pytest.mark.parametrize(
    ("saved", "loaded", "message"),
    [
        # the load failed first; the save, cut off by it, died of SIGPIPE: the load's reason
        (-13, (1, "Error: connection reset by peer"), "connection reset by peer"),
        # the load was killed: it says so, not the save's SIGPIPE
        (-13, (-9, ""), "docker image load was killed by signal 9 (SIGKILL)"),
        # the save was killed (the load then read a truncated stream)
        (-9, (1, "unexpected EOF"), "docker image save was killed by signal 9 (SIGKILL)"),
    ],
)
def test_a_transfer_names_the_side_that_ended_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    saved: int,
    loaded: tuple[int, str],
    message: str,
) -> None:
    """A killed save or load names its signal; a save cut off by the load's end is not blamed."""

    def fake_pipe(
        source: list[str], sink: list[str], **_: object
    ) -> tuple[processes.Finished, processes.Finished]:
        return (
            processes.Finished(tuple(source), saved, "", "", 0.1),
            processes.Finished(tuple(sink), loaded[0], "", loaded[1], 0.1),
        )

    monkeypatch.setattr(processes, "pipe", fake_pipe)
    compose = tmp_path / "compose.yml"
    compose.write_text("services: {}\n")
    adapter = DockerAdapter(compose, "p", engine=parse_engine("tcp://10.0.0.2:2376"))
    with pytest.raises(DockerError) as caught:
        adapter.transfer("base:1", lambda _: None)
    assert message in caught.value.message
