"""Asking MtaDeployWorkflow for a deploy (contract: activity "deploy_tenant_pool").

Other features (warmup, failover) call the activity by name after they changed the inventory:

    await workflow.execute_activity("deploy_tenant_pool", DeployPoolRequest(tenant, reason, actor),
                                    result_type=DeployOutcome, start_to_close_timeout=timedelta(minutes=15),
                                    heartbeat_timeout=timedelta(seconds=60))

It finds the tenant's MTA host, asks `mta-deploy/<host>` (starting it if needed) to deploy the newest
inventory, and returns once the deploy that includes the change has finished. A deploy that failed
(and was rolled back) raises a non-retryable ApplicationError of type "DeployFailed".
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models import names
from models.deploys import DeployRequest, HostDeployResult, MtaDeployInput, MtaDeployStatus


@dataclass(frozen=True)
class DeployPoolRequest:
    tenant: str
    reason: str
    actor: str


@dataclass(frozen=True)
class DeployOutcome:
    host: str
    generation: int
    changed: bool
    message: str


def _workflow_id(host: str) -> str:
    return f"mta-deploy/{host}"


async def ensure_deploy_workflow(client: Client, host: str, task_queue: str, url: str | None = None) -> None:
    """Start `mta-deploy/<host>` unless it is running (idempotent)."""
    from workflows.mta_deploy import MtaDeployWorkflow

    await client.start_workflow(
        MtaDeployWorkflow.run, MtaDeployInput(host=host, url=url), id=_workflow_id(host), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Serialized MTA deploys of {host}",
        memo={"mta_host": host, "purpose": "serialized deploys of the newest inventory to this host"},
    )


#: A query to a closed workflow can wait for a worker to replay it; never let one poll hang long.
QUERY_TIMEOUT = timedelta(seconds=15)


async def request_deploy(client: Client, host: str, reason: str, actor: str, task_queue: str,
                         url: str | None = None, poll: float = 2.0) -> HostDeployResult:
    """Ask the host's deploy workflow for a deploy of the newest inventory and wait for the deploy
    that includes this request. The request is a short update (it returns the generation at once);
    the wait polls a query, so any number of callers can wait (Temporal limits in-flight updates)."""
    from workflows.mta_deploy import MtaDeployWorkflow

    generation = await request_deploy_nowait(client, host, reason, actor, task_queue, url)
    handle = client.get_workflow_handle_for(MtaDeployWorkflow.run, _workflow_id(host))
    delay, polls = 0.1, 0
    while True:
        try:
            result = await handle.query(MtaDeployWorkflow.result, generation, rpc_timeout=QUERY_TIMEOUT)
        except RPCError as err:  # between two runs of a continue-as-new, or a closed workflow
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION,
                                  RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                raise
            result = None
            polls = max(polls, 9)  # look at the workflow's status right away
        if result is not None:
            return result
        polls += 1
        if polls % 10 == 0:  # terminated or failed (not continued as new): the deploy will never come
            desc = await handle.describe()
            if desc.status not in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
                raise RuntimeError(f"{_workflow_id(host)} ended ({desc.status.name}) before deploying "
                                   f"generation {generation}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, poll)


async def request_deploy_nowait(client: Client, host: str, reason: str, actor: str, task_queue: str,
                                url: str | None = None) -> int:
    """Ask for a deploy without waiting; returns the generation that will include the request.
    Starts the workflow if needed and retries the hand-over across a continue-as-new."""
    from workflows.mta_deploy import MtaDeployWorkflow

    names.token(host, "MTA host name")
    last: Exception | None = None
    for attempt in range(10):
        await ensure_deploy_workflow(client, host, task_queue, url)
        handle = client.get_workflow_handle_for(MtaDeployWorkflow.run, _workflow_id(host))
        try:
            return await handle.execute_update(MtaDeployWorkflow.request, DeployRequest(reason=reason, actor=actor))
        except RPCError as err:  # the run just continued as new or completed: hand over to the next run
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION,
                                  RPCStatusCode.RESOURCE_EXHAUSTED):
                raise
            last = err
        except WorkflowUpdateFailedError as err:
            last = err
            if "completed" not in str(err.cause or err).lower():
                raise
        await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"could not hand the deploy request to {_workflow_id(host)}: {last}")


async def deploy_status(client: Client, host: str) -> MtaDeployStatus | None:
    """The deploy workflow's state, or None when it was never started."""
    from workflows.mta_deploy import MtaDeployWorkflow

    handle = client.get_workflow_handle_for(MtaDeployWorkflow.run, _workflow_id(host))
    try:
        return await handle.query(MtaDeployWorkflow.status)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _tenant_host(tenant: str, url: str | None) -> str:
    from activities.snapshot import load_snapshot

    try:
        host = load_snapshot(url).tenant(tenant).mta_host
    except LookupError as err:
        raise ApplicationError(str(err), type="UnknownTenant", non_retryable=True) from None
    if not host:
        raise ApplicationError(f"tenant {tenant!r} has no MTA host", type="UnknownTenant", non_retryable=True)
    return host


async def _heartbeat_while(task: asyncio.Future[HostDeployResult], every: float = 10.0) -> HostDeployResult:
    while True:
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return task.result()
        with contextlib.suppress(RuntimeError):  # heartbeat outside an activity context (direct calls)
            activity.heartbeat("waiting for the deploy")


@activity.defn(name="deploy_tenant_pool")
async def deploy_tenant_pool(req: DeployPoolRequest) -> DeployOutcome:
    """Deploy the newest inventory to the tenant's MTA host through `mta-deploy/<host>`, waiting for the
    deploy that includes the caller's change. Raises ApplicationError(type="DeployFailed") when that
    deploy failed and the previous config was restored."""
    try:
        names.tenant(req.tenant)
    except names.NameError_ as err:
        raise ApplicationError(str(err), type="UnknownTenant", non_retryable=True) from None
    info = activity.info()
    host = await asyncio.to_thread(_tenant_host, req.tenant, None)
    reason = f"tenant {req.tenant}: {req.reason}"
    task = asyncio.ensure_future(
        request_deploy(activity.client(), host, reason, req.actor, task_queue=info.task_queue))
    try:
        result = await _heartbeat_while(task)
    finally:
        if not task.done():
            task.cancel()
    if not result.ok:
        raise ApplicationError(
            f"deploy of generation {result.generation} to {host} failed: {result.message}",
            {"host": host, "generation": result.generation, "rolled_back": result.rolled_back},
            type="DeployFailed", non_retryable=True,
        )
    return DeployOutcome(host=host, generation=result.generation, changed=result.changed, message=result.message)


#: What a caller should give the activity (a deploy reloads the MTA; minutes, not seconds).
SUGGESTED_TIMEOUT = timedelta(minutes=15)
