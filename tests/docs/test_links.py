"""Every relative link in README.md and docs/*.md leads to a file that exists, and to a heading
of it when the link names an anchor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.state.reference import heading_anchor
from tests.conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"`[^`]*`")
# A repository path quoted in code: `tests/...`, `reconciler/...`, `deploy/...` and the like.
_QUOTED_PATH = re.compile(r"`((?:tests|reconciler|deploy|states|examples|docs)/[\w./-]*)`")


def links(document: Path) -> list[tuple[int, str]]:
    """(line number, target) of each Markdown link outside code blocks and code spans."""
    found, fenced = [], False
    for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            found += [(number, target) for target in _LINK.findall(_CODE.sub("x", line))]
    return found


def anchors(document: Path) -> set[str]:
    """The anchors of a Markdown file's headings, repeated ones numbered as GitHub does."""
    seen: dict[str, int] = {}
    result = set()
    fenced = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            anchor = heading_anchor(match.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_resolve(document: Path) -> None:
    """Each relative link of the document names an existing file (or folder), and heading."""
    broken = []
    for number, target in links(document):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path_part, _, anchor = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists():
            broken.append(f"{document.name}:{number}: {target} (no such file)")
            continue
        if anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{document.name}:{number}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_link_finder_sees_links_and_skips_code() -> None:
    """The checker finds a link with code in its text, and none inside code spans or blocks."""
    document = REPO / "README.md"
    assert any(target.startswith("docs/") for _, target in links(document))
    sample = DOCUMENTS[0].parent / "docs" / "state-file.md"
    assert any(target.startswith("#") for _, target in links(sample))
    assert "state-file-the-top-level" in anchors(sample)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_quoted_repository_paths_exist(document: Path) -> None:
    """Each repository path quoted in the document (`tests/...`, `reconciler/...`) exists."""
    missing = [
        f"{document.name}:{number}: {quoted}"
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1)
        for quoted in _QUOTED_PATH.findall(line)
        if "*" not in quoted and not (REPO / quoted).exists()
    ]
    assert not missing, "\n".join(missing)


def test_quoted_path_finder_sees_paths() -> None:
    """The path checker finds a quoted path and would report one that does not exist."""
    assert _QUOTED_PATH.findall("see `tests/docs/test_links.py` and `reconciler/x.py`") == [
        "tests/docs/test_links.py",
        "reconciler/x.py",
    ]
    assert not (REPO / "reconciler/x.py").exists()
