"""MTA host: the user that owns the deployed DKIM key files

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mta_host") as batch:
        batch.add_column(sa.Column("mta_user", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mta_host") as batch:
        batch.drop_column("mta_user")
