"""Guard on active IPs: the tenant's policy and the guard's steps (issue 15)

Revision ID: 0020
Revises: 0021
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0020"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("active_guard", S(length=16), nullable=True))
        batch.add_column(sa.Column("guard_step_down_phase", S(length=16), nullable=True))
        batch.add_column(sa.Column("guard_max_capacity_loss_share", sa.Float(), nullable=True))
    op.create_table(
        "guard_step",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ip_id", sa.Integer(), sa.ForeignKey("sending_ip.id"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("action", S(length=16), nullable=False),
        sa.Column("to_phase", S(length=16), nullable=True),
        sa.Column("quota_before", sa.Integer(), nullable=False),
        sa.Column("quota_after", sa.Integer(), nullable=False),
        sa.Column("capacity_loss", sa.Integer(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("status", S(length=16), nullable=False),
        sa.Column("evidence", S(length=2048), nullable=False),
        sa.Column("hold_reason", S(length=1024), nullable=False),
        sa.Column("run_workflow_id", S(length=255), nullable=False),
        sa.Column("step_workflow_id", S(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", S(length=255), nullable=False),
        sa.Column("note", S(length=1024), nullable=False),
        sa.UniqueConstraint("ip_id", "day", name="uq_guard_step_ip_day"),
    )
    op.create_index("ix_guard_step_ip_id", "guard_step", ["ip_id"])
    op.create_index("ix_guard_step_tenant_id", "guard_step", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_guard_step_tenant_id", table_name="guard_step")
    op.drop_index("ix_guard_step_ip_id", table_name="guard_step")
    op.drop_table("guard_step")
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("guard_max_capacity_loss_share")
        batch.drop_column("guard_step_down_phase")
        batch.drop_column("active_guard")
