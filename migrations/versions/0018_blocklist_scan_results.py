"""Blocklist scans at fleet scale: per-answer results and decision pages in the database

Revision ID: 0018
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blocklist_scan_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=253), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("zone_name", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("codes", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("blocklist_scan_answer") as batch:
        batch.create_index("ix_blocklist_scan_answer_workflow_id", ["workflow_id"], unique=False)
        batch.create_index("ix_blocklist_scan_answer_target", ["target"], unique=False)
    op.create_table(
        "blocklist_scan_page",
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("page", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("decisions", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "page"),
    )


def downgrade() -> None:
    op.drop_table("blocklist_scan_page")
    with op.batch_alter_table("blocklist_scan_answer") as batch:
        batch.drop_index("ix_blocklist_scan_answer_target")
        batch.drop_index("ix_blocklist_scan_answer_workflow_id")
    op.drop_table("blocklist_scan_answer")
