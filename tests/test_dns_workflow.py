"""DnsValidationWorkflow on the time-skipping server (real activities, real NSD, real DB) and its
daily Schedule on the dev server (the time-skipping server has no Schedules); batches across
continue-as-new runs, and a validation recorded before the batches replays."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, delete, select
from temporalio import activity
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.worker import Worker

from activities.alerts import Alert
from activities.db import session_scope
from activities.dns_checks import check_batch, check_dns_batch, dns_target_span, state_of, target_span
from activities.inventory import apply_inventory
from client.histories import run_histories
from models.dns_contracts import DnsBatchRequest, DnsBatchResult, DnsValidationInput, DnsValidationStatus
from models.dns_tables import DnsCheck
from models.inventory import parse
from models.settings import Settings, get_settings
from models.tables import SendingDomain, SendingIp
from tests.dns_fleet import CASES, DnsFleet, _pem, _rsa
from tests.servers.nsd import dead_port
from workflows.dns_validation import DnsValidationWorkflow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsFleet]:
    f = DnsFleet(tmp_path_factory.mktemp("dnswf"))
    f.start()
    yield f
    f.stop()


def _use_fleet(fleet: DnsFleet, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Settings that point the checks at the fleet's NSD (1 s timeout), plus `env`."""
    assert fleet.server is not None
    for name, value in {"EMAIL_ENGINE_DNS_RESOLVERS": fleet.server.resolvers_setting,
                        "EMAIL_ENGINE_DNS_TIMEOUT": "1", **env}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


class AlertLog:
    """Stands in for the Telegram side of "send_alert" (no Telegram here): records what was sent."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def activity(self) -> Any:
        @activity.defn(name="send_alert")
        async def send_alert(alert: Alert) -> bool:
            self.alerts.append(alert)
            return True

        return send_alert


async def test_daily_run_alerts_only_on_change(temporal_time_skipping, sqlite_url: str,
                                               fleet: DnsFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_fleet(fleet, monkeypatch)
    apply_inventory(parse(fleet.inventory()), actor="test", url=sqlite_url)
    log, queue = AlertLog(), f"dns-{uuid.uuid4().hex[:8]}"
    client = temporal_time_skipping.client

    async def run() -> DnsValidationStatus:
        return await client.execute_workflow(
            DnsValidationWorkflow.run, DnsValidationInput(concurrency=8), id=f"dns-validation-{uuid.uuid4().hex[:6]}",
            task_queue=queue, result_type=DnsValidationStatus)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        async with Worker(client, task_queue=queue, workflows=[DnsValidationWorkflow], activity_executor=pool,
                          activities=[dns_target_span, check_dns_batch, log.activity()]):
            first = await run()
            failing = [c for c in CASES.values() if any(s == "invalid" for s in c.expect.values())]
            assert (first.total, first.done, first.errors) == (len(CASES), len(CASES), 0)
            assert (first.failing, first.passing) == (len(failing), len(CASES) - len(failing))
            assert len(log.alerts) == 1  # one summary, not one message per domain
            alert = log.alerts[0]
            assert alert.severity == "critical" and f"{len(failing)} newly failing" in alert.title
            for c in failing:
                assert c.domain in alert.body
            assert CASES["all-valid"].domain not in alert.body

            second = await run()  # nothing changed: no alert
            assert second.failing == first.failing and len(log.alerts) == 1 and second.changes == []

            # all-valid's private key is replaced (published key no longer matches): newly failing;
            # dkim-other-key's private key becomes the published one: recovered
            Path(fleet.target("all-valid").key_path).write_bytes(_pem(_rsa(2048)))
            Path(fleet.target("dkim-other-key").key_path).write_bytes(fleet.other_key_pem)
            third = await run()
            assert len(log.alerts) == 2
            title, body = log.alerts[1].title, log.alerts[1].body
            assert "1 newly failing" in title and "1 recovered" in title, title
            assert f"dns-t/{CASES['all-valid'].domain} (127.0.20.10): DKIM invalid" in body
            assert "Recovered:" in body and CASES["dkim-other-key"].domain in body
            assert sorted(third.changes) == [f"failing: {CASES['all-valid'].domain}",
                                             f"recovered: {CASES['dkim-other-key'].domain}"]

            assert third.finished and third.done == third.total == len(CASES)

            # progress while running: one domain at a time against a resolver that never answers (progress
            # moves batch by batch: batches of two domains here)
            monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", f"127.0.0.1:{dead_port()}")
            monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.2")
            get_settings.cache_clear()
            handle = await client.start_workflow(DnsValidationWorkflow.run,
                                                 DnsValidationInput(concurrency=1, batch_size=2),
                                                 id=f"dns-validation-p-{uuid.uuid4().hex[:6]}", task_queue=queue)
            for _ in range(200):
                status = await handle.query("status", result_type=DnsValidationStatus)
                if status.done >= 1:
                    break
                await asyncio.sleep(0.05)
            assert status.total == len(CASES) and 1 <= status.done < status.total and not status.finished
            assert status.unknown == status.done  # nothing answers: unknown, neither passing nor failing
            await handle.terminate("test done")


async def test_schedule_installed_daily_at_the_configured_hour(temporal_local) -> None:
    from client.schedules import apply_schedules
    from models.schedules import DNS_VALIDATION as SCHEDULE_ID

    async def install_dns_schedule(client, settings):  # type: ignore[no-untyped-def]
        return [o.line() for o in await apply_schedules(client, settings, only=[SCHEDULE_ID])]

    client = temporal_local.client
    settings = Settings(task_queue="dns-sched-test")
    try:
        lines = await install_dns_schedule(client, settings)
        assert "created" in lines[0] and "06:00 UTC" in lines[0]
        desc = await client.get_schedule_handle(SCHEDULE_ID).describe()
        cal = desc.schedule.spec.calendars[0]
        assert [r.start for r in cal.hour] == [6] and [r.start for r in cal.minute] == [0]
        assert desc.schedule.spec.time_zone_name == "UTC"
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "DnsValidationWorkflow"
        assert action.task_queue == "dns-sched-test"
        nxt = desc.info.next_action_times[0]
        assert (nxt.hour, nxt.minute) == (6, 0)
        # idempotent: a restart with another hour updates the same schedule
        lines = await install_dns_schedule(client, Settings(task_queue="dns-sched-test", dns_check_hour=7))
        assert "updated" in lines[0]
        desc = await client.get_schedule_handle(SCHEDULE_ID).describe()
        assert [r.start for r in desc.schedule.spec.calendars[0].hour] == [7]
    finally:
        await client.get_schedule_handle(SCHEDULE_ID).delete()


async def test_a_domain_that_cannot_be_checked_is_reported_not_fatal(temporal_time_skipping, sqlite_url: str,
                                                                     fleet: DnsFleet,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert fleet.server is not None
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", fleet.server.resolvers_setting)
    get_settings.cache_clear()
    apply_inventory(parse(fleet.inventory()), actor="test", url=sqlite_url)
    # One domain's check cannot run at all: its IP in the database is not an address (written by hand,
    # past the inventory's validation). The rest of its batch is checked; it is reported, not fatal.
    with session_scope(sqlite_url) as session:
        ip = session.exec(select(SendingIp).where(SendingIp.address == CASES["ed25519"].ip)).one()
        ip.address = "not-an-ip"
        session.add(ip)
    log, queue = AlertLog(), f"dns-{uuid.uuid4().hex[:8]}"
    client = temporal_time_skipping.client
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with Worker(client, task_queue=queue, workflows=[DnsValidationWorkflow], activity_executor=pool,
                          activities=[dns_target_span, check_dns_batch, log.activity()]):
            status = await client.execute_workflow(
                DnsValidationWorkflow.run, DnsValidationInput(), id=f"dns-validation-e-{uuid.uuid4().hex[:6]}",
                task_queue=queue, result_type=DnsValidationStatus)
    assert (status.total, status.done, status.errors) == (len(CASES), len(CASES), 1)
    assert status.passing + status.failing + status.unknown == len(CASES) - 1
    assert len(log.alerts) == 1 and "Check errors:" in log.alerts[0].body
    assert f"{CASES['ed25519'].domain}: ValueError" in log.alerts[0].body


def _dns_opts(start: float, heartbeat: float, budget: float, *non_retryable: str) -> set[tuple[object, ...]]:
    sec = datetime.timedelta
    return {(sec(seconds=start), sec(seconds=budget), sec(seconds=heartbeat), sec(seconds=1), 2.0, sec(seconds=30), 0,
             non_retryable)}


#: What the batched validation asked of Temporal before its options were folded into activity_options.py.
DNS_OPTIONS = {"dns_target_span": _dns_opts(120, 0, 7200, "UnknownTenant", "BadRequest"),
               "check_dns_batch": _dns_opts(1800, 60, 7200, "UnknownTenant", "BadRequest"),
               "send_alert": _dns_opts(60, 0, 300)}


async def _options(client: Any, workflow_id: str, run_id: str) -> dict[str, set[tuple[object, ...]]]:
    """The activity options of every run of a workflow id (following continue-as-new from `run_id`)."""
    from tests.support import activity_options

    return activity_options(*await run_histories(client, workflow_id, run_id))


async def _run_events(client: Any, workflow_id: str, run_id: str) -> list[int]:
    """History events of every run of a workflow id, following continue-as-new from `run_id`."""
    return [len(h.events) for h in await run_histories(client, workflow_id, run_id)]


async def test_batches_continue_as_new_with_one_summary(temporal_time_skipping, sqlite_url: str, fleet: DnsFleet,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """18 domains, 4 per batch, 2 batches per run: 5 batches over 3 runs, every domain checked once, the
    counts carried across the runs, one summary alert at the end; progress in the status query during the
    runs, from a resolver that never answers (every domain then becomes not checkable: one alert again)."""
    _use_fleet(fleet, monkeypatch)
    apply_inventory(parse(fleet.inventory()), actor="test", url=sqlite_url)
    log, queue = AlertLog(), f"dns-{uuid.uuid4().hex[:8]}"
    client = temporal_time_skipping.client
    small = DnsValidationInput(concurrency=4, batch_size=4, batches_per_run=2)
    n = len(CASES)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with Worker(client, task_queue=queue, workflows=[DnsValidationWorkflow], activity_executor=pool,
                          activities=[dns_target_span, check_dns_batch, log.activity()]):
            wid = f"dns-validation-b-{uuid.uuid4().hex[:6]}"
            handle = await client.start_workflow(DnsValidationWorkflow.run, small, id=wid, task_queue=queue)
            status = await handle.result()
            with session_scope(sqlite_url) as session:  # every domain checked, none twice
                checks = session.exec(select(DnsCheck, SendingDomain).join(
                    SendingDomain, col(SendingDomain.id) == DnsCheck.domain_id)).all()
                failing = sorted(d.name for c, d in checks if state_of(c.items) == "fail")
                assert sorted(c.domain_id for c, _ in checks) == sorted(session.exec(select(SendingDomain.id)).all())
            assert len(checks) == n and len(failing) >= 10  # the invalid cases of tests/dns_fleet.py
            assert (status.total, status.done, status.errors, status.runs, status.batches) == (n, n, 0, 3, 5)
            assert (status.failing, status.passing, status.unknown) == (len(failing), n - len(failing), 0)
            assert status.finished and sorted(status.changes) == [f"failing: {d}" for d in failing]
            assert len(log.alerts) == 1, [a.title for a in log.alerts]  # one summary over the three runs
            alert = log.alerts[0]
            assert alert.title == f"DNS checks: {len(failing)} newly failing (of {n} domains)"
            assert all(d in alert.body for d in failing) and alert.key.endswith(wid)
            events = await _run_events(client, wid, handle.result_run_id or "")
            print(f"history events per run (batch 4, 2 batches per run): {events}")
            # timeouts and retries: the DNS policies of workflows/activity_options.py, the values used before
            # they were folded there
            assert await _options(client, wid, handle.result_run_id or "") == DNS_OPTIONS
            # start + marker + span + 2 batches x 6 + continue-as-new; the last run: 1 batch + the alert
            assert len(events) == 3 and max(events) <= 30, events

            # progress across runs while they run: a dead resolver, one domain at a time
            monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", f"127.0.0.1:{dead_port()}")
            monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.2")
            get_settings.cache_clear()
            wid = f"dns-validation-p-{uuid.uuid4().hex[:6]}"
            handle = await client.start_workflow(DnsValidationWorkflow.run,
                                                 DnsValidationInput(concurrency=1, batch_size=4, batches_per_run=2),
                                                 id=wid, task_queue=queue)
            latest = client.get_workflow_handle(wid)  # no run id: queries reach the newest run
            seen: list[tuple[int, int]] = []
            for _ in range(600):
                st = await latest.query("status", result_type=DnsValidationStatus)
                if (st.runs, st.done) not in seen:
                    seen.append((st.runs, st.done))
                if st.runs >= 2 or st.finished:
                    break
                await asyncio.sleep(0.05)
            assert st.runs == 2 and not st.finished and st.total == n, seen
            assert st.done == 8 and st.unknown == 8 and st.batches == 2, seen  # carried from the first run
            done = await handle.result()
            assert (done.runs, done.batches, done.done, done.unknown, done.total) == (3, 5, n, n, n)
            after = await latest.query("status", result_type=DnsValidationStatus)
            assert after == done and after.finished
            assert len(log.alerts) == 2 and log.alerts[1].title == f"DNS checks: {n} not checkable (of {n} domains)"


def test_batch_resumes_after_its_last_heartbeat(sqlite_url: str, fleet: DnsFleet,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A retried batch starts after the last domain its heartbeat reported: no domain is recorded twice
    (a second observation would hide the day's change from the alert)."""
    _use_fleet(fleet, monkeypatch)
    apply_inventory(parse(fleet.inventory()), actor="test", url=sqlite_url)
    span = target_span(sqlite_url)
    beats: list[DnsBatchResult] = []
    first = check_batch(DnsBatchRequest(None, 0, span.last_id, 3), sqlite_url, beat=lambda b: beats.append(
        DnsBatchResult(**dataclasses.asdict(b))))
    assert first.checked == 3 and first.more and beats[-1] == first
    # the attempt that heartbeat after its first domain, then died: the retry checks the other two only
    partial = next(b for b in beats if b.checked == 1)
    with session_scope(sqlite_url) as session:
        session.execute(delete(DnsCheck).where(col(DnsCheck.domain_id) > partial.last_id))
    retried = check_batch(DnsBatchRequest(None, 0, span.last_id, 3), sqlite_url, resume=partial)
    assert (retried.checked, retried.last_id, retried.more) == (3, first.last_id, True)
    with session_scope(sqlite_url) as session:
        ids = session.exec(select(DnsCheck.domain_id)).all()
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 3


def test_validation_of_the_earlier_code_replays() -> None:
    """Validations recorded by earlier code replay on today's workflow, so one running across an upgrade
    finishes instead of failing: v1, before the batches (every name through Temporal, one activity per
    domain); v2, batched but before the `dns.failed` webhooks (failing domains, continue-as-new: its first
    and its last run)."""
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    files = sorted((Path(__file__).parent / "data").glob("dns-validation-history-v*.json"))
    assert [f.name for f in files] == ["dns-validation-history-v1.json", "dns-validation-history-v2-first.json",
                                       "dns-validation-history-v2-last.json"]
    replayer = Replayer(workflows=[DnsValidationWorkflow])
    for f in files:
        asyncio.run(replayer.replay_workflow(WorkflowHistory.from_json(f.stem, f.read_text())))


async def test_failing_domains_send_signed_dns_failed_webhooks_once_per_day(
        temporal_time_skipping, sqlite_url: str, fleet: DnsFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every failing domain of a validation becomes one `dns.failed` event (tenant, domain, IP, the checks
    that failed and why), queued with its check and delivered signed to the receiver subscribed to it, in
    batches across continue-as-new; a second validation the same day sends nothing again; a domain that
    starts failing sends its event. A receiver not subscribed to dns.failed gets nothing. Real NSD, the
    registry's worker (relay, delivery workflow), a real receiver verifying with `standardwebhooks`."""
    from activities.webhooks import outbox
    from tests import failover_support as fs
    from tests.webhook_receiver import SECRET, Receiver, inventory_webhooks

    _use_fleet(fleet, monkeypatch, EMAIL_ENGINE_WEBHOOK_SECRETS=f"dns-hook={SECRET},fleet-hook={SECRET}")
    receiver, other = Receiver("127.0.20.240"), Receiver("127.0.20.241")
    apply_inventory(parse(fleet.inventory() + "\n" + inventory_webhooks(
        ("dns-hook", receiver.url, ["dns.failed"]), ("fleet-hook", other.url, ["ip.quarantined"]))),
        actor="test", url=sqlite_url)
    log = AlertLog()
    client = temporal_time_skipping.client
    small = DnsValidationInput(concurrency=4, batch_size=4, batches_per_run=2)

    async def validate() -> DnsValidationStatus:
        return await client.execute_workflow(DnsValidationWorkflow.run, small,
                                             id=f"dns-validation-w-{uuid.uuid4().hex[:6]}", task_queue=queue,
                                             result_type=DnsValidationStatus)

    async def delivered(n: int) -> None:
        for _ in range(300):
            if len(receiver.verified) >= n and all(r.status == "delivered" for r in outbox("dns-hook", sqlite_url)):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{len(receiver.verified)} of {n} events delivered")

    def failing_now() -> dict[str, list[str]]:
        """domain -> its invalid checks, from the latest check of each domain in the database."""
        with session_scope(sqlite_url) as session:
            rows = session.exec(select(DnsCheck, SendingDomain).join(
                SendingDomain, col(SendingDomain.id) == DnsCheck.domain_id).order_by(col(DnsCheck.id))).all()
            latest = {d.name: c.items for c, d in rows}
        return {d: sorted(k for k, v in items.items() if v["status"] == "invalid")
                for d, items in latest.items() if state_of(items) == "fail"}

    with receiver, other, temporal_time_skipping.auto_time_skipping_disabled():
        async with fs.engine_worker(client, [log.activity()]) as queue:
            first = await validate()
            failing = failing_now()
            assert first.runs == 3 and first.failing == len(failing) >= 10
            await delivered(len(failing))
            second = await validate()  # the same day, the same failures: nothing new
            assert second.failing == len(failing) and failing_now() == failing
            # a passing domain starts failing: its DKIM key no longer matches the published one
            case = next(c for c in CASES.values()
                        if c.domain not in failing and c.expect.get("dkim", "valid") == "valid")
            key = Path(fleet.target(case.name).key_path)
            kept = key.read_bytes()
            key.write_bytes(_pem(_rsa(2048)))
            try:
                third = await validate()
            finally:
                key.write_bytes(kept)
            assert third.failing == len(failing) + 1
            await delivered(len(failing) + 1)
            await asyncio.sleep(0.5)  # nothing else arrives
    assert receiver.rejected == [] and other.verified == [] and other.rejected == []
    assert receiver.types() == ["dns.failed"] * (len(failing) + 1)
    assert len(set(receiver.ids())) == len(receiver.ids())
    bodies = [r.body["data"] for r in receiver.verified]
    got = {d["domain"]: sorted(f["check"] for f in d["failed"]) for d in bodies[:-1]}
    assert got == failing
    last = bodies[-1]
    assert (last["tenant"], last["domain"], last["ip"]) == ("dns-t", case.domain, case.ip)
    assert [f["check"] for f in last["failed"]] == ["dkim"] and last["failed"][0]["reason"]
    assert last["previous_state"] == "pass" and last["unknown"] == []
    spf = next(d for d in bodies if d["domain"] == CASES["spf-missing-ip"].domain)
    assert spf["failed"][0]["check"] == "spf" and spf["failed"][0]["reason"]
    assert all(d["day"] == bodies[0]["day"] for d in bodies)
