"""Merge the feature branches (MTA deploys, accounting, DNS checks, failover, operations, rotation)
into one head, so later migrations have a single parent.

Revision ID: 0010
Revises: 0002, 0003, 0004, 0006, 0007, 0008
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004", "0006", "0007", "0008")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
