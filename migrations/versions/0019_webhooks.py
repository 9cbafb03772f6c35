"""Outbound webhooks: receivers (no secrets) and the per-receiver outbox

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "webhook_receiver",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", S(length=64), nullable=False, unique=True),
        sa.Column("url", S(length=2048), nullable=False),
        sa.Column("events", S(length=1024), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("receiver", S(length=64), nullable=False),
        sa.Column("event_id", S(length=64), nullable=False),
        sa.Column("event_type", S(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", S(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", S(length=512), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("receiver", "event_id", name="uq_webhook_outbox_event"),
    )
    op.create_index("ix_webhook_outbox_queue", "webhook_outbox", ["receiver", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_queue", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_table("webhook_receiver")
