"""rotation state: round-robin cursor per tenant, per-IP hourly send counters

Revision ID: 0008
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rotation_cursor",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("pruned_hour", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    op.create_table(
        "ip_hourly_sent",
        sa.Column("ip_id", sa.Integer(), sa.ForeignKey("sending_ip.id", ondelete="CASCADE"), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("sent", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("ip_id", "hour"),
    )


def downgrade() -> None:
    op.drop_table("ip_hourly_sent")
    op.drop_table("rotation_cursor")
