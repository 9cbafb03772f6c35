"""Failovers (FailoverSaga, id `failover/<tenant>/<ip>`): start or join one, list the open ones, read
one's state, approve or deny one held by the circuit breaker.

The `state` query is read one way, typed (SagaState | None), by query_state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from client.updates import send_update
from models import names
from models.errors import NotRunning, Refused
from models.failover_contracts import (
    FailoverDecision,
    FailoverInput,
    SagaState,
    StartSagaRequest,
    StartSagaResult,
    saga_id,
)
from models.search_attributes import IP_ADDRESS, TENANT

WORKFLOW = "FailoverSaga"
RUNNING = f'WorkflowType = "{WORKFLOW}" AND ExecutionStatus = "Running"'


async def start_saga(client: Client, req: StartSagaRequest, task_queue: str) -> StartSagaResult:
    """Start FailoverSaga `failover/<tenant>/<ip>`, or attach to the running one (USE_EXISTING).
    A finished saga's id may be used again (a later listing after re-warming is a new failover)."""
    names.tenant(req.tenant)
    names.ip_address(req.address)
    wid = saga_id(req.tenant, req.address)
    handle = await client.start_workflow(
        WORKFLOW, FailoverInput(req.tenant, req.address, list(req.listings), req.detected_by,
                                same_scan=list(req.same_scan), blast_radius=req.blast_radius), id=wid,
        task_queue=task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT, req.tenant),
                                                 SearchAttributePair(IP_ADDRESS, req.address)]),
        memo={"tenant": req.tenant, "ip": req.address,
              "listed_on": ", ".join(f"{li.target} on {li.zone}" for li in req.listings),
              "detected_by": req.detected_by},
        static_summary=f"Failover of {req.address} ({req.tenant})")
    resp = getattr(handle, "_start_workflow_response", None)  # StartWorkflowExecutionResponse
    joined = resp is not None and not resp.started
    if joined:
        await handle.signal("detected_again", [lst.zone for lst in req.listings])
    return StartSagaResult(wid, handle.result_run_id or "", bool(joined))


async def query_state(handle: WorkflowHandle[Any, Any]) -> SagaState | None:
    """The saga's `state` query, typed (None before the saga has begun)."""
    state: SagaState | None = await handle.query("state", result_type=SagaState | None)  # type: ignore[arg-type]
    return state


async def failover_state(client: Client, tenant: str, address: str) -> SagaState | None:
    """The state of the saga of (tenant, address); NotRunning if there is none."""
    wid = saga_id(tenant, address)
    try:
        return await query_state(client.get_workflow_handle(wid))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotRunning(f"no running failover {wid}") from None
        raise


@dataclass(frozen=True)
class OpenFailover:
    workflow_id: str
    run_id: str
    started: str  # ISO datetime
    state: SagaState | None
    error: str | None = None  # the state query failed (e.g. no worker)


async def list_failovers(client: Client) -> list[OpenFailover]:
    """Running FailoverSaga workflows with their queried state, by workflow id."""
    rows: list[OpenFailover] = []
    async for wf in client.list_workflows(RUNNING):
        try:
            state, error = await query_state(client.get_workflow_handle(wf.id, run_id=wf.run_id)), None
        except Exception as exc:  # a saga whose worker is down cannot answer queries
            state, error = None, str(exc)
        rows.append(OpenFailover(wf.id, wf.run_id, wf.start_time.isoformat(), state, error))
    return sorted(rows, key=lambda r: r.workflow_id)


async def _answer(client: Client, tenant: str, address: str, update: str, reason: str,
                  incident: str | None = None) -> str:
    wid = saga_id(names.tenant(tenant), names.ip_address(address))
    if not reason.strip():
        raise Refused("--reason must not be empty")
    answer: FailoverDecision | str = reason.strip() if incident is None else FailoverDecision(reason.strip(), incident)
    return await send_update(client.get_workflow_handle(wid), update, answer, "failover")


async def approve(client: Client, tenant: str, address: str, reason: str, incident: str | None = None) -> str:
    """Approve a failover held by the circuit breaker (a standby of the tenant starts warming).

    `incident`: the saga run the approval is for (SagaState.run_id, e.g. the one whose evidence was
    read); the saga refuses it when another run of that IP is current. None: the current run."""
    return await _answer(client, tenant, address, "approve", reason, incident)


async def deny(client: Client, tenant: str, address: str, reason: str, incident: str | None = None) -> str:
    """Deny a held failover: the listed IP stays quarantined, no standby is activated (`incident`: as
    for approve)."""
    return await _answer(client, tenant, address, "deny", reason, incident)
