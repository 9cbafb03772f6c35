"""MailWizz unsubscribe cursor per campaign (contact.unsubscribe webhooks)

Revision ID: 0022
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0022"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "mailwizz_unsubscribe_cursor",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("campaign_uid", S(length=64), nullable=False),
        sa.Column("list_uid", S(length=64), nullable=False),
        sa.Column("read_count", sa.Integer(), nullable=False),
        sa.Column("marker", S(length=160), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "campaign_uid", name="uq_mw_unsub_campaign"),
    )


def downgrade() -> None:
    op.drop_table("mailwizz_unsubscribe_cursor")
