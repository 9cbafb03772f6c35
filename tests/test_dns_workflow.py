"""DnsValidationWorkflow on the time-skipping server (real activities, real NSD, real DB) and its
daily Schedule on the dev server (the time-skipping server has no Schedules)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.worker import Worker

from activities.alerts import Alert
from activities.dns_checks import check_dns_domain, list_dns_targets
from activities.inventory import apply_inventory
from models.dns_contracts import DnsValidationInput, DnsValidationStatus
from models.inventory import parse
from models.settings import Settings, get_settings
from tests.dns_fleet import CASES, DnsFleet, _pem, _rsa
from tests.servers.nsd import dead_port
from workflows.dns_validation import DnsValidationWorkflow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsFleet]:
    f = DnsFleet(tmp_path_factory.mktemp("dnswf"))
    f.start()
    yield f
    f.stop()


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
    assert fleet.server is not None
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", fleet.server.resolvers_setting)
    monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "1")
    get_settings.cache_clear()
    apply_inventory(parse(fleet.inventory()), actor="test", url=sqlite_url)
    log, queue = AlertLog(), f"dns-{uuid.uuid4().hex[:8]}"
    client = temporal_time_skipping.client

    async def run() -> DnsValidationStatus:
        return await client.execute_workflow(
            DnsValidationWorkflow.run, DnsValidationInput(concurrency=8), id=f"dns-validation-{uuid.uuid4().hex[:6]}",
            task_queue=queue, result_type=DnsValidationStatus)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        async with Worker(client, task_queue=queue, workflows=[DnsValidationWorkflow], activity_executor=pool,
                          activities=[list_dns_targets, check_dns_domain, log.activity()]):
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

            # progress while running: one domain at a time against a resolver that never answers
            monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", f"127.0.0.1:{dead_port()}")
            monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.2")
            get_settings.cache_clear()
            handle = await client.start_workflow(DnsValidationWorkflow.run, DnsValidationInput(concurrency=1),
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
    log, queue = AlertLog(), f"dns-{uuid.uuid4().hex[:8]}"

    # The listing returns a domain that is gone by the time it is checked (a race with an inventory
    # load); the real check activity then fails non-retryably for that one domain.
    @activity.defn(name="list_dns_targets")
    def listing(tenant: str | None = None) -> list[str]:
        return [CASES["ed25519"].domain, "gone.ee-test"]  # (all-valid's key is changed by the test above)

    client = temporal_time_skipping.client
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with Worker(client, task_queue=queue, workflows=[DnsValidationWorkflow], activity_executor=pool,
                          activities=[listing, check_dns_domain, log.activity()]):
            status = await client.execute_workflow(
                DnsValidationWorkflow.run, DnsValidationInput(), id=f"dns-validation-e-{uuid.uuid4().hex[:6]}",
                task_queue=queue, result_type=DnsValidationStatus)
    assert (status.total, status.done, status.errors, status.passing) == (2, 2, 1, 1)
    assert len(log.alerts) == 1 and "1 domain(s) could not be checked" in log.alerts[0].title
    assert "gone.ee-test" in log.alerts[0].body and "no sending domain named" in log.alerts[0].body
