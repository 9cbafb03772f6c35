"""Atomic daily counters: `INSERT ... ON CONFLICT (ip_id, day) DO UPDATE SET x = x + excluded.x`.

Why: read-modify-write of a counter loses an increment when two writers (two accounting files, an
accounting ingest and a MailWizz sync) hit the same IP and day at once; the database adds atomically.
PostgreSQL and SQLite both support the statement (SQLAlchemy's dialect inserts).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models.tables import DailyStat

COUNTERS = ("sent", "delivered", "bounced", "complaints", "opens", "clicks")


def add_daily(session: Session, ip_id: int, day: dt.date, **increments: int) -> None:
    """Add `increments` (counter name -> amount) to the IP's row of `day`, creating it at zero first."""
    unknown = set(increments) - set(COUNTERS)
    if unknown:
        raise ValueError(f"not a daily counter: {', '.join(sorted(unknown))}")
    if not any(increments.values()):
        return
    table: Table = DailyStat.__table__  # type: ignore[attr-defined]
    insert: Any = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(ip_id=ip_id, day=day, **increments)
    stmt = stmt.on_conflict_do_update(index_elements=["ip_id", "day"],
                                      set_={k: table.c[k] + stmt.excluded[k] for k in increments})
    session.connection().execute(stmt)
