"""daily_stat: an index on the day, for the window sums read across all IPs (fleet gauges, failover)

Revision ID: 0023
Revises: 0019
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_daily_stat_day", "daily_stat", ["day"])


def downgrade() -> None:
    op.drop_index("ix_daily_stat_day", table_name="daily_stat")
