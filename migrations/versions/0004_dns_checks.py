"""dns check history and dns gate overrides

Revision ID: 0004
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dns_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("ip_address", sqlmodel.sql.sqltypes.AutoString(length=45), nullable=False),
        sa.Column("checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("overall", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["domain_id"], ["sending_domain.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dns_check", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dns_check_domain_id"), ["domain_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dns_check_checked_at"), ["checked_at"], unique=False)
    op.create_table(
        "dns_override",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ip_id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=True),
        sa.Column("dns_check_id", sa.Integer(), nullable=True),
        sa.Column("failures", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ip_id"], ["sending_ip.id"]),
        sa.ForeignKeyConstraint(["domain_id"], ["sending_domain.id"]),
        sa.ForeignKeyConstraint(["dns_check_id"], ["dns_check.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dns_override", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dns_override_ip_id"), ["ip_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dns_override", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dns_override_ip_id"))
    op.drop_table("dns_override")
    with op.batch_alter_table("dns_check", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dns_check_checked_at"))
        batch_op.drop_index(batch_op.f("ix_dns_check_domain_id"))
    op.drop_table("dns_check")
