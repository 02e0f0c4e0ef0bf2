"""Registry images without an engine: the adapter's parsing of recorded registry answers
(tests/facts/registry/), and `docker login` through a fake docker CLI that keeps what it got
on stdin apart from its argv."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from reconciler.docker.adapter import DockerAdapter, manifest_digest
from reconciler.docker.facts import RegistryLogin, registry_host, repository
from reconciler.docker.retry import RetryPolicy
from reconciler.errors import PermanentDockerError, RegistryError
from reconciler.observe.snapshot import read_remote_digest
from tests.facts.fake_docker import first_on_path

FACTS = Path(__file__).resolve().parent.parent / "facts"
REGISTRY = FACTS / "registry"
ERRORS = FACTS / "docker_errors"
FAST = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.0)
PASSWORD = "pw-" + "7f3c1a9e5b"  # what the fake registry accepts
PROBE = "127.0.0.1:18400/rtest-reg-probe"
MANIFEST = "sha256:2aefa9383cc3f135223dcd9c96b5efe8e62a5f1d6af5f7d38481e71bfdd9fe87"
INDEX = "sha256:9b7bfd72e45488049fcf714e2d79041077b38622a3224fa1a4241fafaa35186b"


def test_manifest_digest_of_a_single_platform_manifest() -> None:
    """`imagetools inspect --format '{{json .Manifest}}'` of a pushed image: its digest."""
    output = (REGISTRY / "imagetools-manifest.stdout").read_text()
    assert manifest_digest(output, f"{PROBE}:1") == MANIFEST


def test_manifest_digest_of_an_index_is_the_index_digest() -> None:
    """For a manifest list, the list's own digest (what RepoDigests records after a pull by
    tag), not one of its platform manifests."""
    output = (REGISTRY / "imagetools-index.stdout").read_text()
    assert MANIFEST in output, "the recorded index lists the platform manifest too"
    assert manifest_digest(output, f"{PROBE}:multi") == INDEX


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Name: x\nDigest: sha256:abc\n",
        '{"mediaType": "application/vnd.oci.image.index.v1+json", "size": 3}',
        '{"digest": "sha256:not-hex"}',
        '["sha256:' + "a" * 64 + '"]',
    ],
    ids=["empty", "text", "no-digest", "bad-digest", "not-an-object"],
)
def test_manifest_digest_refuses_anything_else(output: str) -> None:
    """An answer that is not a descriptor with a sha256 digest is a permanent error, named."""
    with pytest.raises(PermanentDockerError, match="unexpected answer for the manifest of x:1"):
        manifest_digest(output, "x:1")


@pytest.mark.parametrize(
    ("reference", "host", "repo"),
    [
        ("127.0.0.1:18400/app:1", "127.0.0.1:18400", "127.0.0.1:18400/app"),
        ("localhost:5000/team/app", "localhost:5000", "localhost:5000/team/app"),
        ("registry.example.com/app@sha256:" + "a" * 64, "registry.example.com", None),
        ("docker.io/library/redis:7", "docker.io", "redis"),
        ("redis", "docker.io", "redis"),
        ("team/app:2", "docker.io", "team/app"),
        ("[::1]:5000/app:2", "[::1]:5000", "[::1]:5000/app"),
    ],
)
def test_registry_host_and_repository_follow_dockers_rules(
    reference: str, host: str, repo: str | None
) -> None:
    assert registry_host(reference) == host
    assert repository(reference) == (repo or "registry.example.com/app")


def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` first on PATH answering with recorded outputs: login (checking the password
    it reads on stdin), imagetools inspect, image inspect. Each argv goes to tmp/argv, each
    stdin to tmp/stdin; tmp/unreachable makes the registry unreachable."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, stdin, down = tmp_path / "argv", tmp_path / "stdin", tmp_path / "unreachable"
    script = bin_dir / "docker"
    q = shlex.quote
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {q(str(log))}\n'
        'case "$1" in\n'
        "login)\n"
        f"  pw=$(cat); printf '%s\\n' \"$pw\" >> {q(str(stdin))}\n"
        f"  if [ -e {q(str(down))} ]; then cat {q(str(ERRORS / 'login-registry-unreachable.stderr'))} >&2; exit 1; fi\n"
        f'  if [ "$pw" != {q(PASSWORD)} ]; then cat {q(str(ERRORS / "login-wrong-password.stderr"))} >&2; exit 1; fi\n'
        f"  cat {q(str(REGISTRY / 'login.stdout'))}; cat {q(str(REGISTRY / 'login.stderr'))} >&2 ;;\n"
        "buildx)\n"
        f"  if [ -e {q(str(down))} ]; then cat {q(str(ERRORS / 'imagetools-inspect-registry-unreachable.stderr'))} >&2; exit 1; fi\n"
        f"  cat {q(str(REGISTRY / 'imagetools-manifest.stdout'))} ;;\n"
        "image)\n"
        f'  if [ "$2" = inspect ]; then cat {q(str(REGISTRY / "image-inspect-pulled.stdout"))}; fi ;;\n'
        '*) echo "fake docker: unexpected $*" >&2; exit 99 ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    first_on_path(bin_dir, monkeypatch)
    return tmp_path


def adapter(tmp_path: Path, password: str = PASSWORD) -> DockerAdapter:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services: {}\n")
    return DockerAdapter(
        compose,
        "p",
        retry=FAST,
        secrets=lambda: {"REGISTRY_PASSWORD": password},
        registries={"127.0.0.1:18400": RegistryLogin("tester", "REGISTRY_PASSWORD")},
    )


def argv_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "argv").read_text().splitlines()


def test_login_once_per_run_before_the_first_registry_read_password_on_stdin_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch)
    docker = adapter(tmp_path)
    assert docker.remote_digest(f"{PROBE}:1") == MANIFEST
    assert docker.remote_digest(f"{PROBE}:2") == MANIFEST
    lines = argv_lines(tmp_path)
    assert lines[0] == "login --username tester --password-stdin 127.0.0.1:18400"
    assert [line.split()[0] for line in lines] == ["login", "buildx", "buildx"], "login once"
    assert lines[1] == f"buildx imagetools inspect --format {{{{json .Manifest}}}} {PROBE}:1"
    assert (tmp_path / "stdin").read_text() == PASSWORD + "\n"
    recorded = " ".join(" ".join(call.argv) for call in docker.calls)
    assert PASSWORD not in recorded
    assert PASSWORD not in "\n".join(lines)
    assert not any(call.mutating for call in docker.calls), "login and reads change nothing"


def test_no_login_for_a_registry_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch)
    docker = adapter(tmp_path)
    assert docker.remote_digest("127.0.0.1:18402/rtest-reg-probe:1") == MANIFEST
    assert [line.split()[0] for line in argv_lines(tmp_path)] == ["buildx"]
    assert not (tmp_path / "stdin").exists()


def test_a_failed_login_is_a_registry_error_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch)
    wrong = "wrong-" + "c0ffee1234"
    docker = adapter(tmp_path, password=wrong)
    with pytest.raises(RegistryError) as raised:
        docker.pull(f"{PROBE}:1")
    message = str(raised.value)
    assert message.startswith("registry 127.0.0.1:18400: docker login as tester failed: ")
    assert "401 Unauthorized" in message
    assert raised.value.exit_code == 1
    assert wrong not in message
    assert wrong not in repr(raised.value.__context__)
    assert [line.split()[0] for line in argv_lines(tmp_path)] == ["login"], "no pull after it"


def test_an_unreachable_registry_is_kept_as_the_fact_after_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login (a read for retries) and the digest read are retried on `connection refused`;
    what is left is the fact the images step turns into a RegistryError."""
    fake_docker(tmp_path, monkeypatch)
    (tmp_path / "unreachable").touch()
    found = read_remote_digest(adapter(tmp_path), f"{PROBE}:1")
    assert found.digest is None
    assert found.error is not None
    assert "docker login as tester failed" in found.error
    assert "connection refused" in found.error
    assert [line.split()[0] for line in argv_lines(tmp_path)] == ["login"] * FAST.attempts


def test_an_unreachable_registry_without_login_names_dockers_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch)
    (tmp_path / "unreachable").touch()
    found = read_remote_digest(adapter(tmp_path), "127.0.0.1:18409/rtest-reg-probe:1")
    assert found.error == (
        'ERROR: failed to do request: Head "http://127.0.0.1:18409/v2/rtest-reg-probe/'
        'manifests/1": dial tcp 127.0.0.1:18409: connect: connection refused'
    )
    assert len(argv_lines(tmp_path)) == FAST.attempts, "a read: retried"


def test_image_facts_carry_repo_digests_all_of_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorded inspect of an image pulled both by manifest and through an index: both
    digests belong to its repository; the other registry's does not."""
    fake_docker(tmp_path, monkeypatch)
    image = adapter(tmp_path).images([f"{PROBE}:1"])[f"{PROBE}:1"]
    assert image.registry_digests(f"{PROBE}:1") == (MANIFEST, INDEX)
    assert image.registry_digests(f"{PROBE}:other-tag") == (MANIFEST, INDEX)
    assert image.registry_digests("127.0.0.1:18401/rtest-reg-probe:1") == (MANIFEST,)
    assert image.registry_digests("127.0.0.1:18400/elsewhere:1") == ()
