"""Alert deduplication and ChatOps button state in the database (shared by threads and processes).

A claim is one atomic statement, so two workers racing on the same key send once. The claimant is
the activity attempt's identity (workflow id, run id, activity id): a retry of the same activity may
claim again and resend; anything else within the window is suppressed.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from activities.db import get_engine, session_scope
from models.ops_tables import AlertButton, AlertSent
from models.tables import utcnow

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def claim(key: str, window_seconds: int, claimant: str, now: dt.datetime | None = None,
          url: str | None = None) -> bool:
    """True if this caller may send `key` now (and records it); False if sent within the window."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(seconds=window_seconds)
    table = AlertSent.__table__  # type: ignore[attr-defined]
    engine = get_engine(url)
    with engine.begin() as conn:
        res = conn.execute(
            update(table)
            .where(table.c.key == key)
            .where((table.c.sent_at <= cutoff) | ((table.c.claimed_by == claimant) & (table.c.claimed_by != "")))
            .values(sent_at=now, claimed_by=claimant, delivered=False)
        )
        if res.rowcount == 1:
            return True
    try:
        with engine.begin() as conn:
            conn.execute(table.insert().values(key=key, sent_at=now, claimed_by=claimant, delivered=False,
                                               suppressed=0))
        return True
    except IntegrityError:
        pass
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.key == key).values(suppressed=table.c.suppressed + 1))
    return False


def settle(key: str, claimant: str, delivered: bool, url: str | None = None) -> None:
    """After the send: mark delivered, or release the claim so the next alert with this key goes out."""
    table = AlertSent.__table__  # type: ignore[attr-defined]
    values = {"delivered": True} if delivered else {"sent_at": EPOCH, "delivered": False}
    with get_engine(url).begin() as conn:
        conn.execute(update(table).where(table.c.key == key).where(table.c.claimed_by == claimant).values(**values))


def store_buttons(alert_key: str, actions: list[tuple[str, str, str, str, str | None]],
                  url: str | None = None) -> list[str]:
    """Persist (label, workflow_id, name, kind, arg) buttons; returns one random token per button."""
    tokens = []
    with session_scope(url) as s:
        for label, workflow_id, name, kind, arg in actions:
            token = secrets.token_urlsafe(12)
            s.add(AlertButton(token=token, alert_key=alert_key, label=label[:64], workflow_id=workflow_id,
                              name=name, kind=kind, arg=arg))
            tokens.append(token)
    return tokens


def load_button(token: str, url: str | None = None) -> AlertButton | None:
    with session_scope(url) as s:
        return s.exec(select(AlertButton).where(col(AlertButton.token) == token)).first()


def record_use(token: str, actor: str, result: str, url: str | None = None) -> None:
    with session_scope(url) as s:
        b = s.get(AlertButton, token)
        if b is not None:
            b.used_at, b.used_by, b.result = utcnow(), actor[:255], result[:1024]
            s.add(b)
