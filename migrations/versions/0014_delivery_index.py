"""delivery index: which IP delivered which message, for remote bounces and complaints of later ingests

Revision ID: 0014
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_index",
        sa.Column("rcpt_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("env_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("orig_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=False),
        sa.Column("ip_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["ip_id"], ["sending_ip.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rcpt_key", "env_key", "orig_key", "delivered_at"),
    )
    op.create_index("ix_delivery_index_delivered_at", "delivery_index", ["delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_index_delivered_at", table_name="delivery_index")
    op.drop_table("delivery_index")
