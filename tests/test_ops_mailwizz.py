"""MailWizz client: delivery-server check, campaign stats into daily figures, errors and retries.

MailWizz (commercial PHP) cannot run here: tests/servers/mailwizz.py is a test double implementing
the documented 2.x endpoints and response shapes, on loopback.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest
from sqlmodel import select

from activities.db import session_scope
from activities.inventory import apply_inventory
from activities.mailwizz import MailwizzClient, check_delivery_server, ingest_stats
from models.inventory import parse
from models.mailwizz import (
    CampaignCounters,
    DeliveryServer,
    MailwizzAuthError,
    MailwizzForbidden,
    MailwizzNotFound,
    MailwizzUnavailable,
    attribute,
    check_mta_server,
    endpoint,
    parse_keys,
    parse_stats,
)
from models.settings import get_settings
from models.tables import DailyStat, MailwizzServer, SendingIp, Tenant
from tests.conftest import REFERENCE_INVENTORY
from tests.servers.mailwizz import MailwizzDouble

HOST = "127.0.50.2"
KEY = "mw-secret-key"


@pytest.fixture
def mailwizz() -> Iterator[MailwizzDouble]:
    with MailwizzDouble(HOST) as mw:
        mw.state.servers = [
            {"server_id": "3", "type": "smtp-pmta", "name": "pmta-1", "hostname": "100.1.1.1", "status": "active"},
            {"server_id": "4", "type": "smtp", "name": "old relay", "hostname": "relay.example", "status": "inactive"},
        ]
        yield mw


@pytest.fixture
def fleet(db_url: str, mailwizz: MailwizzDouble, monkeypatch: pytest.MonkeyPatch) -> str:
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=db_url)
    with session_scope(db_url) as s:
        t = s.exec(select(Tenant).where(Tenant.name == "client-1")).one()
        mws = s.exec(select(MailwizzServer).where(MailwizzServer.tenant_id == t.id)).one()
        mws.base_url = mailwizz.base_url
        s.add(mws)
    monkeypatch.setenv("EMAIL_ENGINE_MAILWIZZ_KEYS", f'{{"client-1": "{KEY}"}}')
    get_settings.cache_clear()
    return db_url


def test_keys_endpoints_and_rules() -> None:
    assert parse_keys("client-1=abc, client-2 = d=ef") == {"client-1": "abc", "client-2": "d=ef"}
    assert parse_keys('{"client-1": "abc"}') == {"client-1": "abc"}
    with pytest.raises(ValueError) as exc:
        parse_keys("client-1=topsecret,client-2")
    assert "entry 2" in str(exc.value) and "topsecret" not in str(exc.value)
    assert endpoint("https://mw.example/api/index.php/", "campaigns") == "https://mw.example/api/index.php/campaigns"
    servers = [DeliveryServer(1, "smtp", "a", "10.0.0.1", "inactive"),
               DeliveryServer(2, "smtp", "b", "pmta-1", "in-use")]
    assert check_mta_server(servers, {"100.1.1.1", "PMTA-1"}).ok
    r = check_mta_server(servers[:1], {"10.0.0.1"})
    assert not r.ok and "is inactive, not active" in r.message
    assert "no delivery server points at the MTA" in check_mta_server(servers, {"192.0.2.1"}).message
    stats = parse_stats({"status": "success", "data": {"processed_count": "10", "unique_opens_count": 4,
                                                       "unique_clicks_count": None}})
    assert (stats.processed, stats.opens, stats.clicks) == (10, 4, 0)
    a = attribute(CampaignCounters(opens=10, clicks=1), {"a": 100, "b": 200, "c": 0})
    assert a.opens == {"a": 3, "b": 7} and sum(a.clicks.values()) == 1 and "c" not in a.opens
    assert attribute(CampaignCounters(opens=5), {}).unattributed


async def test_client_errors_retries_and_paging(mailwizz: MailwizzDouble, caplog: pytest.LogCaptureFixture) -> None:
    mailwizz.state.servers = [{"server_id": str(i), "type": "smtp", "name": f"s{i:03}", "hostname": f"h{i}",
                               "status": "active"} for i in range(60)]
    async with MailwizzClient(mailwizz.base_url, KEY, backoff=0.01) as mw:
        servers = await mw.delivery_servers()
    assert len(servers) == 60 and servers[0].name == "s000"  # two pages of 50
    async with MailwizzClient(mailwizz.url + "/api/index.php", KEY, backoff=0.01) as mw:
        assert len(await mw.delivery_servers()) == 60
    with caplog.at_level(logging.DEBUG):
        async with MailwizzClient(mailwizz.base_url, "wrong-key", backoff=0.01) as mw:
            with pytest.raises(MailwizzAuthError, match="401 unauthorized"):
                await mw.delivery_servers()
    assert "wrong-key" not in caplog.text
    mailwizz.state.api_enabled = False
    async with MailwizzClient(mailwizz.base_url, KEY, backoff=0.01) as mw:
        with pytest.raises(MailwizzForbidden, match="403 forbidden"):
            await mw.delivery_servers()
    mailwizz.state.api_enabled = True
    async with MailwizzClient(mailwizz.base_url, KEY, backoff=0.01) as mw:
        with pytest.raises(MailwizzNotFound, match=r"404.*The campaign does not exist"):
            await mw.campaign_stats("nosuchcampaign")
        mailwizz.state.fail_next = 2  # two 503s, then success
        assert len(await mw.delivery_servers()) == 60
        mailwizz.state.fail_next = 10
        with pytest.raises(MailwizzUnavailable, match="503"):
            await mw.delivery_servers()
    mailwizz.state.fail_next = 0
    mailwizz.state.delay = 0.5
    async with MailwizzClient(mailwizz.base_url, KEY, timeout=0.1, attempts=2, backoff=0.01) as mw:
        with pytest.raises(MailwizzUnavailable, match="timed out"):
            await mw.delivery_servers()
    mailwizz.state.delay = 0
    assert sum(1 for r in caplog.records if "retrying" in r.getMessage()) >= 2


async def test_delivery_server_check_alerts_when_inactive(fleet: str, mailwizz: MailwizzDouble,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    r = await check_delivery_server("client-1", backoff=0.01)
    assert r.ok and r.server is not None and r.server.server_id == 3
    assert "(100.1.1.1)" in r.message  # the seed's PowerMTA host (seed 1.1, 2.4)
    # a delivery server pointing at the Email Engine API server (89.167.1.10, seed 2.1) is not the MTA
    mailwizz.state.servers[0]["hostname"] = "89.167.1.10"
    r = await check_delivery_server("client-1", backoff=0.01)
    assert not r.ok and "no delivery server points at the MTA (100.1.1.1, pmta-1)" in r.message
    mailwizz.state.servers[0]["hostname"] = "100.1.1.1"
    mailwizz.state.servers[0]["status"] = "disabled"
    with caplog.at_level(logging.WARNING, logger="email_engine.alerts"):
        r = await check_delivery_server("client-1", backoff=0.01)
    assert not r.ok and "is disabled" in r.message
    assert "MailWizz of client-1: MTA delivery server not active" in caplog.text
    with pytest.raises(MailwizzAuthError, match="no key for tenant 'client-2'"):
        await check_delivery_server("client-2")


async def test_stats_feed_daily_figures(fleet: str, mailwizz: MailwizzDouble) -> None:
    day = dt.date(2026, 11, 28)
    with session_scope(fleet) as s:
        ips = s.exec(select(SendingIp).join(Tenant).where(Tenant.name == "client-1")
                     .order_by(SendingIp.id)).all()  # type: ignore[arg-type]
        sent = {ips[0].id: 300, ips[1].id: 100}
        for ip_id, n in sent.items():
            s.add(DailyStat(ip_id=ip_id, day=day, sent=n, delivered=n))
        addr = [ips[0].address, ips[1].address]
    old = {"processed_count": 5000, "unique_opens_count": 900, "unique_clicks_count": 90}
    new = {"processed_count": 400, "delivery_success_count": 390, "unique_opens_count": 80,
           "unique_clicks_count": 8, "bounces_count": 10, "hard_bounces_count": 4, "soft_bounces_count": 6,
           "unsubscribes_count": 2, "complaints_count": 1}
    mailwizz.state.campaigns = {
        "oldcampaign01": {"name": "October", "status": "sent", "stats": old},
        "newcampaign01": {"name": "November", "status": "sending", "stats": dict(new),
                          "bounces": [{"message": "550 no such user", "processed": "yes", "bounce_type": "hard",
                                       "subscriber": {"subscriber_uid": "s1", "email": "a@example.org"}}]},
        "draftcampai01": {"name": "Draft", "status": "draft", "stats": {}},
    }
    f = await ingest_stats("client-1", day, backoff=0.01)
    assert f.campaigns_read == 2 and f.attributed
    # the old campaign only sets the baseline; the sending one counts from zero
    assert f.totals["opens"] == 80 and f.totals["clicks"] == 8 and f.totals["hard_bounces"] == 4
    assert f.opens_by_ip == {addr[0]: 60, addr[1]: 20} and f.clicks_by_ip == {addr[0]: 6, addr[1]: 2}
    again = await ingest_stats("client-1", day, backoff=0.01)  # nothing new: adds nothing
    assert again.totals["opens"] == 0
    mailwizz.state.campaigns["oldcampaign01"]["stats"]["unique_opens_count"] = 904
    mailwizz.state.campaigns["newcampaign01"]["stats"]["unique_opens_count"] = 84
    third = await ingest_stats("client-1", day, backoff=0.01)
    assert third.totals["opens"] == 8
    with session_scope(fleet) as s:
        rows = {st.ip_id: st for st in s.exec(select(DailyStat).where(DailyStat.day == day))}
    assert sorted((r.opens, r.clicks) for r in rows.values()) == [(22, 2), (66, 6)]
    async with MailwizzClient(mailwizz.base_url, KEY) as mw:
        count, recs = await mw.campaign_bounces("newcampaign01")
        assert count == 1 and recs[0]["bounce_type"] == "hard"
        assert (await mw.campaign_unsubscribes("newcampaign01")) == (0, [])


async def test_sync_workflow_on_time_skipping_server(fleet: str, mailwizz: MailwizzDouble, temporal_time_skipping,  # type: ignore[no-untyped-def]
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    from activities.alerts import send_alert
    from activities.mailwizz import check_mailwizz_delivery_server, ingest_mailwizz_stats, mailwizz_tenants
    from activities.mailwizz_unsubscribes import ingest_mailwizz_unsubscribes
    from workflows.mailwizz_sync import MailwizzSyncInput, MailwizzSyncWorkflow

    client = temporal_time_skipping.client
    queue = f"mw-{uuid.uuid4()}"
    mailwizz.state.campaigns = {"c1": {"name": "n", "status": "sending",
                                       "stats": {"processed_count": 10, "unique_opens_count": 3}}}
    with ThreadPoolExecutor(4) as pool:
        async with Worker(client, task_queue=queue, workflows=[MailwizzSyncWorkflow], activity_executor=pool,
                          activities=[mailwizz_tenants, check_mailwizz_delivery_server, ingest_mailwizz_stats,
                                      ingest_mailwizz_unsubscribes, send_alert]):
            ok = await client.execute_workflow(MailwizzSyncWorkflow.run, MailwizzSyncInput(), id=f"mw-{uuid.uuid4()}",
                                               task_queue=queue)
            assert list(ok.tenants) == ["client-1"] and ok.failed == []  # client-2 has no key: not contacted
            assert ok.tenants["client-1"]["server"]["ok"] is True
            assert ok.tenants["client-1"]["figures"]["totals"]["opens"] == 3
            assert ok.tenants["client-1"]["unsubscribes"]["read"] == 0  # no receiver, no unsubscribes
            mailwizz.state.api_key = "rotated-key"  # our key is now wrong: 401, not retried, alerted
            with caplog.at_level(logging.WARNING, logger="email_engine.alerts"):
                bad = await client.execute_workflow(MailwizzSyncWorkflow.run, MailwizzSyncInput(),
                                                    id=f"mw-{uuid.uuid4()}", task_queue=queue)
    assert bad.failed == ["client-1"] and bad.tenants == {}
    assert "MailWizz of client-1 could not be read" in caplog.text and "401 unauthorized" in caplog.text
    assert KEY not in caplog.text


async def test_run_command_hook_installs_the_schedule(temporal_local) -> None:  # type: ignore[no-untyped-def]
    from client.schedules import apply_schedules
    from models.schedules import MAILWIZZ_SYNC
    from workers.ops_bootstrap import install_ops

    settings = get_settings()
    client = temporal_local.client
    try:
        [first] = await apply_schedules(client, settings, only=[MAILWIZZ_SYNC])
        [second] = await apply_schedules(client, settings, only=[MAILWIZZ_SYNC])
        assert first.action == "created" and second.action == "unchanged"
        lines = await install_ops(client, settings)
        assert "query=Tenant%3D%22client-2%22%20AND%20WarmupPhase%3D%22week_3%22" in lines[1]
        desc = await client.get_schedule_handle(MAILWIZZ_SYNC).describe()
        assert desc.schedule.spec.intervals[0].every == dt.timedelta(hours=1)
    finally:
        await client.get_schedule_handle(MAILWIZZ_SYNC).delete()


def test_cli_check_and_sync(fleet: str, mailwizz: MailwizzDouble, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    from cli.main import app

    r = cli.invoke(app, ["mailwizz", "check", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["client-1"]["ok"] is True
    mailwizz.state.servers[0]["status"] = "inactive"
    r = cli.invoke(app, ["mailwizz", "check", "client-1"])
    assert r.exit_code == 1 and "NOT OK" in r.output and "is inactive" in r.output
    r = cli.invoke(app, ["mailwizz", "check", "client-2"])
    assert r.exit_code == 1 and "no key in EMAIL_ENGINE_MAILWIZZ_KEYS" in r.output
    mailwizz.state.campaigns = {"c9": {"name": "n", "status": "sending", "stats": {"unique_opens_count": 5}}}
    r = cli.invoke(app, ["mailwizz", "sync", "client-1"])
    assert r.exit_code == 0, r.output
    assert "1 campaigns; new: 5 opens" in r.output and "not attributed" in r.output
    r = cli.invoke(app, ["status", "--json"])
    assert json.loads(r.output)["mailwizz"]["last_read_age_hours"]["client-1"] < 0.1
