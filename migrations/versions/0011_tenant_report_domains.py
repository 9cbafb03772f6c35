"""tenant bounce and feedback-loop report domains (PowerMTA <bounce-processor>, <feedback-loop-processor>)

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("bounce_domain", sa.String(length=253), nullable=True))
        batch.add_column(sa.Column("fbl_domain", sa.String(length=253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("fbl_domain")
        batch.drop_column("bounce_domain")
