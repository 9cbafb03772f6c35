"""The durable delivery index and the batched writes of the accounting ingest (issue 10).

A remote bounce (`rb`) names no IP and usually arrives hours after its delivery, in another hourly run
and another 8 MB chunk than the `d` record. Every attributed `d` is therefore kept in `delivery_index`
for a bounded retention, and the records still to attribute are looked up there. Every statement here
works on a whole chunk: lookups and writes go in pages (never one query per record), writes are
INSERT ... ON CONFLICT (SQLite >= 3.24 and PostgreSQL), all inside the ingest's one transaction, so a
rolled-back chunk leaves neither counts nor index rows behind.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models.accounting import Counts, Delivery, MessageKey, Unresolved
from models.accounting_tables import DeliveryIndex
from models.tables import DailyStat

#: rows per multi-VALUES INSERT and keys per IN (...) lookup: 5 columns x 1000 stays far below
#: PostgreSQL's 65,535 and SQLite's 32,766 bound parameters
PAGE = 1000

INDEX: Table = DeliveryIndex.__table__  # type: ignore[attr-defined]
STATS: Table = DailyStat.__table__  # type: ignore[attr-defined]


def _naive_utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"the accounting ingest supports SQLite and PostgreSQL, not {dialect}")


def retention_cutoff(newest: dt.datetime, now: dt.datetime, days: int) -> dt.datetime:
    """Deliveries before this are forgotten. Measured from the newest delivery read (a back-filled old
    file still finds its own deliveries), never from later than now (a bogus future `timeLogged` cannot
    wipe the index)."""
    return min(newest, now) - dt.timedelta(days=days)


def known_deliveries(session: Session, pending: Iterable[Unresolved], ip_addresses: Mapping[int, str]
                     ) -> list[Delivery]:
    """The indexed deliveries to the recipients of `pending` (before the latest of their times), one
    query per PAGE recipients."""
    pending = list(pending)
    if not pending:
        return []
    rcpts = sorted({p.key.rcpt for p in pending})
    until = _naive_utc(max(p.at for p in pending))
    out: list[Delivery] = []
    for i in range(0, len(rcpts), PAGE):
        q = (select(INDEX.c.rcpt_key, INDEX.c.env_key, INDEX.c.orig_key, INDEX.c.delivered_at, INDEX.c.ip_id)
             .where(INDEX.c.rcpt_key.in_(rcpts[i:i + PAGE]), INDEX.c.delivered_at <= until))
        for rcpt, env, orig, at, ip_id in session.execute(q):
            address = ip_addresses.get(ip_id)
            if address is not None:
                out.append(Delivery(MessageKey(rcpt, env, orig), address, at.replace(tzinfo=dt.UTC)))
    return out


def remember(session: Session, deliveries: Iterable[Delivery], ip_ids: Mapping[str, int],
             cutoff: dt.datetime) -> int:
    """Add the deliveries at or after `cutoff` to the index (a row already there is left as it is);
    returns how many were offered. PostgreSQL: one INSERT ... SELECT FROM unnest(arrays) for the whole
    chunk; SQLite: multi-row VALUES pages. Both as plain driver SQL: compiling 5,000-parameter
    statements through the SQL expression layer cost more than the database's own work."""
    floor = _naive_utc(cutoff)
    rows: dict[tuple[int, int, int, dt.datetime], int] = {}
    for d in deliveries:
        at = _naive_utc(d.at)
        if at >= floor and d.ip in ip_ids:
            rows[(d.key.rcpt, d.key.env, d.key.orig, at)] = ip_ids[d.ip]
    if not rows:
        return 0
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        columns = list(zip(*((*pk, ip_id) for pk, ip_id in rows.items()), strict=True))
        conn.exec_driver_sql(_PG_INSERT, tuple(list(c) for c in columns))
    elif conn.dialect.name == "sqlite":
        flat = [(*pk, ip_id) for pk, ip_id in rows.items()]
        for i in range(0, len(flat), _SQLITE_PAGE):
            page = flat[i:i + _SQLITE_PAGE]
            conn.exec_driver_sql(_sqlite_insert(len(page)), tuple(v for row in page for v in row))
    else:
        raise RuntimeError(f"the accounting ingest supports SQLite and PostgreSQL, not {conn.dialect.name}")
    return len(rows)


_COLUMNS = "rcpt_key, env_key, orig_key, delivered_at, ip_id"
_CONFLICT = "ON CONFLICT (rcpt_key, env_key, orig_key, delivered_at) DO NOTHING"
_PG_INSERT = (f"INSERT INTO delivery_index ({_COLUMNS}) SELECT * FROM unnest(%s::bigint[], %s::bigint[], "
              f"%s::bigint[], %s::timestamp[], %s::integer[]) {_CONFLICT}")
#: SQLite binds at most 32,766 parameters (999 before 3.32)
_SQLITE_PAGE = PAGE if sqlite3.sqlite_version_info >= (3, 32) else 199


@functools.lru_cache(maxsize=8)
def _sqlite_insert(rows: int) -> str:
    return f"INSERT INTO delivery_index ({_COLUMNS}) VALUES {','.join(['(?,?,?,?,?)'] * rows)} {_CONFLICT}"


def prune(session: Session, cutoff: dt.datetime) -> None:
    """Forget deliveries before `cutoff` (one statement; `delivered_at` is indexed)."""
    session.execute(delete(INDEX).where(INDEX.c.delivered_at < _naive_utc(cutoff)))


def add_stats(session: Session, totals: Mapping[tuple[str, dt.date], Counts], ip_ids: Mapping[str, int]) -> None:
    """Add the chunk's per-(IP, day) counts to daily_stat: INSERT ... ON CONFLICT (ip_id, day) DO UPDATE
    adding to the stored figures, in pages (no read-modify-write per row)."""
    rows = []
    for (address, day), c in sorted(totals.items()):
        base = DailyStat(ip_id=ip_ids[address], day=day).model_dump(exclude={"id"})
        base.update(sent=c.sent, delivered=c.delivered, bounced=c.bounced, complaints=c.complaints)
        rows.append(base)
    for i in range(0, len(rows), PAGE):
        stmt = _insert(session, STATS).values(rows[i:i + PAGE])
        stmt = stmt.on_conflict_do_update(
            index_elements=["ip_id", "day"],
            set_={name: STATS.c[name] + stmt.excluded[name] for name in ("sent", "delivered", "bounced",
                                                                        "complaints")})
        session.execute(stmt)
