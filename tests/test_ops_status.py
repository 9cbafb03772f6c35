"""`email-engine status`: the reference fleet, persisted checks of other features, Temporal up and down."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.db import get_engine
from activities.inventory import apply_inventory
from cli.main import app
from client.status import collect
from models.failover_contracts import SagaState
from models.inventory import parse
from models.search_attributes import TENANT, WARMUP_PHASE
from models.warmup_contracts import WarmupStatus
from tests import failover_support as fs
from tests.conftest import REFERENCE_INVENTORY
from tests.support import free_port


@workflow.defn(name="IpWarmupWorkflow", sandboxed=False)
class WarmupStub:
    """Stands in for the warmup: same type name, the fields of its "status" query that status reads."""

    @workflow.run
    async def run(self, paused: bool) -> None:
        self.paused = paused
        await workflow.wait_condition(lambda: False)

    @workflow.query(name="status")
    def status(self) -> WarmupStatus:
        """The real query's type (client/status.py reads it typed)."""
        wid = workflow.info().workflow_id
        return WarmupStatus(
            workflow_id=wid, tenant=wid.split("/")[1], address=wid.split("/")[2], domain="", status="warming",
            phase="week_2", quota=100, phase_started_on="2026-01-01", day_in_phase=1, paused=self.paused,
            pause_reason="bounce rate 6%" if self.paused else "", paused_until=None,
            paused_by="gate" if self.paused else "", next_wake=None, last_gate=None, history=[], history_dropped=0,
            deploy_pending=False, ticks=0, runs=1)


@workflow.defn(name="FailoverSaga", sandboxed=False)
class FailoverStub:
    @workflow.run
    async def run(self, tenant: str) -> None:
        self.tenant = tenant
        await workflow.wait_condition(lambda: False)

    @workflow.query(name="state")
    def state(self) -> SagaState:
        return SagaState(tenant=self.tenant, address="198.51.100.9", workflow_id=workflow.info().workflow_id,
                         status="held", reasons=["another listing in 7 days"], listings=["zen.example"])


def seed_checks(url: str) -> set[str]:
    """Rows the DNS-check, blocklist and deploy features persist (where their tables exist)."""
    engine = get_engine(url)
    tables = set(inspect(engine).get_table_names())
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        ip_id, dom_id = conn.execute(text(
            "SELECT i.id, d.id FROM sending_ip i JOIN sending_domain d ON d.ip_id = i.id "
            "WHERE i.address = '45.124.20.5'")).one()
        conn.execute(text("INSERT INTO blocklist_event (ip_id, zone, detected_at) VALUES (:i, 'zen.example', :t)"),
                     {"i": ip_id, "t": now})
        if "dns_check" in tables:
            items = json.dumps({"spf": {"status": "invalid", "reason": "IP not authorized"},
                                "dkim": {"status": "valid"}})
            conn.execute(text("INSERT INTO dns_check (domain_id, ip_address, checked_at, overall, items) "
                              "VALUES (:d, '45.124.20.5', :t, 'invalid', :items)"),
                         {"d": dom_id, "t": now - dt.timedelta(hours=2), "items": items})
        if "blocklist_scan_run" in tables:
            conn.execute(text("INSERT INTO blocklist_scan_run (workflow_id, started_at, finished_at, ips_scanned, "
                              "listed, inconclusive, broken_zones, decisions) VALUES ('scan/x', :s, :f, 100, 1, 0, "
                              ":b, '[]')"),
                         {"s": now - dt.timedelta(hours=3), "f": now - dt.timedelta(hours=3),
                          "b": json.dumps(["bl.broken.example"])})
    return tables


async def test_status_of_reference_fleet_with_temporal(db_url: str, temporal_local) -> None:  # type: ignore[no-untyped-def]
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=db_url)
    tables = seed_checks(db_url)
    client: Client = temporal_local.client
    tenant = f"status-{uuid.uuid4().hex[:6]}"  # the dev server is shared: only this tenant's rows count
    queue = f"status-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[WarmupStub, FailoverStub]):
        handles = []
        for n, (phase, paused) in enumerate([("week_2", False), ("week_2", True), ("week_5", False)]):
            handles.append(await client.start_workflow(
                WarmupStub.run, paused, id=f"warmup/{tenant}/198.51.100.{n + 1}", task_queue=queue,
                search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT, tenant),
                                                         SearchAttributePair(WARMUP_PHASE, phase)])))
        handles.append(await client.start_workflow(FailoverStub.run, tenant, id=f"failover/{tenant}/198.51.100.9",
                                                   task_queue=queue))
        for _ in range(100):  # visibility is eventually consistent
            data = await collect(db_url, client)
            if data["temporal"]["warmups"].get(tenant, {}).get("running") == 3:
                break
        for h in handles:
            await h.terminate()
    assert data["tenants"]["client-2"]["by_status"]["active"] == 40
    assert data["tenants"]["client-2"]["capacity"] == 40 * 10_000 + 50 * 2 + 100 + 250 * 2 + 500 + 1000
    w = data["temporal"]["warmups"][tenant]
    assert w == {"by_phase": {"week_2": 2, "week_5": 1}, "running": 3, "paused": 1}
    assert [p["reason"] for p in data["temporal"]["paused"] if tenant in p["workflow_id"]] == ["bounce rate 6%"]
    held = [h for h in data["temporal"]["failovers_held"] if h["tenant"] == tenant]
    assert held and held[0]["reasons"] == ["another listing in 7 days"]
    assert data["blocklists"]["open_listings"] == {"client-2": 1}
    if "dns_check" in tables:
        assert data["dns"]["failures"] == 1
        assert data["dns"]["failing"] == [{"tenant": "client-2", "domain": data["dns"]["failing"][0]["domain"],
                                           "overall": "invalid", "items": ["spf"]}]
    else:
        assert data["dns"]["available"] is False
    if "blocklist_scan_run" in tables:
        scan = data["blocklists"]["last_scan"]
        assert scan["broken_zones"] == ["bl.broken.example"] and 2.9 < scan["age_hours"] < 3.1
    else:
        assert data["blocklists"]["last_scan"]["available"] is False
    if "mta_deploy" in tables:
        assert data["deploys"]["hosts"]["pmta-1"]["last_deploy"] is None
    else:
        assert data["deploys"]["available"] is False


def test_status_cli_without_temporal(db_url: str, cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.settings import get_settings

    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=db_url)
    monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", f"127.0.50.10:{free_port('127.0.50.10')}")  # nobody listens
    get_settings.cache_clear()
    result = cli.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["temporal"]["available"] is False and "Temporal unreachable" in data["temporal"]["note"]
    assert data["inventory_warmups"]["client-1"] == {"week_1": 2, "week_2": 1, "week_3": 2, "week_4": 1, "week_5": 1}
    assert data["tenants"]["client-1"]["capacity"] == 402_200
    result = cli.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "Temporal unreachable" in result.output and "402,200" in result.output
    assert "guard steps held for approval: unknown (Temporal unreachable)" in result.output
    get_settings.cache_clear()


async def test_status_shows_guard_steps_held_for_approval_not_applied_ones(
        db_url: str, temporal_local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real guard on the dev server (real ingest, ActiveGuardWorkflow, GuardStepWorkflow, the registry's
    activities): three step-downs in a five-IP tenant, the first runs (applied, in its undo window), two are
    held by the capacity-loss limit. Status lists the two held ones, in --json and in the table."""
    from client.guard import run_guard
    from models.guard_contracts import step_workflow_id
    from models.settings import get_settings
    from tests.test_active_guard_workflow import FIVE, HOST, ingest, seed, week_before

    client: Client = temporal_local.client
    tenant = f"gs-{uuid.uuid4().hex[:6]}"  # the dev server lives for the session (two backends run this)
    seed(db_url, {tenant: ("", [(a, "active", None) for a in FIVE])})
    for address in FIVE[:3]:
        await ingest(tmp_path, db_url, address, week_before(dt.datetime.now(dt.UTC).date()), (1000, 70, 20, 0))
    async with fs.engine_worker(client, [fs.AlertLog().activity()]) as queue:
        try:
            result = await run_guard(client, tenant, task_queue=queue, url=db_url)
            assert [(s.address, s.held) for s in result.plan.steps] == [(FIVE[0], False), (FIVE[1], True),
                                                                         (FIVE[2], True)]
            await fs.wait_for(client.get_workflow_handle(step_workflow_id(tenant, FIVE[0])),
                              lambda st: st["status"] == "applied", timeout=60)
            for _ in range(100):  # visibility is eventually consistent
                data = await collect(db_url, client)
                held = [h for h in data["temporal"]["guard_steps_held"] if h["tenant"] == tenant]
                if len(held) == 2:
                    break
                await asyncio.sleep(0.1)
            monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", client.service_client.config.target_host)
            get_settings.cache_clear()
            as_json = await asyncio.to_thread(CliRunner().invoke, app, ["status", "--json"])
            table = await asyncio.to_thread(CliRunner().invoke, app, ["status"])
        finally:
            await fs.end_workflow(client, f"mta-deploy/{HOST}")
            for address in FIVE:
                await fs.end_workflow(client, step_workflow_id(tenant, address))
                await fs.end_workflow(client, f"warmup/{tenant}/{address}")
            get_settings.cache_clear()
    assert [h["address"] for h in held] == FIVE[1:3]  # not FIVE[0]: applied, only undoable
    h = held[0]
    assert (h["workflow_id"], h["action"], h["to_phase"]) == (step_workflow_id(tenant, FIVE[1]), "step_down",
                                                              "week_5")
    assert h["evidence"].startswith("step down to week_5: bounce rate 8.41% (630/7490)"), h["evidence"]
    assert "bounce 630/7490 = 8.41% [7.80%, 9.06%]" in h["evidence"], h["evidence"]
    assert "capacity" in h["hold_reason"], h["hold_reason"]
    assert dt.timedelta(0) <= dt.datetime.now(dt.UTC) - h["since"] < dt.timedelta(minutes=5)
    assert h["answer"] == f"email-engine guard approve|deny {tenant} {FIVE[1]} --reason ..."
    assert as_json.exit_code == 0, as_json.output
    cli_held = [c for c in json.loads(as_json.output)["temporal"]["guard_steps_held"] if c["tenant"] == tenant]
    assert [(c["address"], c["answer"]) for c in cli_held] == [(g["address"], g["answer"]) for g in held]
    assert table.exit_code == 0, table.output
    assert f"  {tenant} {FIVE[1]}: step down to week_5, held since {h['since']:%Y-%m-%d %H:%M} UTC" in table.output
    assert f"-> email-engine guard approve|deny {tenant} {FIVE[2]} --reason ..." in table.output
    flat = " ".join(table.output.split())  # the console wraps at 80 columns
    assert "step down to week_5: bounce rate 8.41% (630/7490), lower bound 7.80% > max 5.00%; capacity-loss hold: " \
           f"with this step {tenant} would lose 18,000 of its 50,000/day capacity today (36.0%)" in flat
    assert f"{tenant} {FIVE[0]}" not in table.output
