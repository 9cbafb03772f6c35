"""Read what the per-IP fleet gauges need from the database: one grouped query per family (issue 15).

Read-only, no Temporal. The rates themselves are computed by the warmup gate's functions
(models/fleet_metrics.py); this module only sums `daily_stat` over the gate window, per IP, in SQL,
so a scrape moves one row per IP rather than seven.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from activities.warmup import tenant_thresholds
from models.fleet_metrics import IpRow
from models.tables import BlocklistEvent, DailyStat, SendingIp, Tenant
from models.warmup import GateThresholds, WindowStats, gate_window

_IP = SendingIp.__table__  # type: ignore[attr-defined]
_TENANT = Tenant.__table__  # type: ignore[attr-defined]
_STAT = DailyStat.__table__  # type: ignore[attr-defined]
_EVENT = BlocklistEvent.__table__  # type: ignore[attr-defined]


@dataclass
class IpFigures:
    """Everything the per-IP families show, read at one instant."""

    today: dt.date
    window: tuple[dt.date, dt.date]
    ips: list[IpRow] = field(default_factory=list)
    #: address -> the IP's counts summed over the gate window (IPs with no row in it are absent)
    windows: dict[str, WindowStats] = field(default_factory=dict)
    thresholds: dict[str, GateThresholds] = field(default_factory=dict)
    #: (tenant, zone) -> IPs with an open listing on that zone
    listed: dict[tuple[str, str], int] = field(default_factory=dict)


def ip_rows(conn: Connection) -> list[IpRow]:
    """Every sending IP with its tenant, status, phase and quota (one query)."""
    rows = conn.execute(
        select(_TENANT.c.name, _IP.c.address, _IP.c.status, _IP.c.warmup_phase, _IP.c.daily_quota,
               _IP.c.phase_started_on)
        .join(_TENANT, _TENANT.c.id == _IP.c.tenant_id).order_by(_TENANT.c.name, _IP.c.id))
    return [IpRow(t, a, _text(s), _text(p) if p is not None else None, int(q or 0), d)
            for t, a, s, p, q, d in rows]


def window_totals(conn: Connection, first: dt.date, last: dt.date) -> dict[str, WindowStats]:
    """Per IP address: sent, delivered, bounced, complaints summed over [first, last] (one grouped query)."""
    rows = conn.execute(
        select(_IP.c.address, func.sum(_STAT.c.sent), func.sum(_STAT.c.delivered), func.sum(_STAT.c.bounced),
               func.sum(_STAT.c.complaints), func.count())
        .join(_IP, _IP.c.id == _STAT.c.ip_id)
        .where(_STAT.c.day >= first, _STAT.c.day <= last)
        .group_by(_IP.c.address))
    return {a: WindowStats(sent=int(s or 0), delivered=int(d or 0), bounced=int(b or 0), complaints=int(c or 0),
                           days_with_data=int(n))
            for a, s, d, b, c, n in rows}


def listed_ips(conn: Connection) -> dict[tuple[str, str], int]:
    """(tenant, zone) -> distinct IPs with a listing not cleared yet (one grouped query)."""
    rows = conn.execute(
        select(_TENANT.c.name, _EVENT.c.zone, func.count(func.distinct(_EVENT.c.ip_id)))
        .join(_IP, _IP.c.id == _EVENT.c.ip_id).join(_TENANT, _TENANT.c.id == _IP.c.tenant_id)
        .where(_EVENT.c.cleared_at.is_(None))
        .group_by(_TENANT.c.name, _EVENT.c.zone))
    return {(t, z): int(n) for t, z, n in rows}


def read_ip_figures(conn: Connection, today: dt.date) -> IpFigures:
    """The per-IP figures as of `today` (UTC): the window is the gate's, the 7 full days before it."""
    first, last = gate_window(today)
    with Session(bind=conn) as session:
        thresholds = {t.name: tenant_thresholds(t) for t in session.scalars(select(Tenant))}
    return IpFigures(today=today, window=(first, last), ips=ip_rows(conn),
                     windows=window_totals(conn, first, last), thresholds=thresholds, listed=listed_ips(conn))


def _text(value: object) -> str:
    """An enum column's value as its text (SQLAlchemy returns the enum member)."""
    return str(getattr(value, "value", value))
