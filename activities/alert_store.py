"""Alert deduplication and ChatOps button state in the database (shared by threads and processes).

A claim is one atomic statement, so two workers racing on the same key send once. The claimant is
the activity attempt's identity (workflow id, run id, activity id): a retry of the same activity may
claim again and resend; anything else within the window is suppressed.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

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


@dataclass(frozen=True)
class NewButton:
    label: str
    workflow_id: str
    name: str
    kind: str
    arg: str | None = None
    run_id: str | None = None
    expires_at: dt.datetime | None = None


def store_buttons(alert_key: str, buttons: list[NewButton], url: str | None = None) -> list[str]:
    """Persist buttons; returns one random token per button (its callback data)."""
    tokens = []
    with session_scope(url) as s:
        for b in buttons:
            token = secrets.token_urlsafe(12)
            s.add(AlertButton(token=token, alert_key=alert_key, label=b.label[:64], workflow_id=b.workflow_id,
                              name=b.name, kind=b.kind, arg=b.arg, run_id=b.run_id, expires_at=b.expires_at))
            tokens.append(token)
    return tokens


def load_button(token: str, url: str | None = None) -> AlertButton | None:
    with session_scope(url) as s:
        return s.exec(select(AlertButton).where(col(AlertButton.token) == token)).first()


def claim_button(token: str, actor: str, now: dt.datetime | None = None, url: str | None = None) -> bool:
    """Mark the button used, before acting: one atomic UPDATE that only an unused, unexpired button
    passes. True for exactly one of any number of concurrent presses; False: used, expired or unknown."""
    now = now or utcnow()
    table = AlertButton.__table__  # type: ignore[attr-defined]
    with get_engine(url).begin() as conn:
        res = conn.execute(
            update(table)
            .where(table.c.token == token)
            .where(table.c.used_at.is_(None))
            .where(table.c.expires_at.is_(None) | (table.c.expires_at > now))
            .values(used_at=now, used_by=actor[:255], result=None)
        )
        return bool(res.rowcount == 1)


def release_button(token: str, actor: str, url: str | None = None) -> None:
    """Undo this actor's claim when nothing was done (Temporal unreachable): the button may be pressed again."""
    table = AlertButton.__table__  # type: ignore[attr-defined]
    with get_engine(url).begin() as conn:
        conn.execute(update(table).where(table.c.token == token).where(table.c.used_by == actor[:255])
                     .where(table.c.result.is_(None)).values(used_at=None, used_by=None))


def record_use(token: str, actor: str, result: str, url: str | None = None) -> None:
    """What the claimed press did (shown to anyone who presses the button again)."""
    table = AlertButton.__table__  # type: ignore[attr-defined]
    with get_engine(url).begin() as conn:
        conn.execute(update(table).where(table.c.token == token).where(table.c.used_by == actor[:255])
                     .values(result=result[:1024]))
