"""contact.unsubscribe webhooks from MailWizz (issue 15): a tenant's new unsubscribe records, read
incrementally, queued in the webhook outbox for the receivers subscribed to them.

MailWizz's API (notes/esp.md §1) lists a campaign's unsubscribes newest first (GET
campaigns/{uid}/unsubscribes, since 1.9.15) and counts them in the campaign's stats. So:
- only campaigns whose stats count (just recorded by ingest_stats, `mailwizz_campaign_stat`) is above
  their cursor's are asked, and only from the newest page down to the cursor's newest record
  (`mailwizz_unsubscribe_cursor`; a cursor set by count only: down to the new count). A sync with
  nothing new asks nothing;
- events and cursors are written in one transaction; the event id is the tenant, list and subscriber,
  so a retry that reads again (nothing committed) or a subscriber unsubscribed through two campaigns of
  one list queues one event;
- privacy (models/webhooks.py): with no receiver subscribed to contact.unsubscribe no address is read;
  the cursors only move to the stats' counts, so a receiver added later gets unsubscribes from then on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any

from sqlmodel import col, select
from temporalio import activity

from activities.db import session_scope
from activities.keepalive import heartbeating
from activities.mailwizz import MailwizzClient, client_for
from activities.webhooks import queue_in, wants
from models.mailwizz import MailwizzError, Unsubscribe, parse_unsubscribe, unread
from models.ops_tables import MailwizzCampaignStat, MailwizzUnsubscribeCursor
from models.tables import Tenant, utcnow
from models.webhooks import WebhookEvent, contact_unsubscribe

log = logging.getLogger("email_engine.mailwizz")

UNSUBSCRIBE_EVENT = "contact.unsubscribe"


@dataclass
class UnsubscribeReport:
    tenant: str
    #: campaigns whose unsubscribe records were read (only those whose stats count grew)
    campaigns_read: int = 0
    #: new unsubscribe records read, and how many became events for at least one receiver
    read: int = 0
    queued: int = 0
    #: records that could not be used (no subscriber uid, no address, bad date), skipped
    malformed: int = 0
    #: no receiver subscribes to contact.unsubscribe: cursors moved to the stats' count, nothing read
    baselined: int = 0


@dataclass(frozen=True)
class _Todo:
    campaign_uid: str
    #: the stats' unsubscribes_count (this sync's reading), and the cursor as it was
    stats_count: int
    read_count: int
    marker: str
    list_uid: str


@dataclass
class _Read:
    todo: _Todo
    list_uid: str
    count: int
    marker: str
    new: list[Unsubscribe]


def _unsubscribe_todo(tenant: str, url: str | None) -> list[_Todo]:
    """Campaigns whose stats (just recorded by ingest_stats) count more unsubscribes than their cursor."""
    with session_scope(url) as s:
        t = s.exec(select(Tenant).where(Tenant.name == tenant)).first()
        if t is None:
            raise LookupError(f"no tenant named {tenant!r}")
        cursors = {c.campaign_uid: c for c in s.exec(
            select(MailwizzUnsubscribeCursor).where(MailwizzUnsubscribeCursor.tenant_id == t.id))}
        out = []
        for st in s.exec(select(MailwizzCampaignStat).where(MailwizzCampaignStat.tenant_id == t.id)
                         .order_by(col(MailwizzCampaignStat.id))):
            c = cursors.get(st.campaign_uid)
            if st.unsubscribes > (c.read_count if c else 0):
                out.append(_Todo(st.campaign_uid, st.unsubscribes, c.read_count if c else 0, c.marker if c else "",
                                 c.list_uid if c else ""))
        return out


async def _read_new(mw: MailwizzClient, todo: _Todo, report: UnsubscribeReport) -> _Read:
    """The campaign's records newer than its cursor: pages from the newest until the cursor's record
    (or, for a cursor set by count, until the new count is read)."""
    lst = todo.list_uid or await mw.campaign_list_uid(todo.campaign_uid)
    records: list[Unsubscribe] = []
    seen: set[str] = set()
    page, count = 1, 0
    while True:
        p = await mw.unsubscribes_page(todo.campaign_uid, page)
        count = max(count, p.count)
        for r in p.records:
            try:
                u = parse_unsubscribe(r)
            except MailwizzError as exc:
                report.malformed += 1
                log.warning("MailWizz %s: unsubscribe record skipped: %s", todo.campaign_uid, exc)
                continue
            if u.marker not in seen:  # a record arriving between two pages shifts the next page by one
                seen.add(u.marker)
                records.append(u)
        new, complete = unread(records, todo.marker, count - todo.read_count)
        if complete or not p.next_page or p.next_page <= page:
            break
        page = p.next_page
    return _Read(todo, lst, count, records[0].marker if records else todo.marker, new)


def _record_unsubscribes(tenant: str, reads: list[_Read], baseline: list[_Todo], url: str | None) -> int:
    """One transaction: the events (oldest first) into the outbox for their subscribers, and the cursors
    advanced. A retry re-reads what this did not commit, and queues nothing twice (stable event ids).
    Returns the events queued for at least one receiver."""
    with session_scope(url) as s:
        # serializes the tenant's syncs (as record_readings does): a cursor never moves back
        t = s.exec(select(Tenant).where(Tenant.name == tenant).with_for_update()).one()
        cursors = {c.campaign_uid: c for c in s.exec(
            select(MailwizzUnsubscribeCursor).where(MailwizzUnsubscribeCursor.tenant_id == t.id))}
        events: dict[str, WebhookEvent] = {}  # one per list and subscriber, the oldest
        for r in reads:
            for u in r.new:
                ev = contact_unsubscribe(tenant, r.list_uid, r.todo.campaign_uid, u)
                events[ev.id] = min(ev, events.get(ev.id, ev), key=lambda e: e.occurred_at)
        ordered = sorted(events.values(), key=lambda e: (e.occurred_at, e.id))
        receivers = queue_in(s, ordered) if ordered else []
        moves = [(r.todo.campaign_uid, r.count, r.marker, r.list_uid) for r in reads]
        moves += [(b.campaign_uid, b.stats_count, "", b.list_uid) for b in baseline]
        for uid, count, marker, lst in moves:
            c = cursors.get(uid) or MailwizzUnsubscribeCursor(tenant_id=t.id, campaign_uid=uid)  # type: ignore[arg-type]
            if c.read_count > count:  # another sync got further meanwhile
                continue
            c.read_count, c.marker, c.list_uid, c.read_at = count, marker, lst or c.list_uid, utcnow()
            s.add(c)
        return len(ordered) if receivers else 0


async def ingest_unsubscribes(tenant: str, url: str | None = None, **client_kwargs: Any) -> UnsubscribeReport:
    """Read the unsubscribes that are new since the last sync and queue their `contact.unsubscribe`
    events, only for receivers subscribed to it (models/webhooks.py privacy rule). Incremental: only
    campaigns whose stats count grew are asked, and only down to the cursor. With no subscribed receiver
    no address is read at all: the cursors move to the stats' counts, so a receiver added later gets the
    unsubscribes from then on, not the whole history."""
    report = UnsubscribeReport(tenant)
    todo = await asyncio.to_thread(_unsubscribe_todo, tenant, url)
    if not todo:
        return report
    if not await asyncio.to_thread(wants, {UNSUBSCRIBE_EVENT}, url):
        await asyncio.to_thread(_record_unsubscribes, tenant, [], todo, url)
        report.baselined = len(todo)
        return report
    reads = []
    async with client_for(tenant, url=url, **client_kwargs) as mw:
        for item in todo:
            reads.append(await _read_new(mw, item, report))
    report.campaigns_read = len(reads)
    report.read = sum(len(r.new) for r in reads)
    report.queued = await asyncio.to_thread(_record_unsubscribes, tenant, reads, [], url)
    log.info("MailWizz %s: %d new unsubscribes in %d campaigns, %d queued as webhooks", tenant, report.read,
             report.campaigns_read, report.queued)
    return report


@activity.defn(name="ingest_mailwizz_unsubscribes")
@heartbeating
async def ingest_mailwizz_unsubscribes(tenant: str) -> dict[str, Any]:
    """Activity: the tenant's new unsubscribes as contact.unsubscribe webhook events (idempotent)."""
    return asdict(await ingest_unsubscribes(tenant))
