"""compose's interpolation rules, as reconciler resolves an interpolated `image:` (no docker)."""

from __future__ import annotations

import pytest

from reconciler.compose.interpolate import (
    InterpolationError,
    has_variables,
    interpolate,
    parse_template,
)

ENV = {"TAG": "abc123", "EMPTY": "", "REG": "ghcr.io/kpiteira"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("ghcr.io/x/backend:${TAG}", "ghcr.io/x/backend:abc123"),
        ("ghcr.io/x/backend:$TAG", "ghcr.io/x/backend:abc123"),
        ("$REG/ktrdr-backend:${TAG:-latest}", "ghcr.io/kpiteira/ktrdr-backend:abc123"),
        ("x:${UNSET:-latest}", "x:latest"),
        ("x:${EMPTY:-latest}", "x:latest"),
        ("x:${EMPTY-latest}", "x:"),
        ("x:${UNSET-latest}", "x:latest"),
        ("x:${UNSET}", "x:"),
        ("x:${TAG:+set}", "x:set"),
        ("x:${EMPTY:+set}", "x:"),
        ("x:${EMPTY+set}", "x:set"),
        ("x:${UNSET+set}", "x:"),
        ("x:${UNSET:-${TAG}}", "x:abc123"),
        ("x:${UNSET:-${ALSO_UNSET:-v1}}", "x:v1"),
        ("price $$5 and $${TAG}", "price $5 and ${TAG}"),
        ("$$TAG", "$TAG"),
        ("x:${TAG:?tag is required}", "x:abc123"),
        ("x:${EMPTY?may be empty}", "x:"),
        ("no variables at all", "no variables at all"),
    ],
)
def test_interpolate_follows_compose(template: str, expected: str) -> None:
    """Each form (plain, braced, defaults, alternatives, nesting, $$) renders as compose does."""
    assert interpolate(template, ENV) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x:${UNSET:?set IMAGE_TAG first}", "required variable UNSET is missing a value: set"),
        ("x:${EMPTY:?}", "required variable EMPTY is missing a value"),
        ("x:${UNSET?gone}", "UNSET is missing a value: gone"),
    ],
)
def test_required_variable_fails_with_its_message(template: str, message: str) -> None:
    """`${VAR:?err}` fails on unset or empty, `${VAR?err}` on unset, carrying the message."""
    with pytest.raises(InterpolationError, match=message):
        interpolate(template, ENV)


@pytest.mark.parametrize("template", ["x:$", "x:${TAG", "x:${}", "x:${TAG!x}", "x:$1"])
def test_invalid_template_is_refused(template: str) -> None:
    """A `$` that starts no variable, or an unclosed or malformed `${`, is an invalid template."""
    with pytest.raises(InterpolationError, match="invalid template"):
        parse_template(template)


def test_names_and_has_variables() -> None:
    """Names include nested defaults; `$$` alone is no variable."""
    assert list(parse_template("${A:-${B}}/$C").names()) == ["A", "B", "C"]
    assert has_variables("img:${TAG}")
    assert not has_variables("img:$$notavar")
    assert not has_variables("img:1")
