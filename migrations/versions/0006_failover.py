"""failover: standby claims and blocklist scan runs

Revision ID: 0006
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "standby_claim",
        sa.Column("ip_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("claimed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ip_id"], ["sending_ip.id"]),
        sa.PrimaryKeyConstraint("ip_id"),
    )
    with op.batch_alter_table("standby_claim", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_standby_claim_workflow_id"), ["workflow_id"], unique=False)
    op.create_table(
        "blocklist_scan_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("ips_scanned", sa.Integer(), nullable=False),
        sa.Column("listed", sa.Integer(), nullable=False),
        sa.Column("inconclusive", sa.Integer(), nullable=False),
        sa.Column("broken_zones", sa.JSON(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("blocklist_scan_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blocklist_scan_run_workflow_id"), ["workflow_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("blocklist_scan_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blocklist_scan_run_workflow_id"))
    op.drop_table("blocklist_scan_run")
    with op.batch_alter_table("standby_claim", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_standby_claim_workflow_id"))
    op.drop_table("standby_claim")
