"""Activities that relay a workflow's request to another workflow through the Temporal client.

Workflows call them by activity NAME only (so workflows never import client/); workers register
RELAY_ACTIVITIES. Names and request dataclasses (models/*_contracts.py, models/deploys.py) are part
of the recorded histories:

- "start_failover_saga" (StartSagaRequest -> StartSagaResult): the scan starts or joins a saga;
- "start_ip_warmup" (StartWarmupRequest -> workflow id): move an IP into warming (DNS gate) and start
  its IpWarmupWorkflow; idempotent (a running workflow is left alone);
- "cancel_ip_warmup" (CancelWarmupRequest -> changed): the saga's compensation: terminate the
  workflow, put the IP back to `restore_status`, audited;
- "deploy_tenant_pool" (DeployPoolRequest -> DeployOutcome): ask `mta-deploy/<host>` of the tenant's
  MTA host for a deploy of the newest inventory and wait (heartbeating) for the deploy that includes
  the change. A deploy that failed (and was rolled back) raises a non-retryable ApplicationError of
  type "DeployFailed". Callers give it minutes (SUGGESTED_TIMEOUT) and a heartbeat_timeout.
- "emit_webhook_event" (WebhookEvent -> receivers): queue the event in the webhook outbox for every
  subscribed receiver (idempotent on the event id) and wake their delivery workflows; quick whatever
  the receivers do (workflows/webhook_events.py);
- "wake_webhook_receivers" (no argument -> receivers): wake every receiver with pending rows (after an
  accounting ingest queued contact events);
- "start_guard_step" (GuardStepInput -> StartGuardStepResult): the active guard starts one IP's step
  (`guard/<tenant>/<ip>`), or finds it running (a retry; or another, still open, step of that IP).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.keepalive import heartbeating
from client.deploys import request_deploy
from client.failovers import start_saga
from client.guard import start_step
from client.warmups import cancel_warmup, start_warmup
from client.webhooks import wake, wake_pending
from models import names
from models.deploys import DeployOutcome, DeployPoolRequest, HostDeployResult
from models.errors import WarmupError
from models.failover_contracts import StartSagaRequest, StartSagaResult
from models.guard_contracts import GuardStepInput, StartGuardStepResult
from models.warmup_contracts import CancelWarmupRequest, StartWarmupRequest
from models.webhooks import WebhookEvent

#: What a caller should give "deploy_tenant_pool" (a deploy reloads the MTA; minutes, not seconds).
SUGGESTED_TIMEOUT = timedelta(minutes=15)


@activity.defn(name="start_failover_saga")
@heartbeating
async def start_failover_saga(req: StartSagaRequest) -> StartSagaResult:
    return await start_saga(activity.client(), req, activity.info().task_queue)


def _non_retryable(err: Exception, kind: str) -> ApplicationError:
    return ApplicationError(str(err), type=kind, non_retryable=True)


@activity.defn(name="start_ip_warmup")
@heartbeating
async def start_ip_warmup(req: StartWarmupRequest) -> str:
    """Move the IP into warming (DNS gate) and start its workflow; returns the workflow id."""
    try:
        outcome = await start_warmup(activity.client(), req.address, req.reason, req.actor, req.override_dns,
                                     task_queue=activity.info().task_queue)
    except (WarmupError, ValueError) as err:
        raise _non_retryable(err, "WarmupRefused") from None
    return outcome.workflow_id


@activity.defn(name="cancel_ip_warmup")
@heartbeating
async def cancel_ip_warmup(req: CancelWarmupRequest) -> bool:
    """Compensation of start_ip_warmup: stop the workflow, restore the IP's status; True if it changed."""
    try:
        return await cancel_warmup(activity.client(), req.address, req.restore_status, req.reason, req.actor)
    except (WarmupError, ValueError) as err:
        raise _non_retryable(err, "WarmupCancelRefused") from None


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
@heartbeating
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


@activity.defn(name="start_guard_step")
@heartbeating
async def start_guard_step(inp: GuardStepInput) -> StartGuardStepResult:
    return await start_step(activity.client(), inp, activity.info().task_queue)


@activity.defn(name="emit_webhook_event")
@heartbeating
async def emit_webhook_event(event: WebhookEvent) -> list[str]:
    """Queue `event` for its subscribers and wake their delivery workflows (a retry queues nothing twice
    and wakes them again); returns the receivers."""
    from activities.webhooks import queue_event

    receivers = await asyncio.to_thread(queue_event, event)
    for r in receivers:
        await wake(activity.client(), r, activity.info().task_queue)
    return receivers


@activity.defn(name="wake_webhook_receivers")
@heartbeating
async def wake_webhook_receivers() -> list[str]:
    """Wake every receiver with pending rows; returns them."""
    return await wake_pending(activity.client(), activity.info().task_queue)


RELAY_ACTIVITIES: list[Callable[..., Any]] = [start_failover_saga, start_ip_warmup, cancel_ip_warmup,
                                              deploy_tenant_pool, emit_webhook_event, wake_webhook_receivers,
                                              start_guard_step]
