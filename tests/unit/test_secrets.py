"""Secret redaction: what counts as secret, and that masking keeps the text readable."""

from __future__ import annotations

import io
from pathlib import Path

from reconciler.plans import Plan
from reconciler.secrets.redact import RedactingStream, Secrets
from reconciler.state import State
from reconciler.steps import compose_file
from reconciler.steps.compose_file import ComposeFileFacts


def test_secret_looking_keys_and_url_passwords_are_masked() -> None:
    """Values under PASSWORD/TOKEN/KEY/DSN keys and URL passwords are replaced by ***."""
    secrets = Secrets()
    secrets.register_mapping(
        {"DB_PASSWORD": "hunter22", "LOG_LEVEL": "info", "URL": "https://u:p4ss@h/x"}
    )
    assert secrets.redact("pw=hunter22 level=info") == "pw=*** level=info"
    assert secrets.redact("https://u:p4ss@h/x and p4ss") == "https://u:***@h/x and ***"
    assert secrets.redact("postgres://app:other@db/app") == "postgres://app:***@db/app"


def test_compose_lines_with_secret_keys_are_masked_in_diffs() -> None:
    """A diff line keeps its key and layout; only the secret value becomes ***."""
    secrets = Secrets()
    assert (
        secrets.mask_line("      API_TOKEN: abc123xyz  # rotate monthly\n")
        == "      API_TOKEN: ***  # rotate monthly\n"
    )
    assert secrets.mask_line('      - "SECRET_KEY=s3cr3t"\n') == '      - "SECRET_KEY=***"\n'
    assert secrets.mask_line("      DB_PASSWORD: 'quoted-pw'\n") == "      DB_PASSWORD: '***'\n"
    assert secrets.mask_line("    image: api:2\n") == "    image: api:2\n"


def test_interpolated_values_are_not_registered_literally() -> None:
    """`${VAR}` placeholders are not secrets themselves; their values come from sensitive_env."""
    secrets = Secrets()
    secrets.register_compose_text("  PASSWORD: ${DB_PASSWORD}\n  TOKEN: literal-token\n")
    assert secrets.redact("${DB_PASSWORD}") == "${DB_PASSWORD}"
    assert secrets.redact("literal-token") == "***"


def test_redacting_stream_masks_every_write() -> None:
    """Everything written through the CLI's streams is redacted."""
    secrets = Secrets(["stream-secret"])
    inner = io.StringIO()
    stream = RedactingStream(inner, secrets)
    stream.write("a stream-secret b\n")
    assert inner.getvalue() == "a *** b\n"


def test_runs_do_not_share_secrets() -> None:
    """A value one run registered is not masked by another run's registry."""
    first, second = Secrets(), Secrets()
    first.register("only-in-the-first")
    assert second.redact("only-in-the-first") == "only-in-the-first"


def test_diff_text_depends_only_on_its_inputs(tmp_path: Path) -> None:
    """The same state and facts give the same diff text, whatever another run registered."""
    compose = "services:\n  a:\n    image: app:1\n    environment:\n      NOTE: app:1\n"
    state = State.model_validate(
        {
            "name": "s",
            "compose": {"file": str(tmp_path / "c.yml")},
            "services": {"a": {"image": "app:2"}},
        }
    )
    facts = ComposeFileFacts(tmp_path / "c.yml", compose)
    before = compose_file.diff(state, facts, Plan())
    Secrets().register("app:1")  # another run, in the same process
    assert compose_file.diff(state, facts, Plan()) == before
    assert "image: app:1" in (before.changes[0].diff or "")
    masked = compose_file.diff(
        state, ComposeFileFacts(tmp_path / "c.yml", compose, secrets=frozenset({"app:1"})), Plan()
    )
    assert "app:1" not in (masked.changes[0].diff or "")
