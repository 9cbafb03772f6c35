"""Starting, pausing, resuming, reading and cancelling warmups: the CLI and the activities against the
Temporal dev server, a worker with the real activities (including the real "deploy_tenant_pool" and
MtaDeployWorkflow against a disabled MTA host, which renders locally) and a real database."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.alerts import send_alert
from activities.mta.deploy import deploy_mta_host
from activities.warmup import apply_warmup_step, load_warmup_context
from activities.warmup_inventory import prepare_start
from cli.warmup import app as warmup_app
from client.relay import cancel_ip_warmup, deploy_tenant_pool, start_ip_warmup
from client.warmups import warmup_status
from models.errors import WarmupError
from models.settings import get_settings
from models.warmup_contracts import CancelWarmupRequest, StartWarmupRequest
from tests.warmup_support import add_stats, audit, ip_row, load
from workers.warmup_bootstrap import start_warming_ips
from workflows.mta_deploy import MtaDeployWorkflow
from workflows.warmup import IpWarmupWorkflow

WARMING, STANDBY, RESTING = "127.0.12.41", "127.0.12.48", "127.0.12.49"


@asynccontextmanager
async def engine_worker(client: Client, queue: str) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        async with Worker(client, task_queue=queue, workflows=[IpWarmupWorkflow, MtaDeployWorkflow],
                          activities=[load_warmup_context, apply_warmup_step, send_alert, deploy_tenant_pool,
                                      deploy_mta_host, start_ip_warmup, cancel_ip_warmup],
                          activity_executor=pool):
            yield


@pytest.fixture
def engine(temporal_local, db_url: str, monkeypatch: pytest.MonkeyPatch):
    queue = f"engine-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("EMAIL_ENGINE_TASK_QUEUE", queue)
    monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", temporal_local.client.service_client.config.target_host)
    get_settings.cache_clear()
    # Tenant names are unique per test so workflow ids never collide on the session-wide dev server.
    tenant = f"t{uuid.uuid4().hex[:8]}"
    started = (dt.date.today() - dt.timedelta(days=3)).isoformat()
    load(db_url, [(WARMING, "warming", "week_2", started), (STANDBY, "standby", None, None),
                  (RESTING, "resting", None, None)], tenant=tenant, host=f"h-{tenant}")
    return temporal_local.client, queue, tenant, db_url


async def cli(*args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, warmup_app, list(args))


async def test_cli_start_gate_override_idempotent_status_pause_resume(engine) -> None:
    client, queue, tenant, url = engine
    async with engine_worker(client, queue):
        res = await cli("start", STANDBY)
        assert res.exit_code == 1 and "fails the DNS gate: no DNS check recorded yet" in res.output
        assert ip_row(url, STANDBY).status.value == "standby"  # nothing half-written

        res = await cli("start", STANDBY, "--override-dns", "vendor confirmed SPF")
        assert res.exit_code == 0, res.output
        assert f"started warmup/{tenant}/{STANDBY} at week_1 (moved from standby)" in res.output
        ip = ip_row(url, STANDBY)
        assert (ip.status.value, ip.warmup_phase.value if ip.warmup_phase else None, ip.daily_quota) == \
            ("warming", "week_1", 50)
        row = audit(url, STANDBY)[-1]
        assert (row.from_status, row.to_status, row.actor) == ("standby", "warming", "cli")
        assert "DNS gate overridden: vendor confirmed SPF" in row.reason

        res = await cli("start", STANDBY)
        assert res.exit_code == 0 and "already running" in res.output

        res = await cli("start", "--all-warming", "--tenant", tenant, "--json")
        out = {r["address"]: r for r in json.loads(res.output)}
        assert out[WARMING]["started"] is True and out[STANDBY]["started"] is False
        assert out[WARMING]["phase"] == "week_2"

        res = await cli("status", "--tenant", tenant, "--json")
        rows = {r["address"]: r for r in json.loads(res.output)}
        assert rows[WARMING]["phase"] == "week_2" and rows[WARMING]["quota"] == 100
        assert rows[WARMING]["day_in_phase"] == 4 and rows[WARMING]["paused"] is False
        assert rows[STANDBY]["phase"] == "week_1"

        res = await cli("pause", WARMING, "--reason", "complaint spike", "--days", "2")
        assert res.exit_code == 0, res.output
        st = await _wait_status(client, tenant, WARMING, lambda s: s.paused)
        assert st.pause_reason == "complaint spike" and st.paused_until is not None
        res = await cli("status", "--tenant", tenant)
        assert "complaint spike" in res.output and WARMING in res.output
        res = await cli("resume", WARMING, "--reason", "ok")
        assert res.exit_code == 0
        await _wait_status(client, tenant, WARMING, lambda s: not s.paused)

        # The standby IP entered warming: its workflow asked the real deploy (the host is disabled, so it
        # rendered <var_dir>/mta/pmta-t/ locally).
        st = await _wait_status(client, tenant, STANDBY, lambda s: not s.deploy_pending, timeout=60)
        assert not any(t.kind == "deploy_failed" for t in st.history)
        rendered = Path(get_settings().var_dir) / "mta" / f"h-{tenant}"
        assert rendered.is_dir() and any(rendered.rglob("*")), "the deploy rendered nothing"

        res = await cli("pause", "127.0.12.50")
        assert res.exit_code == 1 and "not in the inventory" in res.output
        res = await cli("pause", "not-an-ip")
        assert res.exit_code == 1 and "is not an IP address" in res.output

        # Compensation (activity form): the workflow stops, the IP goes back to standby.
        env = ActivityEnvironment(client=client)
        changed = await env.run(cancel_ip_warmup, CancelWarmupRequest(STANDBY, "standby", "saga undo", "test"))
        assert changed is True
        ip = ip_row(url, STANDBY)
        assert (ip.status.value, ip.warmup_phase, ip.daily_quota, ip.weight) == ("standby", None, 0, 0)
        desc = await client.get_workflow_handle(f"warmup/{tenant}/{STANDBY}").describe()
        assert desc.status == WorkflowExecutionStatus.TERMINATED
        assert await env.run(cancel_ip_warmup, CancelWarmupRequest(STANDBY, "standby", "again", "test")) is False

        # The activity form of start, with its history-aware phase: the resting IP was at week_4 and last
        # sent 10 days ago, so it restarts one phase lower.
        await asyncio.to_thread(_history, url)
        env.info = env.info.__class__(**{**env.info.__dict__, "task_queue": queue})
        wid = await env.run(start_ip_warmup, StartWarmupRequest(RESTING, "standby activated", "saga", "override"))
        assert wid == f"warmup/{tenant}/{RESTING}"
        assert ip_row(url, RESTING).warmup_phase.value == "week_3"  # type: ignore[union-attr]
        with pytest.raises(Exception, match="does not warm up"):
            await env.run(start_ip_warmup, StartWarmupRequest(_make_active(url), "x", "saga"))
        for wid in (f"warmup/{tenant}/{WARMING}", f"warmup/{tenant}/{RESTING}", f"mta-deploy/h-{tenant}"):
            await client.get_workflow_handle(wid).terminate("test done")


def _make_active(url: str) -> str:
    from activities.db import session_scope
    from models.enums import IpStatus
    from models.tables import SendingIp

    with session_scope(url) as s:
        ip = s.get(SendingIp, ip_row(url, "127.0.12.48").id)
        assert ip is not None
        ip.status = IpStatus.ACTIVE
        s.add(ip)
    return "127.0.12.48"


def _history(url: str) -> None:
    from activities.db import session_scope
    from models.tables import StatusChange

    ip = ip_row(url, RESTING)
    assert ip.id is not None
    with session_scope(url) as s:
        s.add(StatusChange(ip_id=ip.id, from_status="warming", to_status="warming", from_phase="week_3",
                           to_phase="week_4", reason="advance", actor="w",
                           at=dt.datetime.now(dt.UTC) - dt.timedelta(days=12)))
        s.add(StatusChange(ip_id=ip.id, from_status="warming", to_status="quarantine", reason="listed", actor="w",
                           at=dt.datetime.now(dt.UTC) - dt.timedelta(days=10)))
    add_stats(url, RESTING, dt.date.today() - dt.timedelta(days=10), sent=400)


async def _wait_status(client: Client, tenant: str, address: str, pred: Any, timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st = await warmup_status(client, tenant, address)
        if st is not None and pred(st):
            return st
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"status of {address} never matched: {st}")
        await asyncio.sleep(0.2)


async def test_bootstrap_hook_starts_warming_ips_idempotently(engine) -> None:
    client, queue, tenant, _url = engine
    async with engine_worker(client, queue):
        lines = await start_warming_ips(client, get_settings())
        assert "1 warming IPs, 1 workflows started, 0 already running" in lines[0]
        again = await start_warming_ips(client, get_settings())
        assert ", 0 workflows started" in again[0]
        assert 'Tenant="client-2" AND WarmupPhase="week_3"' in lines[1]
        st = await warmup_status(client, tenant, WARMING)
        assert st is not None and st.phase == "week_2"
        await client.get_workflow_handle(f"warmup/{tenant}/{WARMING}").terminate("test done")


def test_prepare_start_refusals(db_url: str) -> None:
    load(db_url, [(WARMING, "warming", "week_2", None), (STANDBY, "standby", None, None)], tenant="acme")
    with pytest.raises(WarmupError, match="not in the inventory"):
        prepare_start("127.0.12.99", "r", "a")
    with pytest.raises(WarmupError, match="is not an IP address"):
        prepare_start("127.0.12.999; rm", "r", "a")
    plan = prepare_start(WARMING, "r", "a")  # already warming: no gate, recorded phase
    assert (plan.phase, plan.moved_from) == ("week_2", None)
    with pytest.raises(WarmupError, match="DNS gate"):
        prepare_start(STANDBY, "r", "a")
    with pytest.raises(WarmupError, match="DNS gate"):
        prepare_start(STANDBY, "r", "a", override_dns="   ")
    plan = prepare_start(STANDBY, "r", "a", override_dns="checked by hand")
    assert (plan.phase, plan.moved_from, plan.dns_override) == ("week_1", "standby", True)
    again = prepare_start(STANDBY, "r", "a")  # idempotent: now warming, no second audit row
    assert again.moved_from is None
    assert [r.to_status for r in audit(db_url, STANDBY)].count("warming") == 1
