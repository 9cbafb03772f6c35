"""contact.unsubscribe webhooks from MailWizz (issue 15): unsubscribe records read incrementally from the
MailWizz API (GET campaigns/{uid}/unsubscribes, notes/esp.md §1), queued only for receivers subscribed
to contact events, deduplicated by list and subscriber, and delivered signed by the sync workflow.

MailWizz (commercial PHP) cannot run here: tests/servers/mailwizz.py is the test double speaking the
documented endpoints and response shapes on loopback. Everything else is real: the database (SQLite
and PostgreSQL), the time-skipping server with the registry's worker, a receiver verifying every
request with the `standardwebhooks` library.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from activities.db import session_scope
from activities.inventory import apply_inventory
from activities.mailwizz import ingest_stats
from activities.mailwizz_unsubscribes import ingest_unsubscribes
from activities.webhooks import outbox
from models import webhooks as wh
from models.inventory import parse
from models.mailwizz import MailwizzProtocolError, Unsubscribe, list_uid, parse_unsubscribe, unread
from models.ops_tables import MailwizzUnsubscribeCursor
from models.settings import get_settings
from models.tables import MailwizzServer, Tenant
from tests import failover_support as fs
from tests.servers.mailwizz import LIST_UID, MailwizzDouble, unsubscribe_record
from tests.webhook_receiver import SECRET, Receiver, inventory_webhooks

TENANT = "mw-u"
FLEET: dict[str, list[tuple[str, str, str | None]]] = {TENANT: [("127.0.51.11", "active", None)]}
KEY = "mw-secret-key"
DATA = Path(__file__).resolve().parent / "data"


def _rec(n: int, day: int = 28, minute: int = 0, reason: str = "") -> dict[str, object]:
    return unsubscribe_record(f"sub{n:05d}", f"lead{n}@example.org", f"2026-11-{day:02d} 10:{minute:02d}:{n % 60:02d}",
                              reason)


# ------------------------------------------------------------------------------------------ pure rules


def test_records_parsed_as_the_api_renders_them_and_bad_ones_refused() -> None:
    u = parse_unsubscribe(unsubscribe_record("ab12cd34ef567", " Lead@Example.org ", "2026-11-28 10:00:05", "too many"))
    assert u == Unsubscribe("ab12cd34ef567", "Lead@Example.org", "2026-11-28T10:00:05+00:00", "too many")
    assert u.marker == "ab12cd34ef567@2026-11-28T10:00:05+00:00"
    for bad, why in [({"date_added": "2026-11-28 10:00:00"}, "without a subscriber"),
                     (unsubscribe_record("../x", "a@b.example", "2026-11-28 10:00:00"), "subscriber uid"),
                     (unsubscribe_record("s1", "not an address", "2026-11-28 10:00:00"), "not an email"),
                     (unsubscribe_record("s1", "a@b.example", "yesterday"), "date_added")]:
        with pytest.raises(MailwizzProtocolError, match=why):
            parse_unsubscribe(bad)
    assert list_uid({"status": "success", "data": {"record": {"list": {"list_uid": "lb0a1"}}}}) == "lb0a1"
    with pytest.raises(MailwizzProtocolError, match="list uid"):
        list_uid({"status": "success", "data": {"record": {"list": {"list_uid": "a/b"}}}})


def test_unread_stops_at_the_cursor() -> None:
    newest_first = [parse_unsubscribe(_rec(n)) for n in (5, 4, 3, 2, 1)]
    assert unread(newest_first, newest_first[2].marker, 0) == (newest_first[:2], True)
    assert unread(newest_first[:2], newest_first[2].marker, 0) == (newest_first[:2], False)  # not there yet
    assert unread(newest_first, "", 3) == (newest_first[:3], True)  # a cursor set by count only
    assert unread(newest_first, "gone@2026-11-01T00:00:00+00:00", 2) == (newest_first, False)  # deleted: all


def test_event_id_names_the_tenant_list_and_subscriber() -> None:
    u = parse_unsubscribe(_rec(1, reason="moved"))
    ev = wh.contact_unsubscribe(TENANT, LIST_UID, "camp1", u)
    assert ev.type == "contact.unsubscribe" and ev.type in wh.CONTACT_EVENTS and wh.event_id(ev.id) == ev.id
    assert ev.occurred_at == u.at and ev.data == {
        "recipient": "lead1@example.org", "tenant": TENANT, "list_uid": LIST_UID, "subscriber_uid": "sub00001",
        "campaign_uid": "camp1", "reason": "moved", "source": "mailwizz"}
    assert wh.contact_unsubscribe(TENANT, LIST_UID, "camp2", u).id == ev.id  # another campaign of the list
    assert wh.contact_unsubscribe(TENANT, "otherlist", "camp1", u).id != ev.id


# ------------------------------------------------------------------------------------------ activity


@pytest.fixture
def mailwizz() -> Iterator[MailwizzDouble]:
    with MailwizzDouble("127.0.51.2") as mw:
        yield mw


def _load(url: str, mw: MailwizzDouble, *receivers: tuple[str, str, list[str]]) -> None:
    """The one-IP fleet whose MailWizz is the double, with these webhook receivers."""
    text = fs.inventory_text(FLEET).replace('base_url = "http://127.0.40.200/api"', f'base_url = "{mw.base_url}"')
    apply_inventory(parse(text + "\n" + inventory_webhooks(*receivers)), actor="test", url=url)
    with session_scope(url) as s:
        t = s.exec(select(Tenant).where(Tenant.name == TENANT)).one()
        assert s.exec(select(MailwizzServer).where(MailwizzServer.tenant_id == t.id)).one().base_url == mw.base_url


@pytest.fixture
def setup(db_url: str, mailwizz: MailwizzDouble, monkeypatch: pytest.MonkeyPatch) -> str:
    _load(db_url, mailwizz)
    monkeypatch.setenv("EMAIL_ENGINE_MAILWIZZ_KEYS", f"{TENANT}={KEY}")
    monkeypatch.setenv("EMAIL_ENGINE_WEBHOOK_SECRETS", f"leads={SECRET},fleet={SECRET}")
    get_settings.cache_clear()
    return db_url


def _unsub_requests(mw: MailwizzDouble) -> list[str]:
    return [p for _, p in mw.requests if p.endswith("/unsubscribes")]


def _cursors(url: str) -> dict[str, tuple[int, str]]:
    with session_scope(url) as s:
        return {c.campaign_uid: (c.read_count, c.marker) for c in s.exec(select(MailwizzUnsubscribeCursor))}


def _restore(url: str, cursors: dict[str, tuple[int, str]]) -> None:
    with session_scope(url) as s:
        for c in s.exec(select(MailwizzUnsubscribeCursor)):
            c.read_count, c.marker = cursors[c.campaign_uid]
            s.add(c)


async def _sync(url: str) -> dict[str, int]:
    await ingest_stats(TENANT, url=url, backoff=0.01)
    r = await ingest_unsubscribes(TENANT, url=url, backoff=0.01)
    return {"read": r.read, "queued": r.queued, "campaigns": r.campaigns_read, "baselined": r.baselined,
            "malformed": r.malformed}


async def test_read_incrementally_only_for_subscribed_receivers_and_idempotent(setup: str,
                                                                              mailwizz: MailwizzDouble) -> None:
    url = setup
    mailwizz.state.campaigns = {
        "camp1": {"name": "Nov", "status": "sending", "stats": {}, "unsubscribes": [_rec(n) for n in range(3)]},
        "camp2": {"name": "Oct", "status": "sent", "stats": {}, "unsubscribes": []},
    }
    # Nobody subscribes to contact.unsubscribe: no address is read, the cursor only moves to the count
    assert await _sync(url) == {"read": 0, "queued": 0, "campaigns": 0, "baselined": 1, "malformed": 0}
    assert _unsub_requests(mailwizz) == []
    _load(url, mailwizz, ("leads", "http://127.0.51.101:9/in", ["contact.unsubscribe", "contact.complaint"]),
          ("fleet", "http://127.0.51.102:9/in", ["ip.quarantined", "contact.hard_bounce"]))
    # from now on: two new unsubscribes in camp1 (after the baseline), one in camp2
    camp1 = mailwizz.state.campaigns["camp1"]["unsubscribes"]
    camp1 += [_rec(3, minute=5, reason="too many"), _rec(4, minute=6)]
    mailwizz.state.campaigns["camp2"]["unsubscribes"].append(_rec(10, day=27))
    mailwizz.requests.clear()
    assert await _sync(url) == {"read": 3, "queued": 3, "campaigns": 2, "baselined": 0, "malformed": 0}
    assert sorted(_unsub_requests(mailwizz)) == ["/api/campaigns/camp1/unsubscribes",
                                                 "/api/campaigns/camp2/unsubscribes"]  # one page each
    rows = outbox("leads", url)
    assert outbox("fleet", url) == []  # not subscribed: never written for it
    # oldest first; the body carries the recipient
    import json
    bodies = [json.loads(r.body) for r in rows]
    assert [b["data"]["subscriber_uid"] for b in bodies] == ["sub00010", "sub00003", "sub00004"]
    assert bodies[1]["data"]["recipient"] == "lead3@example.org" and bodies[1]["data"]["reason"] == "too many"
    assert {b["data"]["list_uid"] for b in bodies} == {LIST_UID}
    # nothing new: no unsubscribe request at all (the stats count did not grow)
    mailwizz.requests.clear()
    assert (await _sync(url))["read"] == 0 and _unsub_requests(mailwizz) == []
    # 60 more (two pages), then one more: only the new page(s) are read, the campaign's list once
    before = _cursors(url)
    camp1 += [_rec(100 + n, minute=10) for n in range(60)]
    mailwizz.requests.clear()
    assert (await _sync(url))["read"] == 60
    assert _unsub_requests(mailwizz) == ["/api/campaigns/camp1/unsubscribes"] * 2
    assert [p for _, p in mailwizz.requests if p == "/api/campaigns/camp1"] == []  # list uid remembered
    camp1.append(_rec(200, minute=20))
    mailwizz.requests.clear()
    assert (await _sync(url))["read"] == 1 and _unsub_requests(mailwizz) == ["/api/campaigns/camp1/unsubscribes"]
    assert len(outbox("leads", url)) == 64
    # cursors back where they were before those two syncs (a sync that read, queued, then lost its cursor
    # write): the 61 are read again and queue nothing twice, the ids name the list and the subscriber
    _restore(url, before)
    again = await _sync(url)
    assert again["read"] == 61 and len(outbox("leads", url)) == 64 and _cursors(url) != before
    # the same subscriber unsubscribed through another campaign of the same list: the same event
    mailwizz.state.campaigns["camp2"]["unsubscribes"].append(_rec(3, day=29))
    assert (await _sync(url))["read"] == 1 and len(outbox("leads", url)) == 64
    # a record MailWizz renders without an address is skipped and counted, the rest goes on
    camp1 += [unsubscribe_record("sub99998", "", "2026-11-29 11:00:00"), _rec(300, day=29)]
    assert (await _sync(url))["malformed"] == 1 and len(outbox("leads", url)) == 65


# ------------------------------------------------------------------------------------------ workflow


def test_syncs_recorded_before_the_unsubscribes_replay() -> None:
    """A sync recorded before unsubscribes were read (tests/data/mailwizz-sync-history-v1.json) replays on
    today's workflow (the new activity and the wake are patched in)."""
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from workflows.mailwizz_sync import MailwizzSyncWorkflow

    f = DATA / "mailwizz-sync-history-v1.json"
    asyncio.run(Replayer(workflows=[MailwizzSyncWorkflow]).replay_workflow(
        WorkflowHistory.from_json(f.stem, f.read_text())))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sync_workflow_delivers_signed_unsubscribes(temporal_time_skipping, setup: str,
                                                          mailwizz: MailwizzDouble) -> None:
    from workflows.mailwizz_sync import MailwizzSyncInput, MailwizzSyncResult, MailwizzSyncWorkflow

    url = setup
    leads, fleet = Receiver("127.0.51.101"), Receiver("127.0.51.102")
    _load(url, mailwizz, ("leads", leads.url, ["contact.unsubscribe"]), ("fleet", fleet.url, ["ip.quarantined"]))
    mailwizz.state.campaigns = {"camp1": {"name": "Nov", "status": "sending", "stats": {},
                                          "unsubscribes": [_rec(1, minute=1), _rec(2, minute=2, reason="moved")]}}
    client = temporal_time_skipping.client

    async def sync() -> MailwizzSyncResult:
        return await client.execute_workflow(MailwizzSyncWorkflow.run, MailwizzSyncInput(),
                                             id=f"mailwizz-sync-{uuid.uuid4().hex[:6]}", task_queue=queue,
                                             result_type=MailwizzSyncResult)

    async def delivered(n: int) -> None:
        for _ in range(300):
            if len(leads.verified) >= n:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{len(leads.verified)} of {n} delivered")

    alerts = fs.AlertLog()
    with leads, fleet, temporal_time_skipping.auto_time_skipping_disabled():
        async with fs.engine_worker(client, [alerts.activity()]) as queue:
            first = await sync()
            assert first.failed == [] and first.tenants[TENANT]["unsubscribes"]["queued"] == 2
            await delivered(2)
            mailwizz.state.campaigns["camp1"]["unsubscribes"].append(_rec(3, minute=3))
            second = await sync()
            assert second.tenants[TENANT]["unsubscribes"]["read"] == 1
            await delivered(3)
            third = await sync()  # nothing new: nothing read, nothing sent
            assert third.tenants[TENANT]["unsubscribes"]["read"] == 0
            await asyncio.sleep(0.5)
    assert leads.rejected == [] and fleet.verified == [] and fleet.rejected == [] and alerts.alerts == []
    assert leads.types() == ["contact.unsubscribe"] * 3
    assert [r.body["data"]["recipient"] for r in leads.verified] == [f"lead{n}@example.org" for n in (1, 2, 3)]
    assert leads.verified[1].body["data"]["reason"] == "moved"
    assert leads.verified[0].body["timestamp"] == "2026-11-28T10:01:01+00:00"
    assert len(set(leads.ids())) == 3 and all(r.status == "delivered" for r in outbox("leads", url))
