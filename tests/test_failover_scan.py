"""BlocklistScanWorkflow (time-skipping server, real database and activities), its Temporal Schedule
(dev server), and the `email-engine failover` commands against a running saga (dev server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlmodel import select
from temporalio.client import WorkflowUpdateFailedError

from activities.blocklists import BrokenZone, ListedEntry, ScanReport, TargetReport, UnknownEntry
from activities.db import session_scope
from activities.fleet_scan import fleet_scan_activity_with
from models.failover import saga_id
from models.failover_contracts import SagaState
from models.failover_tables import BlocklistScanRun
from models.scan_contracts import ScanInput, ScanSummary
from models.tables import SendingIp
from tests import failover_support as fs
from workflows.blocklist_scan import BlocklistScanWorkflow
from workflows.failover import FailoverSaga


def _set(url: str, address: str, **values: Any) -> None:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        for k, v in values.items():
            setattr(ip, k, v)
        s.add(ip)


def _entry(zone: str = "zen.test") -> ListedEntry:
    return ListedEntry(zone="test-zen", zone_name=zone, codes=["127.0.0.2"], meaning="SBL",
                       delist_url="https://check.spamhaus.org/")


def _fake_scan(listed: dict[str, list[ListedEntry]], unknown: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
    # The real "blocklist_fleet_scan" (targets, evaluation, records) over a fixed DNS side: classification and
    # self-tests against rbldnsd are the blocklist feature's and have their own tests; here the answers are the
    # input whose consequences are under test.
    async def scanner(targets: Any, **_: Any) -> ScanReport:
        reports = [TargetReport(t.kind, t.value, t.tenant, listed=list(listed.get(t.value, [])),
                                unknown=[UnknownEntry("test-x", "x.test", "timeout")] if t.value in unknown else [])
                   for t in targets]
        now = dt.datetime.now(dt.UTC).isoformat()
        return ScanReport(started_at=now, finished_at=now, zones=["test-zen"],
                          broken=[BrokenZone("test-broken", "broken.test", "self-test: 127.0.0.2 not listed")],
                          targets=reports, queries=len(reports), listed=sum(map(len, listed.values())))

    return fleet_scan_activity_with(scanner)


async def test_scan_acts_on_each_state(temporal_time_skipping, db_url: str) -> None:
    url, alerts = db_url, fs.AlertLog()
    fs.seed(url)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    q = {"status": "quarantine", "weight": 0, "daily_quota": 0}
    _set(url, "127.0.40.11", quarantine_until=past, quarantine_extensions=3, **q)
    _set(url, "127.0.40.12", quarantine_until=future, **q)
    _set(url, "127.0.40.13", quarantine_until=past, quarantine_extensions=1, **q)
    _set(url, "127.0.40.32", quarantine_until=past, quarantine_extensions=2, **q)
    listed = {"127.0.40.11": [_entry()], "127.0.40.31": [_entry()], "fo13.example": [_entry("dbl.test")]}
    client = temporal_time_skipping.client
    wid = f"scan-{uuid.uuid4().hex[:6]}"
    async with fs.engine_worker(client, [alerts.activity(), _fake_scan(listed, unknown={"127.0.40.14"})]) as queue:
        summary = await client.execute_workflow(BlocklistScanWorkflow.run, ScanInput(), id=wid, task_queue=queue,
                                                result_type=ScanSummary)
        assert summary.sagas == [saga_id("fo-b", "127.0.40.31")]
        saga = await client.get_workflow_handle(summary.sagas[0], result_type=SagaState).result()
    assert saga.status == "completed" and saga.standby == "127.0.40.41"
    st = fs.statuses(url)
    assert st["127.0.40.31"] == "quarantine" and st["127.0.40.41"] == "warming"
    assert summary.retired == ["127.0.40.11"] and st["127.0.40.11"] == "retiring"
    # a listing of the IP's domain keeps its IP quarantined: extended
    assert summary.extended == ["127.0.40.13"]
    ip13 = fs.ip_row(url, "127.0.40.13")
    assert ip13.quarantine_extensions == 2 and st["127.0.40.13"] == "quarantine"
    assert ip13.quarantine_until is not None
    until = ip13.quarantine_until.replace(tzinfo=dt.UTC) if ip13.quarantine_until.tzinfo is None \
        else ip13.quarantine_until
    assert until > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    # clean after its quarantine: resting, then re-warmed by the warmup feature
    assert summary.rewarming == ["127.0.40.32"] and st["127.0.40.32"] == "warming"
    assert any(r.to_status == "resting" for r in fs.audit(url, "127.0.40.32"))
    # quarantine still running: untouched; an inconclusive warming IP: untouched
    assert st["127.0.40.12"] == "quarantine" and st["127.0.40.14"] == "warming"
    assert summary.broken_zones and not summary.problems
    keys = [a.key for a in alerts.alerts]
    assert "retire/127.0.40.11" in keys and any(k.startswith("blocklist-scan/broken/") for k in keys)
    with session_scope(url) as s:
        run = s.exec(select(BlocklistScanRun).where(BlocklistScanRun.workflow_id == wid)).one()
        assert run.broken_zones == ["broken.test"] and run.inconclusive == 1
        assert {d["address"]: d["action"] for d in run.decisions} == {
            "127.0.40.31": "start_saga", "127.0.40.11": "retire", "127.0.40.13": "extend",
            "127.0.40.32": "rest_and_rewarm"}


async def test_schedule_installed_by_bootstrap_hook(temporal_local, sqlite_url: str) -> None:
    from client.schedules import apply_schedules
    from models.scan_contracts import SCHEDULE_ID
    from models.settings import Settings
    from workers.bootstrap import HOOKS, install_schedules

    assert install_schedules in HOOKS  # the run command installs it
    client = temporal_local.client
    settings = Settings(task_queue="fo-sched", blocklist_scan_interval_hours=4)
    try:
        [first] = await apply_schedules(client, settings, only=[SCHEDULE_ID])
        assert first.action == "created" and first.when == "every 4 h"
        desc = await client.get_schedule_handle(SCHEDULE_ID).describe()
        assert desc.schedule.spec.intervals[0].every == dt.timedelta(hours=4)
        assert getattr(desc.schedule.action, "workflow", None) == "BlocklistScanWorkflow"
        settings = Settings(task_queue="fo-sched", blocklist_scan_interval_hours=2)
        [second] = await apply_schedules(client, settings, only=[SCHEDULE_ID])
        assert second.action == "updated" and second.changes == ["every_seconds: 14400 -> 7200"]
        desc = await client.get_schedule_handle(SCHEDULE_ID).describe()
        assert desc.schedule.spec.intervals[0].every == dt.timedelta(hours=2)
    finally:
        await client.get_schedule_handle(SCHEDULE_ID).delete()


async def test_cli_list_approve_deny(temporal_local, sqlite_url: str, cli, monkeypatch) -> None:
    from cli.main import app
    from models.settings import get_settings

    url = sqlite_url
    fs.seed(url)
    fs.add_stats(url, "127.0.40.12", sent=1000, complaints=10)  # unhealthy: held
    client = temporal_local.client
    monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", client.service_client.config.target_host)
    get_settings.cache_clear()

    def run(*args: str) -> Any:
        return cli.invoke(app, list(args))

    async with fs.engine_worker(client) as queue:
        handles = [await client.start_workflow(FailoverSaga.run, _inp(a, t), id=saga_id(t, a), task_queue=queue)
                   for t, a in (("fo-a", "127.0.40.11"), ("fo-b", "127.0.40.31"))]
        for h in handles:
            await fs.wait_for(h, lambda s: s["status"] == "held" or s["status"] == "completed")
        # bad input is refused before anything is contacted
        res = await asyncio.to_thread(run, "failover", "approve", "fo-a", "not-an-ip", "--reason", "x")
        assert res.exit_code != 0 and "not-an-ip" in res.output
        res = await asyncio.to_thread(run, "failover", "approve", "fo-a", "127.0.40.99", "--reason", "x")
        assert res.exit_code != 0 and "no running failover" in res.output
        for _ in range(50):  # visibility is eventually consistent
            res = await asyncio.to_thread(run, "failover", "list", "--json")
            rows = json.loads(res.output) if res.exit_code == 0 else []
            if any(r["workflow_id"] == handles[0].id for r in rows):
                break
            await asyncio.sleep(0.2)
        row = next(r for r in rows if r["workflow_id"] == handles[0].id)
        assert row["status"] == "held" and row["tenant"] == "fo-a" and row["address"] == "127.0.40.11"
        res = await asyncio.to_thread(run, "failover", "list")
        assert res.exit_code == 0 and "127.0.40.11" in res.output and "held" in res.output
        res = await asyncio.to_thread(run, "failover", "approve", "fo-a", "127.0.40.11", "--reason", "  ")
        assert res.exit_code != 0 and "reason" in res.output
        with pytest.raises(WorkflowUpdateFailedError):  # the update's validator wants a reason too
            await handles[0].execute_update(FailoverSaga.approve, "   ")
        res = await asyncio.to_thread(run, "failover", "approve", "fo-a", "127.0.40.11", "--reason", "checked")
        assert res.exit_code == 0, res.output
        res = await asyncio.to_thread(run, "failover", "deny", "fo-a", "127.0.40.11", "--reason", "again")
        assert res.exit_code != 0 and "not waiting" in res.output
        first = await client.get_workflow_handle(handles[0].id, result_type=SagaState).result()
        assert first.decision == "approved" and first.standby
        second_state = await handles[1].query("state")
        if second_state["status"] == "held":  # fo-b is healthy unless fo-a's stats leak: both answers work
            res = await asyncio.to_thread(run, "failover", "deny", "fo-b", "127.0.40.31", "--reason", "no")
            assert res.exit_code == 0, res.output
        second = await client.get_workflow_handle(handles[1].id, result_type=SagaState).result()
    assert second.status == "completed"
    get_settings.cache_clear()


def _inp(address: str, tenant: str) -> Any:
    from models.failover import Listing
    from models.failover_contracts import FailoverInput

    return FailoverInput(tenant, address, [Listing("zen.test", address, "127.0.0.2", "SBL")])
