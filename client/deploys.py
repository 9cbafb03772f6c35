"""MTA deploys (MtaDeployWorkflow, id `mta-deploy/<host>`): ask a host's deploy workflow for a deploy
of the newest inventory and wait for the deploy that includes the request, or read its status.

The workflow serializes and coalesces deploys; a request is a short update that returns the
generation at once, the wait polls the `result(generation)` query (Temporal limits in-flight updates,
queries any number of callers can poll).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from models import names
from models.deploys import DeployRequest, HostDeployResult, MtaDeployInput, MtaDeployStatus, workflow_id

WORKFLOW = "MtaDeployWorkflow"


async def ensure_deploy_workflow(client: Client, host: str, task_queue: str, url: str | None = None) -> None:
    """Start `mta-deploy/<host>` unless it is running (idempotent)."""
    await client.start_workflow(
        WORKFLOW, MtaDeployInput(host=host, url=url), id=workflow_id(host), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Serialized MTA deploys of {host}",
        memo={"mta_host": host, "purpose": "serialized deploys of the newest inventory to this host"},
    )


#: A query to a closed workflow can wait for a worker to replay it; never let one poll hang long.
QUERY_TIMEOUT = timedelta(seconds=15)


async def request_deploy(client: Client, host: str, reason: str, actor: str, task_queue: str,
                         url: str | None = None, poll: float = 2.0,
                         replace_dkim_keys: bool = False) -> HostDeployResult:
    """Ask the host's deploy workflow for a deploy of the newest inventory and wait for the deploy
    that includes this request. The request is a short update (it returns the generation at once);
    the wait polls a query, so any number of callers can wait (Temporal limits in-flight updates)."""
    generation = await request_deploy_nowait(client, host, reason, actor, task_queue, url, replace_dkim_keys)
    handle = client.get_workflow_handle(workflow_id(host))
    delay, polls = 0.1, 0
    while True:
        try:
            result = await handle.query("result", generation, result_type=HostDeployResult | None,  # type: ignore[arg-type]
                                        rpc_timeout=QUERY_TIMEOUT)
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
                raise RuntimeError(f"{workflow_id(host)} ended ({desc.status.name}) before deploying "
                                   f"generation {generation}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, poll)


async def request_deploy_nowait(client: Client, host: str, reason: str, actor: str, task_queue: str,
                                url: str | None = None, replace_dkim_keys: bool = False) -> int:
    """Ask for a deploy without waiting; returns the generation that will include the request.
    Starts the workflow if needed and retries the hand-over across a continue-as-new."""
    names.token(host, "MTA host name")
    last: Exception | None = None
    for attempt in range(10):
        await ensure_deploy_workflow(client, host, task_queue, url)
        handle = client.get_workflow_handle(workflow_id(host))
        try:
            return await handle.execute_update("request", DeployRequest(
                reason=reason, actor=actor, replace_dkim_keys=replace_dkim_keys), result_type=int)
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
    raise RuntimeError(f"could not hand the deploy request to {workflow_id(host)}: {last}")


async def deploy_status(client: Client, host: str) -> MtaDeployStatus | None:
    """The deploy workflow's state, or None when it was never started."""
    handle = client.get_workflow_handle(workflow_id(host))
    try:
        return await handle.query("status", result_type=MtaDeployStatus | None)  # type: ignore[arg-type]
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
