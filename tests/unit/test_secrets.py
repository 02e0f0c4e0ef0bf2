"""Secret redaction: what counts as secret, and that masking keeps the text readable."""

from __future__ import annotations

import io

from reconciler import secrets


def test_secret_looking_keys_and_url_passwords_are_masked() -> None:
    """Values under PASSWORD/TOKEN/KEY/DSN keys and URL passwords are replaced by ***."""
    secrets.register_mapping(
        {"DB_PASSWORD": "hunter22", "LOG_LEVEL": "info", "URL": "https://u:p4ss@h/x"}
    )
    assert secrets.redact("pw=hunter22 level=info") == "pw=*** level=info"
    assert secrets.redact("https://u:p4ss@h/x and p4ss") == "https://u:***@h/x and ***"
    assert secrets.redact("postgres://app:other@db/app") == "postgres://app:***@db/app"


def test_compose_lines_with_secret_keys_are_masked_in_diffs() -> None:
    """A diff line keeps its key and layout; only the secret value becomes ***."""
    assert (
        secrets.mask_line("      API_TOKEN: abc123xyz  # rotate monthly\n")
        == "      API_TOKEN: ***  # rotate monthly\n"
    )
    assert secrets.mask_line('      - "SECRET_KEY=s3cr3t"\n') == '      - "SECRET_KEY=***"\n'
    assert secrets.mask_line("      DB_PASSWORD: 'quoted-pw'\n") == "      DB_PASSWORD: '***'\n"
    assert secrets.mask_line("    image: api:2\n") == "    image: api:2\n"


def test_interpolated_values_are_not_registered_literally() -> None:
    """`${VAR}` placeholders are not secrets themselves; their values come from sensitive_env."""
    secrets.register_compose_text("  PASSWORD: ${DB_PASSWORD}\n  TOKEN: literal-token\n")
    assert secrets.redact("${DB_PASSWORD}") == "${DB_PASSWORD}"
    assert secrets.redact("literal-token") == "***"


def test_redacting_stream_masks_every_write() -> None:
    """Everything written through the CLI's streams is redacted."""
    secrets.register("stream-secret")
    inner = io.StringIO()
    stream = secrets.RedactingStream(inner)
    stream.write("a stream-secret b\n")
    assert inner.getvalue() == "a *** b\n"
