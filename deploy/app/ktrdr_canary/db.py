"""Postgres access (SQLAlchemy Core). The schema itself is owned by alembic (migrations/)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

# Table shapes as created by migrations 0001 (workers) and 0002 (operations).
metadata = sa.MetaData()

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.String(128), primary_key=True),
    sa.Column("worker_type", sa.String(32), nullable=False),
    sa.Column("endpoint_url", sa.String(512), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
)

operations = sa.Table(
    "operations",
    metadata,
    sa.Column("operation_id", sa.String(64), primary_key=True),
    sa.Column("operation_type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", postgresql.JSONB, nullable=False),
    sa.Column("result", postgresql.JSONB),
    sa.Column("error", sa.Text),
    sa.Column("worker_id", sa.String(128)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

ALEMBIC_INI = Path(
    os.environ.get("ALEMBIC_CONFIG", Path(__file__).resolve().parent.parent / "alembic.ini")
)


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return url


@lru_cache(maxsize=1)
def engine() -> Engine:
    # Created lazily: the backend must start (and answer /health) even with no database.
    return sa.create_engine(
        database_url(),
        pool_pre_ping=True,
        pool_size=5,
        connect_args={"connect_timeout": 3},
    )


def migration_status(conn: sa.Connection) -> tuple[set[str], set[str]]:
    """(current revisions in the database, head revisions shipped with this code)."""
    current = set(MigrationContext.configure(conn).get_current_heads())
    heads = set(ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_heads())
    return current, heads
