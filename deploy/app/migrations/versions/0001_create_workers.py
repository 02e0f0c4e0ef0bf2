"""create workers registry

Revision ID: 0001
Revises:
Create Date: 2025-05-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(128), primary_key=True),
        sa.Column("worker_type", sa.String(32), nullable=False),
        sa.Column("endpoint_url", sa.String(512), nullable=False),
        sa.Column("status", sa.String(32), nullable=False, server_default="available"),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "worker_type IN ('backtesting', 'training')", name="ck_workers_worker_type"
        ),
    )


def downgrade() -> None:
    op.drop_table("workers")
