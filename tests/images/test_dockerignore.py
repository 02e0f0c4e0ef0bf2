"""`.dockerignore` matching (reconciler.images.dockerignore) against docker's own cases.

The tables are ported from moby's patternmatcher tests (patternmatcher_test.go: TestMatches,
the Go `filepath.Match` cases of TestMatch, the clean-pattern tests; ignorefile_test.go:
TestReadAll) and from docker-py's `exclude_paths` tests (tests/unit/utils_build_test.py).
Where docker-py and moby differ, moby's answer is the one kept, and the case says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import InputError
from reconciler.images.build_context import ignore_patterns
from reconciler.images.dockerignore import (
    DockerignoreError,
    PatternMatcher,
    exclude_paths,
    go_clean,
    matches,
    read_patterns,
)

EXACT, INEXACT, FAIL = "exact", "inexact", "fail"

# moby TestMatches: (pattern, path, how): EXACT matches the path itself, INEXACT only through
# a parent directory, FAIL not at all.
SINGLE = [
    ("**", "file", EXACT),
    ("**", "file/", EXACT),
    ("**/", "file", EXACT),
    ("**/", "file/", EXACT),
    ("**", "/", EXACT),
    ("**/", "/", EXACT),
    ("**", "dir/file", EXACT),
    ("**/", "dir/file", EXACT),
    ("**", "dir/file/", EXACT),
    ("**/", "dir/file/", EXACT),
    ("**/**", "dir/file", EXACT),
    ("**/**", "dir/file/", EXACT),
    ("dir/**", "dir/file", EXACT),
    ("dir/**", "dir/file/", EXACT),
    ("dir/**", "dir/dir2/file", EXACT),
    ("dir/**", "dir/dir2/file/", EXACT),
    ("**/dir", "dir", EXACT),
    ("**/dir", "dir/file", INEXACT),
    ("**/dir2/*", "dir/dir2/file", EXACT),
    ("**/dir2/*", "dir/dir2/file/", INEXACT),
    ("**/dir2/**", "dir/dir2/dir3/file", EXACT),
    ("**/dir2/**", "dir/dir2/dir3/file/", EXACT),
    ("**file", "file", EXACT),
    ("**file", "dir/file", EXACT),
    ("**/file", "dir/file", EXACT),
    ("**file", "dir/dir/file", EXACT),
    ("**/file", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file.txt", EXACT),
    ("**/file*txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt*", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt2", "dir/dir/file.txt", FAIL),
    ("**/*.txt", "file.txt", EXACT),
    ("**/**/*.txt", "file.txt", EXACT),
    ("a**/*.txt", "a/file.txt", EXACT),
    ("a**/*.txt", "a/dir/file.txt", EXACT),
    ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
    ("a/*.txt", "a/dir/file.txt", FAIL),
    ("a/*.txt", "a/file.txt", EXACT),
    ("a/*.txt**", "a/file.txt", EXACT),
    ("a[b-d]e", "ae", FAIL),
    ("a[b-d]e", "ace", EXACT),
    ("a[b-d]e", "aae", FAIL),
    ("a[^b-d]e", "aze", EXACT),
    (".*", ".foo", EXACT),
    (".*", "foo", FAIL),
    ("abc.def", "abcdef", FAIL),
    ("abc.def", "abc.def", EXACT),
    ("abc.def", "abcZdef", FAIL),
    ("abc?def", "abcZdef", EXACT),
    ("abc?def", "abcdef", FAIL),
    ("**/foo/bar", "foo/bar", EXACT),
    ("**/foo/bar", "dir/foo/bar", EXACT),
    ("**/foo/bar", "dir/dir2/foo/bar", EXACT),
    ("abc/**", "abc", FAIL),
    ("abc/**", "abc/def", EXACT),
    ("abc/**", "abc/def/ghi", EXACT),
    ("**/.foo", ".foo", EXACT),
    ("**/.foo", "bar.foo", FAIL),
    ("a(b)c/def", "a(b)c/def", EXACT),
    ("a(b)c/def", "a(b)c/xyz", FAIL),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        EXACT,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("a\\\\", "a\\", EXACT),
    ("a\\*b", "a*b", EXACT),
]

# moby TestMatches' multi-pattern cases: (patterns, path, excluded).
MULTIPLE = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (
        ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        False,
    ),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    # the single-case tests at the head of patternmatcher_test.go
    (["*"], "fileutils.go", True),
    (["*.go"], "fileutils.go", True),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    ([], "/any/path/there", False),
]

# Go's filepath.Match cases, through moby's Matches (TestMatch): (pattern, path, excluded), or
# None where the pattern is malformed.
GO_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", True),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "\u03b1", True),  # Greek alpha
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[]a]", "]", None),
    ("[-]", "-", None),
    ("[x-]", "x", None),
    ("[x-]", "-", None),
    ("[x-]", "z", None),
    ("[-x]", "x", None),
    ("[-x]", "-", None),
    ("[-x]", "a", None),
    ("\\", "a", None),
    ("[a-b-c]", "a", None),
    ("[", "a", None),
    ("[^", "a", None),
    ("[^bc", "a", None),
    ("a[", "a", None),
    ("a[", "ab", None),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "path", "how"), SINGLE)
def test_moby_single_pattern(pattern: str, path: str, how: str) -> None:
    """Each of moby's single-pattern cases: itself (exact), and through a parent (inexact)."""
    matcher = PatternMatcher([pattern])
    assert matcher.matches_exact(path) == (how == EXACT)
    assert matcher.matches(path) == (how != FAIL)


@pytest.mark.parametrize(("patterns", "path", "excluded"), MULTIPLE)
def test_moby_pattern_lists(patterns: list[str], path: str, excluded: bool) -> None:
    """The last matching pattern decides; an exception re-includes what an earlier one left out."""
    assert matches(path, patterns) == excluded


@pytest.mark.parametrize(("pattern", "path", "excluded"), GO_MATCH)
def test_go_filepath_match_cases(pattern: str, path: str, excluded: bool | None) -> None:
    """Go's filepath.Match cases: the same answers, and the same patterns refused as malformed."""
    if excluded is None:
        with pytest.raises(DockerignoreError):
            matches(path, [pattern])
    else:
        assert matches(path, [pattern]) == excluded


@pytest.mark.parametrize(
    ("patterns", "problem"),
    [
        (["!"], "illegal exclusion pattern"),
        (["["], "syntax error"),
        (["[Local-Only]/"], "syntax error"),  # a valid class in Go's syntax, a bad range
    ],
)
def test_refused_patterns(patterns: list[str], problem: str) -> None:
    """A lone `!`, a malformed class and an inverted range are refused, as docker refuses them."""
    with pytest.raises(DockerignoreError, match=problem):
        PatternMatcher(patterns)


def test_the_whole_context_is_never_excluded() -> None:
    """`.` never matches (moby: "don't let them exclude everything")."""
    assert not matches(".", ["*.go"])
    assert not matches(".", ["**"])


def test_patterns_are_trimmed_and_blank_ones_dropped() -> None:
    """Leading and trailing spaces go, around an exception too; empty patterns are skipped."""
    matcher = PatternMatcher(["docs", "  !docs/README.md  ", "", "   "])
    assert [(p.text, p.exclusion) for p in matcher.patterns] == [
        ("docs", False),
        ("docs/README.md", True),
    ]
    assert matcher.exclusions


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        (".", "."),
        ("a/./b", "a/b"),
        ("a/b/../c", "a/c"),
        ("a//b/", "a/b"),
        ("../a", "../a"),
        ("a/../../b", "../b"),
        ("/../a", "/a"),
        ("//a", "/a"),
        ("/", "/"),
        ("foo/whoops/../a.py", "foo/a.py"),
    ],
)
def test_go_clean(path: str, cleaned: str) -> None:
    """Go's filepath.Clean, which docker applies to every pattern."""
    assert go_clean(path) == cleaned


def test_read_all() -> None:
    """moby's ignorefile.ReadAll case: leading `/` dropped, comments skipped, `!` kept alone."""
    content = (
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    )
    assert read_patterns(content) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
        "!",
        "!",
    ]
    assert read_patterns("") == []


def test_read_all_byte_order_mark_carriage_returns_and_indented_hash() -> None:
    """A BOM opens the first line only, `\\r\\n` ends lines, and only a `#` in column 1 is a
    comment (an indented one is a pattern, as in moby)."""
    assert read_patterns("\ufeffa\r\n # b\r\n#c\r\n") == ["a", "# b"]


# docker-py's tree (tests/unit/utils_build_test.py, ExcludePathsTest).
DIRS = [
    "foo",
    "foo/bar",
    "bar",
    "target",
    "target/subdir",
    "subdir",
    "subdir/target",
    "subdir/target/subdir",
    "subdir/subdir2",
    "subdir/subdir2/target",
    "subdir/subdir2/target/subdir",
]
FILES = [
    "Dockerfile",
    "Dockerfile.alt",
    ".dockerignore",
    "a.py",
    "a.go",
    "b.py",
    "cde.py",
    "foo/a.py",
    "foo/b.py",
    "foo/bar/a.py",
    "bar/a.py",
    "foo/Dockerfile3",
    "target/file.txt",
    "target/subdir/file.txt",
    "subdir/file.txt",
    "subdir/target/file.txt",
    "subdir/target/subdir/file.txt",
    "subdir/subdir2/file.txt",
    "subdir/subdir2/target/file.txt",
    "subdir/subdir2/target/subdir/file.txt",
]
ALL = set(DIRS + FILES)
FOO = {"foo", "foo/a.py", "foo/b.py", "foo/bar", "foo/bar/a.py", "foo/Dockerfile3"}
SUBDIR_CONTENT = {p for p in ALL if p.startswith("subdir/")}

# (patterns, dockerfile, what is sent)
EXCLUDE_PATHS = [
    ([""], None, ALL),
    (["!a.py"], None, ALL),
    (["*"], None, {"Dockerfile", ".dockerignore"}),
    (["Dockerfile", ".dockerignore"], None, ALL),
    (["*"], "Dockerfile.alt", {"Dockerfile.alt", ".dockerignore"}),
    (["*"], "foo/Dockerfile3", {"foo/Dockerfile3", ".dockerignore"}),
    (["*"], "./foo/Dockerfile3", {"foo/Dockerfile3", ".dockerignore"}),
    (["a.py"], None, ALL - {"a.py"}),
    (["./a.py"], None, ALL - {"a.py"}),
    (["a.py/"], None, ALL - {"a.py"}),
    (["*.py"], None, ALL - {"a.py", "b.py", "cde.py"}),
    (["*.py", "!b.py"], None, ALL - {"a.py", "cde.py"}),
    (["*.*", "!*.go"], None, ALL - {"a.py", "b.py", "cde.py", "Dockerfile.alt"}),
    (["a.*"], None, ALL - {"a.py", "a.go"}),
    (["?.py"], None, ALL - {"a.py", "b.py"}),
    (["foo/a.py"], None, ALL - {"foo/a.py"}),
    (["/foo/a.py"], None, ALL - {"foo/a.py"}),
    (["foo/whoops/../a.py"], None, ALL - {"foo/a.py"}),
    (["foo/*.py"], None, ALL - {"foo/a.py", "foo/b.py"}),
    (["*/a.py"], None, ALL - {"foo/a.py", "bar/a.py"}),
    (["*/*.py"], None, ALL - {"foo/a.py", "foo/b.py", "bar/a.py"}),
    (["foo"], None, ALL - FOO),
    (["foo/"], None, ALL - FOO),
    (
        ["foo", "!foo/bar/a.py"],
        None,
        ALL - {"foo/a.py", "foo/b.py", "foo", "foo/bar", "foo/Dockerfile3"},
    ),
    (["foo", "!foo/bar"], None, ALL - {"foo/a.py", "foo/b.py", "foo", "foo/Dockerfile3"}),
    (["foo", "!foo/*.py"], None, ALL - {"foo/bar", "foo/bar/a.py", "foo", "foo/Dockerfile3"}),
    (["foo/bar"], None, ALL - {"foo/bar", "foo/bar/a.py"}),
    (["**/a.py"], None, ALL - {"a.py", "foo/a.py", "foo/bar/a.py", "bar/a.py"}),
    (["foo/**/bar"], None, ALL - {"foo/bar", "foo/bar/a.py"}),
    (
        ["**/target/*/*"],
        None,
        ALL
        - {
            "target/subdir/file.txt",
            "subdir/target/subdir/file.txt",
            "subdir/subdir2/target/subdir/file.txt",
        },
    ),
    (["subdir/**"], None, ALL - SUBDIR_CONTENT),
    (
        ["**", "!bar", "!foo/bar"],
        None,
        {"foo/bar", "foo/bar/a.py", "bar", "bar/a.py", "Dockerfile", ".dockerignore"},
    ),
]


def _make_tree(root: Path, dirs: list[str], files: list[str]) -> None:
    for name in dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


@pytest.mark.parametrize(("patterns", "dockerfile", "sent"), EXCLUDE_PATHS)
def test_docker_py_exclude_paths(
    tmp_path: Path, patterns: list[str], dockerfile: str | None, sent: set[str]
) -> None:
    """docker-py's exclude_paths cases: the files and directories sent as the build context."""
    _make_tree(tmp_path, DIRS, FILES)
    assert exclude_paths(str(tmp_path), list(patterns), dockerfile=dockerfile) == sent


def test_an_excluded_directory_is_entered_for_an_exception_under_it(tmp_path: Path) -> None:
    """`foo/` left out but `foo/Dockerfile3` the Dockerfile: only that file of foo is sent."""
    _make_tree(tmp_path, DIRS, FILES)
    sent = exclude_paths(str(tmp_path), ["foo/"], dockerfile="foo/Dockerfile3")
    assert "foo/Dockerfile3" in sent
    assert "foo/a.py" not in sent


@pytest.mark.parametrize(
    ("files", "patterns", "sent"),
    [
        # an absolute pattern is relative to the context
        (["a.py", "b.py"], ["/*", "!/*.py"], {"a.py", "b.py"}),
        # a wildcard exception does not open an excluded directory (docker-py: "matches the CLI")
        (["a/b.py"], ["*", "!*/b.py"], set()),
        # the last line wins
        (
            ["garbage.md", "trash.md", "README.md", "README-bis.md", "README-secret.md"],
            ["*.md", "!README*.md", "README-secret.md"],
            {"README.md", "README-bis.md"},
        ),
        # Clean keeps a leading `..` of a relative pattern (it then matches nothing) and drops
        # one after the root; docker-py drops both and would leave out a.py too.
        (["a.py", "b.py", "c.py"], ["../a.py", "/../b.py"], {"a.py", "c.py"}),
        # matching is case-sensitive, as in moby (docker-py folds case)
        (["README.md", "readme.md"], ["readme.md"], {"README.md"}),
        # docker-py's TarTest.test_tar_with_excludes
        (
            [
                *("Dockerfile", "Dockerfile.alt", ".dockerignore", "a.py", "a.go", "b.py"),
                *("cde.py", "foo/a.py", "foo/b.py", "foo/bar/a.py", "bar/a.py"),
            ],
            ["*.py", "!b.py", "!a.go", "foo", "Dockerfile*", ".dockerignore"],
            {"Dockerfile", ".dockerignore", "a.go", "b.py", "bar", "bar/a.py"},
        ),
    ],
)
def test_small_trees(tmp_path: Path, files: list[str], patterns: list[str], sent: set[str]) -> None:
    """docker-py's small-tree cases, and the two where moby's answer differs from docker-py's."""
    _make_tree(tmp_path, [], files)
    assert exclude_paths(str(tmp_path), patterns) == sent


def test_symlinked_directories_are_sent_not_entered(tmp_path: Path) -> None:
    """A symlink to a directory is sent as a link; nothing under it is walked."""
    _make_tree(tmp_path, ["real"], ["real/x.txt"])
    (tmp_path / "link").symlink_to("real")
    assert exclude_paths(str(tmp_path), []) == {"real", "real/x.txt", "link"}


def test_the_patterns_list_is_not_changed(tmp_path: Path) -> None:
    """The caller's list is left as it was (docker-py appended the Dockerfile to it)."""
    _make_tree(tmp_path, [], ["Dockerfile", "x"])
    patterns = ["x"]
    assert exclude_paths(str(tmp_path), patterns) == {"Dockerfile"}
    assert patterns == ["x"]


def test_a_bad_pattern_in_a_dockerignore_is_input_error_at_the_file(tmp_path: Path) -> None:
    """A pattern docker refuses is an InputError naming the `.dockerignore`, before any build."""
    (tmp_path / ".dockerignore").write_text("ok\n[\n")
    with pytest.raises(InputError) as caught:
        ignore_patterns(tmp_path)
    assert caught.value.location is not None
    assert caught.value.location.file == tmp_path / ".dockerignore"


# A project-like tree (was compared with docker-py's own matcher while it was a dependency: the
# answers below are docker-py's, and moby's).
PROJECT_FILES = [
    "Dockerfile",
    "app/main.py",
    "app/__pycache__/main.cpython-311.pyc",
    "app/tests/test_main.py",
    "docs/readme.md",
    "docs/keep.md",
    ".git/HEAD",
    "node_modules/x/index.js",
    "data/a.csv",
    "data/sub/b.csv",
    "weird name/[x].txt",
]
_PYCACHE = {"app/__pycache__", "app/__pycache__/main.cpython-311.pyc"}
PROJECT = {
    *PROJECT_FILES,
    *("app", "app/__pycache__", "app/tests", "docs", ".git", "node_modules", "node_modules/x"),
    *("data", "data/sub", "weird name", "link"),
}


@pytest.mark.parametrize(
    ("patterns", "left_out"),
    [
        ([], set()),
        (
            ["**/__pycache__", ".git", "node_modules"],
            {"app/__pycache__", "app/__pycache__/main.cpython-311.pyc", ".git", ".git/HEAD"}
            | {"node_modules", "node_modules/x", "node_modules/x/index.js"},
        ),
        (["docs", "!docs/keep.md"], {"docs", "docs/readme.md"}),
        (["data/**/*.csv", "!data/sub"], {"data/a.csv"}),
        (["Dockerfile", "weird name/?x?.txt", "/link"], {"weird name/[x].txt", "link"}),
    ],
)
def test_project_tree(tmp_path: Path, patterns: list[str], left_out: set[str]) -> None:
    """Common `.dockerignore` shapes on a project: what each leaves out of the context."""
    _make_tree(tmp_path, [], PROJECT_FILES)
    (tmp_path / "link").symlink_to("app/main.py")
    assert exclude_paths(str(tmp_path), patterns, dockerfile="Dockerfile") == PROJECT - left_out


@pytest.mark.parametrize(
    ("patterns", "sent"),
    [
        (["*", "!app", "app/tests"], {"Dockerfile", "app", "app/main.py"} | _PYCACHE),
        (["**", "!**/*.py"], {"Dockerfile"}),
    ],
)
def test_project_tree_allow_lists(tmp_path: Path, patterns: list[str], sent: set[str]) -> None:
    """Allow-list `.dockerignore` files (`*` then exceptions): only what they let through."""
    _make_tree(tmp_path, [], PROJECT_FILES)
    (tmp_path / "link").symlink_to("app/main.py")
    assert exclude_paths(str(tmp_path), patterns, dockerfile="Dockerfile") == sent
