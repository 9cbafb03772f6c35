"""IP warmups (IpWarmupWorkflow, id `warmup/<tenant>/<ip>`): start, pause, resume, read, cancel.

Starting moves the IP into warming in the inventory first (DNS gate, audit: activities.warmup_inventory),
then starts its workflow; idempotent (a running workflow is left alone). The `status` query is read
one way, typed (WarmupStatus), by query_status.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.warmup_inventory import locate, prepare_start, restore_ip, warming_plans
from models.errors import NotRunning
from models.search_attributes import IP_ADDRESS, IP_STATUS, TENANT, WARMUP_PHASE
from models.settings import Settings, get_settings
from models.warmup_contracts import (
    PauseRequest,
    ResumeRequest,
    StartOutcome,
    StartPlan,
    WarmupInput,
    WarmupStatus,
    workflow_id,
)

WORKFLOW = "IpWarmupWorkflow"


def warmup_input(plan: StartPlan, settings: Settings, reason: str) -> WarmupInput:
    return WarmupInput(tenant=plan.tenant, address=plan.address, domain=plan.domain, phase=plan.phase,
                       phase_started_on=plan.phase_started_on, quota=plan.quota, reason=reason,
                       wake_window_seconds=settings.warmup_wake_window_seconds,
                       deploy_at_start=plan.moved_from is not None)


async def start_workflow(client: Client, plan: StartPlan, reason: str, settings: Settings | None = None,
                         task_queue: str | None = None, inp: WarmupInput | None = None) -> tuple[str, bool]:
    """Start the IP's workflow unless one is running: (workflow id, started)."""
    settings = settings or get_settings()
    wid = workflow_id(plan.tenant, plan.address)
    try:
        await client.start_workflow(
            WORKFLOW, inp or warmup_input(plan, settings, reason), id=wid,
            task_queue=task_queue or settings.task_queue,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(TENANT, plan.tenant), SearchAttributePair(IP_ADDRESS, plan.address),
                SearchAttributePair(WARMUP_PHASE, plan.phase), SearchAttributePair(IP_STATUS, "warming")]),
            memo={"tenant": plan.tenant, "ip": plan.address, "domain": plan.domain},
            static_summary=f"Warmup of {plan.address} ({plan.tenant}, {plan.domain})"[:200],
        )
    except WorkflowAlreadyStartedError:
        return wid, False
    return wid, True


async def start_warmup(client: Client, address: str, reason: str, actor: str, override_dns: str | None = None,
                       url: str | None = None, task_queue: str | None = None) -> StartOutcome:
    """Move the IP into warming (DNS gate unless overridden with a reason) and start its workflow."""
    plan = await asyncio.to_thread(prepare_start, address, reason, actor, override_dns, url)
    wid, started = await start_workflow(client, plan, reason, task_queue=task_queue)
    return StartOutcome(wid, started, plan)


async def start_all_warming(client: Client, tenant: str | None = None, reason: str = "warmup started",
                            url: str | None = None, task_queue: str | None = None,
                            concurrency: int | None = None) -> list[StartOutcome]:
    """A workflow for every IP the inventory records as warming, at its recorded phase and day.

    Starts run `concurrency` at a time (default: the warmup_start_concurrency setting): 10,000 IPs in
    one call take seconds, not 10,000 sequential round trips. Outcomes are in the plans' order. Every
    start is attempted; then the first error is raised (starting is idempotent: run it again)."""
    settings = get_settings()
    plans = await asyncio.to_thread(warming_plans, tenant, url)
    sem = asyncio.Semaphore(concurrency or settings.warmup_start_concurrency)

    async def one(plan: StartPlan) -> StartOutcome:
        async with sem:
            wid, started = await start_workflow(client, plan, reason, settings, task_queue=task_queue)
        return StartOutcome(wid, started, plan)

    results = await asyncio.gather(*(one(p) for p in plans), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, StartOutcome)]


async def _running_handle(client: Client, address: str, url: str | None) -> WorkflowHandle[Any, Any]:
    tenant, addr = await asyncio.to_thread(locate, address, url)
    handle = client.get_workflow_handle(workflow_id(tenant, addr))
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotRunning(f"no warmup workflow for {addr} (start it with `email-engine warmup start {addr}`)") \
                from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise NotRunning(f"the warmup of {addr} is not running ({desc.status.name.lower() if desc.status else '?'})")
    return handle


async def pause_warmup(client: Client, address: str, reason: str, days: float | None = None,
                       actor: str = "operator", url: str | None = None) -> str:
    """Signal "pause" (quota held; `days` None: until resumed). Returns the workflow id."""
    handle = await _running_handle(client, address, url)
    await handle.signal("pause", PauseRequest(reason=reason, days=days, actor=actor))
    return str(handle.id)


async def resume_warmup(client: Client, address: str, reason: str = "", actor: str = "operator",
                        url: str | None = None) -> str:
    """Signal "resume" (harmless on a running warmup). Returns the workflow id."""
    handle = await _running_handle(client, address, url)
    await handle.signal("resume", ResumeRequest(reason=reason, actor=actor))
    return str(handle.id)


async def query_status(handle: WorkflowHandle[Any, Any]) -> WarmupStatus:
    """The `status` query of a warmup workflow, typed."""
    st: WarmupStatus = await handle.query("status", result_type=WarmupStatus)
    return st


async def warmup_status(client: Client, tenant: str, address: str) -> WarmupStatus | None:
    """The IP's warmup status, or None when it has no workflow."""
    try:
        return await query_status(client.get_workflow_handle(workflow_id(tenant, address)))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def warmup_statuses(client: Client, tenant: str | None = None, url: str | None = None
                          ) -> list[tuple[StartPlan, WarmupStatus | None]]:
    """Every warming IP of the inventory with its workflow's status query (None: no workflow)."""
    plans = await asyncio.to_thread(warming_plans, tenant, url)
    sem = asyncio.Semaphore(16)

    async def one(plan: StartPlan) -> tuple[StartPlan, WarmupStatus | None]:
        async with sem:
            return plan, await warmup_status(client, plan.tenant, plan.address)

    return list(await asyncio.gather(*(one(p) for p in plans)))


def status_dict(plan: StartPlan, st: WarmupStatus | None) -> dict[str, Any]:
    """One row of `email-engine warmup status --json`."""
    if st is None:
        return {"tenant": plan.tenant, "address": plan.address, "workflow": None, "phase": plan.phase,
                "quota": plan.quota}
    return {"tenant": plan.tenant, "address": plan.address, "workflow": st.workflow_id, **asdict(st)}


async def cancel_warmup(client: Client, address: str, restore_status: str, reason: str, actor: str,
                        url: str | None = None) -> bool:
    """Terminate the IP's workflow (if any) and put it back to `restore_status`; True if it changed."""
    tenant, addr = await asyncio.to_thread(locate, address, url)
    handle = client.get_workflow_handle(workflow_id(tenant, addr))
    try:
        await handle.terminate(f"warmup cancelled: {reason}")
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    return await asyncio.to_thread(restore_ip, addr, restore_status, reason, actor, url)
