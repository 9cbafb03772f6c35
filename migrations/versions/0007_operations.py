"""operators' side: alert dedup, ChatOps buttons, MailWizz stat snapshots

Revision ID: 0007
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "alert_sent",
        sa.Column("key", S(length=255), nullable=False),
        sa.Column("sent_at", T(), nullable=False),
        sa.Column("claimed_by", S(length=512), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "alert_button",
        sa.Column("token", S(length=32), nullable=False),
        sa.Column("alert_key", S(length=255), nullable=False),
        sa.Column("label", S(length=64), nullable=False),
        sa.Column("workflow_id", S(length=255), nullable=False),
        sa.Column("name", S(length=64), nullable=False),
        sa.Column("kind", S(length=16), nullable=False),
        sa.Column("arg", S(length=1024), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("used_at", T(), nullable=True),
        sa.Column("used_by", S(length=255), nullable=True),
        sa.Column("result", S(length=1024), nullable=True),
        sa.PrimaryKeyConstraint("token"),
    )
    op.create_table(
        "mailwizz_campaign_stat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("campaign_uid", S(length=64), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("unsubscribes", sa.Integer(), nullable=False),
        sa.Column("complaints", sa.Integer(), nullable=False),
        sa.Column("bounces", sa.Integer(), nullable=False),
        sa.Column("hard_bounces", sa.Integer(), nullable=False),
        sa.Column("soft_bounces", sa.Integer(), nullable=False),
        sa.Column("read_at", T(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "campaign_uid", name="uq_mw_stat_campaign"),
    )
    with op.batch_alter_table("mailwizz_campaign_stat", schema=None) as batch_op:
        batch_op.create_index("ix_mailwizz_campaign_stat_tenant_id", ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mailwizz_campaign_stat", schema=None) as batch_op:
        batch_op.drop_index("ix_mailwizz_campaign_stat_tenant_id")
    op.drop_table("mailwizz_campaign_stat")
    op.drop_table("alert_button")
    op.drop_table("alert_sent")
