"""The build-context digest: what docker sends counts, what reconciler edits itself does not."""

from __future__ import annotations

from pathlib import Path

from reconciler.docker.facts import BuildConfig
from reconciler.images.build_context import context_digest


def _context(root: Path) -> BuildConfig:
    (root / "Dockerfile").write_text("FROM scratch\nCOPY app.py /\n")
    (root / "app.py").write_text("print(1)\n")
    (root / "docker-compose.yml").write_text("services: {}\n")
    (root / ".env.core").write_text("IMAGE_TAG=1\n")
    (root / "prometheus.yml").write_text("global: {}\n")
    (root / "notes.tmp").write_text("scratch\n")
    (root / ".dockerignore").write_text("*.tmp\n")
    return BuildConfig(context=root, dockerfile=root / "Dockerfile", args={}, target=None)


def test_sent_files_count_and_edited_files_do_not(tmp_path: Path) -> None:
    """Files docker sends change the context digest; files reconciler edits itself do not."""
    build = _context(tmp_path)
    compose = tmp_path / "docker-compose.yml"
    edited = [tmp_path / ".env.core", tmp_path / "prometheus.yml"]

    def digest() -> str:
        return context_digest(build, compose_file=compose, edited=edited)

    first = digest()
    compose.write_text("services: {web: {image: web:2}}\n")
    (tmp_path / ".env.core").write_text("IMAGE_TAG=2\n")
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 30s}\n")
    (tmp_path / "notes.tmp").write_text("ignored by .dockerignore\n")
    assert digest() == first
    # Not edited by reconciler: an env file outside `edited` is a build input like any other.
    assert context_digest(build, compose_file=compose) != first
    (tmp_path / "app.py").write_text("print(2)\n")
    assert digest() != first


def test_edited_files_outside_the_context_are_ignored(tmp_path: Path) -> None:
    """An edited file outside the build context never changes its digest."""
    context = tmp_path / "ctx"
    context.mkdir()
    build = _context(context)
    compose = context / "docker-compose.yml"
    outside = tmp_path / ".env"
    outside.write_text("A=1\n")
    assert context_digest(build, compose_file=compose, edited=[outside]) == context_digest(
        build, compose_file=compose
    )
