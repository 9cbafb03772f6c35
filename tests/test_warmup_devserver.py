"""IpWarmupWorkflow on the Temporal dev server (temporal_local): continue-as-new at a phase change and when
the history grows (the time-skipping server never suggests it), search attributes and memo as the Web UI
sees them, pause state carried across runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio import activity
from temporalio.worker import Worker

from activities.alerts import send_alert
from activities.warmup import apply_warmup_step, load_warmup_context
from client.warmups import start_workflow, warmup_input
from models.deploys import DeployOutcome, DeployPoolRequest
from models.settings import get_settings
from models.warmup_contracts import PauseRequest, StartPlan, WarmupStatus
from tests.warmup_support import feed_reference, ip_row, load
from workflows.warmup import IpWarmupWorkflow

IP = "127.0.12.61"
deploys: list[DeployPoolRequest] = []


# Recording stand-in for the MTA deploy (same name and signature as client/relay.py); the real
# one is exercised in tests/test_warmup_control.py.
@activity.defn(name="deploy_tenant_pool")
async def recording_deploy(req: DeployPoolRequest) -> DeployOutcome:
    deploys.append(req)
    return DeployOutcome(host="pmta-t", generation=len(deploys), changed=True, message="recorded")


async def _until(fn: Any, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never met")
        await asyncio.sleep(0.25)


async def test_continue_as_new_search_attributes_and_memo(temporal_local, sqlite_url: str) -> None:
    client = temporal_local.client
    tenant = f"t{uuid.uuid4().hex[:8]}"
    started = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=8)).isoformat()
    load(sqlite_url, [(IP, "warming", "week_1", started)], tenant=tenant)
    feed_reference(sqlite_url, IP, dt.date.fromisoformat(started), 8)  # the gate's evidence: 50 a day
    queue = f"wu-{uuid.uuid4().hex[:8]}"
    plan = StartPlan(tenant=tenant, address=IP, domain="warm61.example", phase="week_1", phase_started_on=started,
                     quota=50, moved_from=None)
    inp = warmup_input(plan, get_settings(), "test")
    inp.first_tick_within_seconds = 2  # the first daily tick within 2 s (the bench uses the same knob)
    inp.max_history_events = 12  # continue as new once the history passes 12 events
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(client, task_queue=queue, workflows=[IpWarmupWorkflow],
                          activities=[load_warmup_context, apply_warmup_step, send_alert, recording_deploy],
                          activity_executor=pool):
            wid, fresh = await start_workflow(client, plan, "test", task_queue=queue, inp=inp)
            assert fresh and wid == f"warmup/{tenant}/{IP}"
            handle = client.get_workflow_handle(wid)

            async def advanced() -> WarmupStatus | None:
                st = await handle.query(IpWarmupWorkflow.status)
                return st if st.phase == "week_2" and st.runs >= 2 else None

            st = await _until(advanced)
            assert st.runs >= 2 and st.quota == 100 and [t.kind for t in st.history][:2] == ["start", "advance"]
            assert ip_row(sqlite_url, IP).daily_quota == 100 and deploys[-1].actor == wid
            # The Web UI filter: the upserted phase is searchable, and the memo names the IP and domain.
            query = f'Tenant="{tenant}" AND WarmupPhase="week_2" AND IpAddress="{IP}"'

            async def listed() -> list[Any]:
                return [w async for w in client.list_workflows(query)]

            found = await _until(listed)
            assert found[0].id == wid
            desc = await handle.describe()
            assert await desc.memo_value("domain") == "warm61.example" and await desc.memo_value("ip") == IP
            assert len((await handle.fetch_history()).events) < 40  # each run's history stays small

            # Signals grow the history past the limit: the workflow continues as new carrying the pause.
            runs = st.runs
            for i in range(4):
                await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason=f"hold {i}", days=1 + i))

            async def continued() -> WarmupStatus | None:
                s = await handle.query(IpWarmupWorkflow.status)
                return s if s.runs > runs else None

            st = await _until(continued)
            assert st.paused and st.pause_reason == "hold 3" and st.phase == "week_2"
            assert [t.kind for t in st.history].count("pause") == 4
            desc = await client.get_workflow_handle(wid).describe()
            assert desc.run_id != handle.result_run_id
            await handle.terminate("test done")
