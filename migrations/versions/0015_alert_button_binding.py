"""ChatOps buttons bound to their incident: the target run id and an expiry

Revision ID: 0015
Revises: 0014
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.add_column("alert_button", sa.Column("run_id", S(length=64), nullable=True))
    op.add_column("alert_button", sa.Column("expires_at", T(), nullable=True))
    # Buttons issued before this revision are bound to no incident: an unpressed Approve could act on
    # a later saga of the same IP. They expire now (the CLI still answers a held failover).
    button = sa.table("alert_button", sa.column("used_at", T()), sa.column("expires_at", T()))
    op.execute(button.update().where(button.c.used_at.is_(None))
               .values(expires_at=dt.datetime.now(dt.UTC)))


def downgrade() -> None:
    with op.batch_alter_table("alert_button") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("run_id")
