"""MTA deploy history: one row per deploy (host, generation, digest, outcome)

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mta_deploy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("rolled_back", sa.Boolean(), nullable=False),
        sa.Column("message", sa.String(length=4000), nullable=False),
        sa.Column("target", sa.String(length=1024), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mta_deploy_host", "mta_deploy", ["host"])


def downgrade() -> None:
    op.drop_index("ix_mta_deploy_host", table_name="mta_deploy")
    op.drop_table("mta_deploy")
