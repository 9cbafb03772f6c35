"""The guard on active IPs (issue 15): run it now (ActiveGuardWorkflow) or read what it would do (dry
run, database only), list its steps, and answer a step (GuardStepWorkflow `guard/<tenant>/<ip>`):
approve or deny one held by the capacity-loss limit, undo one taken.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from client.updates import send_update
from models import names
from models.errors import EngineError, NotRunning, Refused
from models.guard_contracts import (
    RUN_WORKFLOW,
    STEP_WORKFLOW,
    GuardAnswer,
    GuardPlan,
    GuardRunInput,
    GuardRunResult,
    GuardStepInput,
    GuardStepState,
    StartGuardStepResult,
    step_workflow_id,
)
from models.search_attributes import IP_ADDRESS, TENANT
from models.settings import get_settings

#: Updates an operator sends to a step.
ANSWERS = ("approve", "deny", "undo")

#: Visibility query of the open steps (held ones among them); they carry the Tenant and IpAddress attributes.
RUNNING = f'WorkflowType = "{STEP_WORKFLOW}" AND ExecutionStatus = "Running"'


def _tenant(tenant: str | None) -> str | None:
    if tenant is None:
        return None
    try:
        return names.tenant(tenant)
    except names.NameError_ as err:
        raise Refused(str(err)) from None


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


async def plan_guard(tenant: str | None = None, url: str | None = None, day: str | None = None) -> GuardPlan:
    """What the guard would do today, every active IP with its figures; nothing is recorded or changed."""
    from activities.active_guard import GuardPlanRequest, plan_day

    req = GuardPlanRequest(day or _today(), _tenant(tenant), dry_run=True, detail=True)
    return await asyncio.to_thread(plan_day, req, url)


async def run_guard(client: Client, tenant: str | None = None, task_queue: str | None = None,
                    url: str | None = None) -> GuardRunResult:
    """Run ActiveGuardWorkflow now and wait for it (it judges, records and starts the steps; it does not
    wait for held steps). A second run the same day acts on nothing twice."""
    tenant = _tenant(tenant)
    if tenant is not None:  # an unknown tenant is refused before anything starts
        await plan_guard(tenant, url)
    settings = get_settings()
    handle = await client.start_workflow(
        RUN_WORKFLOW, GuardRunInput(tenant), id=f"active-guard/run/{uuid.uuid4().hex[:12]}",
        task_queue=task_queue or settings.task_queue, result_type=GuardRunResult,
        static_summary=f"Active guard run ({tenant or 'every tenant'})")
    try:
        result: GuardRunResult = await handle.result()
    except WorkflowFailureError as err:
        raise EngineError(f"{handle.id}: {getattr(err.cause, 'message', None) or err.cause or err}") from None
    return result


async def start_step(client: Client, inp: GuardStepInput, task_queue: str) -> StartGuardStepResult:
    """Start GuardStepWorkflow `guard/<tenant>/<ip>`, or find the one running (USE_EXISTING): `started`
    says whether the running one is this step (same day: a retry) rather than another, still open, step."""
    wid = step_workflow_id(names.tenant(inp.tenant), names.ip_address(inp.address))
    handle = await client.start_workflow(
        STEP_WORKFLOW, inp, id=wid, task_queue=task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT, inp.tenant),
                                                 SearchAttributePair(IP_ADDRESS, inp.address)]),
        memo={"tenant": inp.tenant, "ip": inp.address, "day": inp.day, "action": inp.action},
        static_summary=f"Active guard: {inp.action} of {inp.address} ({inp.tenant}, {inp.day})"[:200])
    desc = await handle.describe()
    memo = await desc.memo()
    return StartGuardStepResult(wid, desc.run_id, memo.get("day") == inp.day)


async def query_state(handle: WorkflowHandle[Any, Any]) -> GuardStepState:
    """A step workflow's `state` query, typed."""
    state: GuardStepState = await handle.query("state", result_type=GuardStepState)
    return state


async def step_state(client: Client, tenant: str, address: str) -> GuardStepState:
    """The `state` query of the IP's step workflow; NotRunning if it has none."""
    wid = step_workflow_id(names.tenant(tenant), names.ip_address(address))
    try:
        return await query_state(client.get_workflow_handle(wid))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotRunning(f"no guard step {wid}") from None
        raise


async def answer(client: Client, tenant: str, address: str, update: str, reason: str, incident: str | None = None,
                 actor: str = "operator") -> str:
    """Send `approve` or `deny` (a held step) or `undo` (a taken step, within its undo window) to the
    IP's step. `incident`: the step run it is for (GuardStepState.run_id); None: the current run.
    Refused when the step does not wait for that answer; NotRunning when there is no step."""
    if update not in ANSWERS:
        raise Refused(f"not a guard answer: {update!r} (one of {', '.join(ANSWERS)})")
    try:
        wid = step_workflow_id(names.tenant(tenant), names.ip_address(address))
    except names.NameError_ as err:
        raise Refused(str(err)) from None
    if not reason.strip():
        raise Refused("--reason must not be empty")
    return await send_update(client.get_workflow_handle(wid), update, GuardAnswer(reason.strip(), incident, actor),
                             "guard step")


async def guard_steps(tenant: str | None = None, days: int = 7, url: str | None = None) -> list[dict[str, Any]]:
    """The guard's steps of the last `days` days (today included), newest first (database only)."""
    from activities.active_guard import steps_since

    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=max(0, days - 1))
    return await asyncio.to_thread(steps_since, since, _tenant(tenant), url)
