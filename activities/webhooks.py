"""Outbound webhooks (issue 15): the outbox in the database, and the signed HTTP delivery.

- `queue_event` writes one outbox row per enabled receiver subscribed to the event's type, each unique
  on (receiver, event id): recording the same event again (a retried activity, a replayed workflow)
  queues nothing twice. It can run inside another transaction (`queue_in`, the accounting ingest: the
  contact events of a chunk are queued exactly when the chunk is counted).
- `deliver_webhooks` (activity) POSTs a receiver's pending rows in `id` order, signed per Standard
  Webhooks (models.webhooks), and stops at the first failure: the row stays at the head, so later
  events never overtake it. The first row failing raises, and Temporal retries with backoff
  (workflows/webhooks.py); a receiver that is down delays only its own queue.
- Reading for the CLI: receivers with their queue counts, replay (rows since a time set pending again).

A 2xx answer is delivered; anything else (3xx is not followed, 4xx, 5xx, timeouts, refused
connections) is a failed attempt, recorded on the row (status code or error type, never a secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import session_scope
from activities.keepalive import heartbeating
from models import webhooks as wh
from models.settings import get_settings
from models.webhook_tables import DELIVERED, FAILED, PENDING, WebhookOutbox, WebhookReceiver

#: Rows one delivery activity sends at most, and the wall time it spends before returning.
BATCH = 100
BATCH_SECONDS = 60.0


def _utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC) if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ----------------------------------------------------------------------------------------- queueing


def _insert_ignore(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(WebhookOutbox).values(rows).on_conflict_do_nothing(
            constraint="uq_webhook_outbox_event"))
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(WebhookOutbox).values(rows).on_conflict_do_nothing())
    else:
        raise RuntimeError(f"webhooks support SQLite and PostgreSQL, not {conn.dialect.name}")


def subscribers(session: Session, types: set[str]) -> dict[str, list[str]]:
    """Event type -> enabled receivers subscribed to it (only the types asked for)."""
    out: dict[str, list[str]] = {t: [] for t in types}
    for r in session.exec(select(WebhookReceiver).where(col(WebhookReceiver.enabled).is_(True))
                          .order_by(col(WebhookReceiver.name))):
        for t in r.event_list():
            if t in out:
                out[t].append(r.name)
    return out


def queue_in(session: Session, events: list[wh.WebhookEvent]) -> list[str]:
    """Queue `events` (in this order) for their subscribers within `session`; returns the receivers
    that have a row for any of them (new or already queued: all of them need a wake-up)."""
    subs = subscribers(session, {e.type for e in events})
    rows, receivers = [], set()
    now = _now()
    for ev in events:
        wh.event_id(ev.id)
        for name in subs.get(ev.type, []):
            receivers.add(name)
            rows.append({"receiver": name, "event_id": ev.id, "event_type": ev.type,
                         "occurred_at": _utc(dt.datetime.fromisoformat(ev.occurred_at)), "body": wh.payload(ev),
                         "status": PENDING, "attempts": 0, "last_error": "", "created_at": now})
    _insert_ignore(session, rows)
    return sorted(receivers)


def queue_event(ev: wh.WebhookEvent, url: str | None = None) -> list[str]:
    """Queue one event for its subscribers (idempotent); the receivers to wake."""
    with session_scope(url) as session:
        return queue_in(session, [ev])


def receivers_with_pending(url: str | None = None) -> list[str]:
    with session_scope(url) as session:
        q = (select(WebhookOutbox.receiver).join(WebhookReceiver, col(WebhookReceiver.name) == col(
            WebhookOutbox.receiver)).where(WebhookOutbox.status == PENDING, col(WebhookReceiver.enabled).is_(True))
             .distinct())
        return sorted(session.exec(q))


def wants(types: set[str], url: str | None = None) -> bool:
    """Whether any enabled receiver subscribes to one of `types` (the ingest skips contact work if not)."""
    with session_scope(url) as session:
        return any(subscribers(session, types).values())


# ----------------------------------------------------------------------------------------- delivery


@dataclass
class DeliverRequest:
    receiver: str


@dataclass
class DeliverResult:
    delivered: int = 0
    #: Rows still pending after this batch (the workflow calls again at once).
    remaining: bool = False
    #: The receiver is gone from the inventory or disabled: its rows wait, the workflow ends.
    disabled: bool = False


@dataclass
class _Receiver:
    name: str
    url: str
    secrets: list[str] = field(default_factory=list)


def _load_receiver(name: str, url: str | None = None) -> _Receiver | None:
    with session_scope(url) as session:
        r = session.exec(select(WebhookReceiver).where(WebhookReceiver.name == name)).first()
        if r is None or not r.enabled:
            return None
        return _Receiver(r.name, wh.receiver_url(r.url))


def _pending(name: str, limit: int, url: str | None = None) -> list[tuple[int, str, str]]:
    with session_scope(url) as session:
        q = (select(WebhookOutbox.id, WebhookOutbox.event_id, WebhookOutbox.body)
             .where(WebhookOutbox.receiver == name, WebhookOutbox.status == PENDING)
             .order_by(col(WebhookOutbox.id)).limit(limit))
        return [(int(i), e, b) for i, e, b in session.exec(q) if i is not None]


def _settle(row_id: int, ok: bool, error: str, url: str | None = None) -> None:
    now = _now()
    values: dict[str, Any] = {"attempts": WebhookOutbox.attempts + 1, "last_attempt_at": now,
                              "last_error": error[:512]}
    if ok:
        values.update(status=DELIVERED, delivered_at=now)
    with session_scope(url) as session:
        session.exec(update(WebhookOutbox).where(col(WebhookOutbox.id) == row_id,
                                                 col(WebhookOutbox.status) == PENDING).values(**values))


def prune(name: str, retention_days: int, url: str | None = None) -> int:
    cutoff = _now() - dt.timedelta(days=retention_days)
    with session_scope(url) as session:
        out = session.connection().execute(delete(WebhookOutbox).where(
            col(WebhookOutbox.receiver) == name, col(WebhookOutbox.status) == DELIVERED,
            col(WebhookOutbox.delivered_at) < cutoff))
        return int(out.rowcount or 0)


def secrets_for(name: str) -> list[str]:
    """The receiver's secrets from EMAIL_ENGINE_WEBHOOK_SECRETS; a missing one is a retryable error
    (the operator sets it and restarts the workers within the retry budget)."""
    try:
        secrets = wh.parse_secrets(get_settings().webhook_secrets.get_secret_value()).get(name)
    except wh.WebhookConfigError as err:
        raise ApplicationError(str(err), type="WebhookSecretInvalid") from None
    if not secrets:
        raise ApplicationError(f"receiver {name!r} has no secret in EMAIL_ENGINE_WEBHOOK_SECRETS",
                               type="WebhookSecretMissing")
    return secrets


async def post(http: Any, receiver: _Receiver, msg_id: str, body: str) -> str:
    """One signed attempt; returns "" when the receiver answered 2xx, else why not (no secret in it)."""
    import httpx

    hdrs = wh.headers(receiver.secrets, msg_id, dt.datetime.now(dt.UTC), body)
    try:
        resp = await http.post(receiver.url, content=body.encode(), headers=hdrs)
    except httpx.HTTPError as err:
        return f"{type(err).__name__}: {str(err)[:200]}"
    if 200 <= resp.status_code < 300:
        return ""
    return f"HTTP {resp.status_code}"


def _heartbeat(detail: str) -> None:
    with contextlib.suppress(RuntimeError):
        activity.heartbeat(detail)


async def deliver_pending(name: str, url: str | None = None, limit: int = BATCH,
                          budget: float = BATCH_SECONDS) -> DeliverResult:
    """Send the receiver's pending rows in order until one fails, `limit` rows or `budget` seconds.
    Raises ApplicationError("WebhookUndelivered") when the first row fails (Temporal backs off)."""
    import httpx

    receiver = await asyncio.to_thread(_load_receiver, name, url)
    if receiver is None:
        return DeliverResult(disabled=True)
    rows = await asyncio.to_thread(_pending, name, limit, url)
    if not rows:
        return DeliverResult()
    receiver.secrets = secrets_for(name)
    settings = get_settings()
    started, delivered = time.monotonic(), 0
    async with httpx.AsyncClient(timeout=settings.webhook_timeout, follow_redirects=False) as http:
        for row_id, msg_id, body in rows:
            _heartbeat(f"{name}: {msg_id}")
            error = await post(http, receiver, msg_id, body)
            await asyncio.to_thread(_settle, row_id, not error, error, url)
            if error:
                if delivered == 0:
                    raise ApplicationError(f"receiver {name!r}: event {msg_id} not delivered: {error}",
                                           type="WebhookUndelivered")
                break
            delivered += 1
            if time.monotonic() - started > budget:
                break
    await asyncio.to_thread(prune, name, settings.webhook_retention_days, url)
    left = await asyncio.to_thread(_pending, name, 1, url)
    return DeliverResult(delivered=delivered, remaining=bool(left))


@activity.defn(name="deliver_webhooks")
@heartbeating
async def deliver_webhooks(req: DeliverRequest) -> DeliverResult:
    """Deliver the receiver's pending events in order (see deliver_pending)."""
    return await deliver_pending(req.receiver)


def give_up_head(name: str, reason: str, url: str | None = None) -> str | None:
    """The retry budget of the receiver's first pending row is spent: mark it failed (replay can send it
    again) so the events behind it move on. Returns its event id."""
    with session_scope(url) as session:
        row = session.exec(select(WebhookOutbox).where(WebhookOutbox.receiver == name,
                                                       WebhookOutbox.status == PENDING)
                           .order_by(col(WebhookOutbox.id)).limit(1)).first()
        if row is None:
            return None
        row.status = FAILED
        row.last_error = f"gave up: {reason}"[:512]
        session.add(row)
        return row.event_id


@activity.defn(name="give_up_webhook")
@heartbeating
def give_up_webhook(req: DeliverRequest) -> str | None:
    return give_up_head(req.receiver, "retry budget spent")


# ----------------------------------------------------------------------------------------- reading


def list_receivers(url: str | None = None) -> list[dict[str, Any]]:
    """Every receiver with its queue: counts by status, oldest pending, last error (no secret, only
    whether one is configured)."""
    try:
        secrets = wh.parse_secrets(get_settings().webhook_secrets.get_secret_value())
        secret_problem = ""
    except wh.WebhookConfigError as err:
        secrets, secret_problem = {}, str(err)
    with session_scope(url) as session:
        counts: dict[str, Counter[str]] = {}
        for receiver, status, n in session.exec(select(WebhookOutbox.receiver, WebhookOutbox.status,
                                                       func.count()).group_by(col(WebhookOutbox.receiver),
                                                                              col(WebhookOutbox.status))):
            counts.setdefault(receiver, Counter())[status] = int(n)
        out = []
        for r in session.exec(select(WebhookReceiver).order_by(col(WebhookReceiver.name))):
            head = session.exec(select(WebhookOutbox).where(WebhookOutbox.receiver == r.name,
                                                            WebhookOutbox.status == PENDING)
                                .order_by(col(WebhookOutbox.id)).limit(1)).first()
            c = counts.get(r.name, Counter())
            out.append({"name": r.name, "url": r.url, "events": r.event_list(), "enabled": r.enabled,
                        "secret": "invalid" if secret_problem else ("set" if r.name in secrets else "missing"),
                        "pending": c[PENDING], "delivered": c[DELIVERED], "failed": c[FAILED],
                        "oldest_pending": head.occurred_at.isoformat() if head else None,
                        "last_error": head.last_error if head else ""})
        return out


def replay(since: dt.datetime, receiver: str | None = None, url: str | None = None) -> dict[str, int]:
    """Queue again every event of `receiver` (None: all) that happened at or after `since`, delivered
    or failed; they keep their ids, so a receiver that already has one can recognise it. Returns the
    rows set pending per receiver."""
    with session_scope(url) as session:
        q = select(WebhookOutbox).where(col(WebhookOutbox.occurred_at) >= _utc(since),
                                        col(WebhookOutbox.status) != PENDING)
        if receiver is not None:
            q = q.where(WebhookOutbox.receiver == receiver)
        out: Counter[str] = Counter()
        for row in session.exec(q):
            row.status, row.last_error = PENDING, "replayed"
            session.add(row)
            out[row.receiver] += 1
        return dict(out)


def outbox(receiver: str, url: str | None = None) -> list[WebhookOutbox]:
    """A receiver's rows in delivery order (tests, `webhooks list --json` detail)."""
    with session_scope(url) as session:
        rows = list(session.exec(select(WebhookOutbox).where(WebhookOutbox.receiver == receiver)
                                 .order_by(col(WebhookOutbox.id))))
        for r in rows:
            session.expunge(r)
        return rows


def make_test_event(receiver: str, now: dt.datetime | None = None) -> wh.WebhookEvent:
    now = now or dt.datetime.now(dt.UTC)
    return wh.WebhookEvent(id=wh.stable_id("test", receiver, now.isoformat()), type=wh.TEST_EVENT,
                           occurred_at=now.isoformat(),
                           data={"receiver": receiver, "message": "test from email-engine"})


async def send_test(name: str, url: str | None = None) -> tuple[str, float]:
    """Send one signed `webhook.test` event now, outside the queue; (error or "", seconds taken)."""
    import httpx

    receiver = await asyncio.to_thread(_load_receiver, name, url)
    if receiver is None:
        raise LookupError(f"no enabled webhook receiver {name!r}")
    try:
        receiver.secrets = secrets_for(name)
    except ApplicationError as err:
        raise LookupError(err.message) from None
    ev = make_test_event(name)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=get_settings().webhook_timeout, follow_redirects=False) as http:
        error = await post(http, receiver, ev.id, wh.payload(ev))
    return error, time.monotonic() - started
