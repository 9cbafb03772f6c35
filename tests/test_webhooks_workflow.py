"""Webhooks end to end on the time-skipping server (issue 15, "done when"): a failover and a warmup
phase change each produce signed webhooks that a real receiver on loopback verifies with the
`standardwebhooks` library, in order, after it comes back from a 10-minute outage (time skipped).

Everything is real: the saga and the warmup with the registry's activities against SQLite, the MTA
deploy rendering the tenant's Postfix config for a disabled host, the relay activity writing the
outbox and waking the WebhookDeliveryWorkflow, and the HTTP POSTs to the receiver.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlmodel import select

from activities.db import session_scope
from activities.webhooks import outbox
from models.failover import Listing, saga_id
from models.failover_contracts import FailoverInput, SagaState
from models.settings import get_settings
from models.tables import DailyStat, SendingIp
from models.warmup_contracts import WarmupInput
from tests import failover_support as fs
from tests.webhook_receiver import SECRET, Receiver, inventory_webhooks
from workflows.failover import FailoverSaga
from workflows.warmup import IpWarmupWorkflow

LISTED, STANDBY, WARMING = "127.0.15.11", "127.0.15.21", "127.0.15.14"
FLEET: dict[str, list[tuple[str, str, str | None]]] = {
    "wh-a": [(LISTED, "active", None), ("127.0.15.12", "active", None), ("127.0.15.13", "active", None),
             (WARMING, "warming", "week_1"), (STANDBY, "standby", None)],
}


def _stats(url: str, address: str, first: dt.date, days: int, sent: int) -> None:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        assert ip.id is not None
        for i in range(days):
            s.add(DailyStat(ip_id=ip.id, day=first + dt.timedelta(days=i), sent=sent, delivered=sent))


async def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
def wh_env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Receiver, Receiver]:
    fleet_down = Receiver("127.0.15.101")  # not started: down
    flaky = Receiver("127.0.15.102", fail_next=2)  # answers 500 twice, then accepts
    monkeypatch.setenv("EMAIL_ENGINE_WEBHOOK_SECRETS", f"scraper-pro={SECRET},backlink={SECRET}")
    get_settings.cache_clear()
    fs.seed(sqlite_url, FLEET)
    text = fs.inventory_text(FLEET) + "\n" + inventory_webhooks(
        ("scraper-pro", fleet_down.url, ["ip.quarantined", "ip.standby_activated", "failover.completed",
                                         "warmup.phase_changed", "warmup.paused", "warmup.resumed", "failover.held"]),
        ("backlink", flaky.url, ["warmup.phase_changed"]))
    from activities.inventory import apply_inventory
    from models.inventory import parse

    apply_inventory(parse(text), actor="test", url=sqlite_url)
    return sqlite_url, fleet_down, flaky


async def test_failover_and_warmup_webhooks_survive_a_ten_minute_outage(temporal_time_skipping, wh_env) -> None:
    url, receiver, flaky = wh_env
    env = temporal_time_skipping
    client = env.client
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    # the warming IP has 10 days in week_1 and a clean week of evidence: its first tick advances it
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == WARMING)).one()
        ip.phase_started_on = today - dt.timedelta(days=10)
        s.add(ip)
    _stats(url, WARMING, today - dt.timedelta(days=7), 7, sent=60)
    flaky.start()
    try:
        with env.auto_time_skipping_disabled():
            async with fs.engine_worker(client) as queue:
                saga: SagaState = await client.execute_workflow(
                    FailoverSaga.run, FailoverInput("wh-a", LISTED, [Listing("zen.test", LISTED, "127.0.0.2", "SBL",
                                                                             "https://check.spamhaus.org/")]),
                    id=saga_id("wh-a", LISTED), task_queue=queue, result_type=SagaState)
                # the receiver is down: the saga finished all the same
                assert saga.status == "completed" and saga.standby == STANDBY and receiver.verified == []
                down_since = await env.get_current_time()
                warm = await client.start_workflow(
                    IpWarmupWorkflow.run,
                    WarmupInput(tenant="wh-a", address=WARMING, domain="fo14.example", phase="week_1",
                                phase_started_on=(today - dt.timedelta(days=10)).isoformat(), quota=50,
                                wake_window_seconds=600, first_tick_within_seconds=30),
                    id=f"warmup/wh-a/{WARMING}", task_queue=queue)
                await env.sleep(timedelta(minutes=1))  # the first tick: week_1 -> week_2
                await _until(lambda: any(r.event_type == "warmup.phase_changed" for r in outbox("scraper-pro", url)),
                             "the phase change in the outbox")
                # the flaky receiver answered 500 twice; Temporal retried with backoff, then it verified
                for _ in range(20):
                    if flaky.verified:
                        break
                    await env.sleep(timedelta(seconds=30))
                assert flaky.answered_500 == 2 and flaky.types() == ["warmup.phase_changed"]
                assert flaky.rejected == []
                queued = outbox("scraper-pro", url)
                assert [r.event_type for r in queued] == ["ip.quarantined", "ip.standby_activated",
                                                          "failover.completed", "warmup.phase_changed"]
                assert all(r.status == "pending" and r.attempts >= 1 for r in queued[:1])
                assert "ConnectError" in queued[0].last_error
                # ten minutes of outage (skipped); then the receiver comes back
                await env.sleep(timedelta(minutes=9))
                assert receiver.verified == []
                outage = await env.get_current_time() - down_since
                assert outage >= timedelta(minutes=10)
                receiver.start()
                for _ in range(40):
                    if len(receiver.verified) == 4:
                        break
                    await env.sleep(timedelta(minutes=1))
                    await asyncio.sleep(0.2)
                await warm.terminate("test over")
                await fs.end_workflow(client, f"warmup/wh-a/{STANDBY}")
    finally:
        receiver.stop()
        flaky.stop()
    # every request verified with the library, in the outbox's order, once each
    assert receiver.rejected == []
    assert receiver.types() == ["ip.quarantined", "ip.standby_activated", "failover.completed",
                                "warmup.phase_changed"]
    assert receiver.ids() == [r.event_id for r in queued]
    bodies = [r.body for r in receiver.verified]
    assert bodies[0]["data"]["ip"] == LISTED and bodies[0]["data"]["tenant"] == "wh-a"
    assert bodies[1]["data"] == {"tenant": "wh-a", "ip": STANDBY, "replaces": LISTED, "status": "warming",
                                 "workflow_id": saga_id("wh-a", LISTED)}
    assert bodies[3]["data"]["from_phase"] == "week_1" and bodies[3]["data"]["to_phase"] == "week_2"
    assert bodies[3]["data"]["daily_quota"] == 100
    assert all(r.status == "delivered" for r in outbox("scraper-pro", url))
    first = outbox("scraper-pro", url)[0]
    assert first.attempts >= 3  # failed while down, delivered once it was back



async def test_pause_and_resume_signals_and_a_receiver_dead_past_the_budget(temporal_time_skipping, wh_env) -> None:
    """Signals cannot run activities: the warmup queues its pause/resume events and its loop sends them.
    A receiver dead for longer than the retry budget (72 h, skipped) has its head event given up (alert)
    and the events behind it go on when it is back."""
    from models.warmup_contracts import PauseRequest, ResumeRequest

    url, receiver, flaky = wh_env
    env = temporal_time_skipping
    client = env.client
    today = (await env.get_current_time()).astimezone(dt.UTC).date()
    alerts = fs.AlertLog()
    with env.auto_time_skipping_disabled():
        async with fs.engine_worker(client, [alerts.activity()]) as queue:
            warm = await client.start_workflow(
                IpWarmupWorkflow.run,
                WarmupInput(tenant="wh-a", address=WARMING, domain="fo14.example", phase="week_1",
                            phase_started_on=today.isoformat(), quota=50, wake_window_seconds=600),
                id=f"warmup/wh-a/{WARMING}", task_queue=queue)
            await warm.signal(IpWarmupWorkflow.pause, PauseRequest(reason="list cleanup", actor="ops"))
            await _until(lambda: len(outbox("scraper-pro", url)) == 1, "the pause in the outbox")
            await env.sleep(timedelta(hours=73))  # past the delivery budget: the pause event is given up
            await _until(lambda: outbox("scraper-pro", url)[0].status == "failed", "the head given up")
            await warm.signal(IpWarmupWorkflow.resume, ResumeRequest(reason="clean", actor="ops"))
            await _until(lambda: len(outbox("scraper-pro", url)) == 2, "the resume in the outbox")
            receiver.start()
            try:
                for _ in range(30):
                    if receiver.verified:
                        break
                    await env.sleep(timedelta(minutes=1))
                    await asyncio.sleep(0.2)
            finally:
                receiver.stop()
            await warm.terminate("test over")
    rows = outbox("scraper-pro", url)
    assert [(r.event_type, r.status) for r in rows] == [("warmup.paused", "failed"), ("warmup.resumed", "delivered")]
    assert rows[0].attempts >= 10 and "gave up" in rows[0].last_error
    assert receiver.types() == ["warmup.resumed"] and receiver.rejected == []
    data = receiver.verified[0].body["data"]
    assert (data["ip"], data["phase"], data["reason"]) == (WARMING, "week_1", "clean")
    given_up = f"Webhook receiver scraper-pro: event {rows[0].event_id} given up"
    assert [t for t in alerts.titles() if "given up" in t] == [given_up]
    assert flaky.verified == []
