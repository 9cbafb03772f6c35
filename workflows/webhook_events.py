"""Emitting a webhook event from a workflow (the failover saga, the warmup, the scans).

`emit` asks the relay activity "emit_webhook_event" to write the event into the webhook outbox and wake
the receivers' delivery workflows (workflows/webhooks.py). The caller waits only for that database
write (seconds), never for a receiver. A failure is logged and the workflow goes on: a webhook is a
notification, and the alert and audit row of the same step stay the record.

Replay: emitting adds commands, so it happens only under `workflow.patched(WEBHOOK_PATCH)`; histories
recorded before it replay unchanged. A worker without the activity (a test worker that registers only
what it needs) fails it at once ("NotFoundError" is not retried): the event is dropped with a log line.
The event id comes from workflow.uuid4() (deterministic on replay, new for every event).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.webhooks import WebhookEvent
    from workflows import activity_options as opt

WEBHOOK_PATCH = "webhook-events"


async def emit(event_type: str, data: dict[str, Any]) -> None:
    """Queue one event for the receivers subscribed to `event_type` (see the module docstring)."""
    if not workflow.patched(WEBHOOK_PATCH):
        return
    data = {**data, "workflow_id": workflow.info().workflow_id}
    event = WebhookEvent(id=f"evt_{workflow.uuid4().hex}", type=event_type,
                         occurred_at=workflow.now().isoformat(), data=data)
    try:
        await workflow.execute_activity("emit_webhook_event", event, result_type=list[str],
                                        start_to_close_timeout=opt.WEBHOOK_EMIT_START_TO_CLOSE,
                                        schedule_to_close_timeout=opt.WEBHOOK_EMIT_SCHEDULE_TO_CLOSE,
                                        heartbeat_timeout=opt.HEARTBEAT, retry_policy=opt.WEBHOOK_EMIT_RETRY)
    except ActivityError as err:
        workflow.logger.warning("webhook event %s %s not queued: %s", event_type, event.id, err.cause or err)


async def wake_receivers() -> None:
    """Wake every receiver with pending rows (events an activity queued in its own transaction, such as
    the accounting ingest's contact events). Same patch and failure rules as `emit`."""
    if not workflow.patched(WEBHOOK_PATCH):
        return
    try:
        await workflow.execute_activity("wake_webhook_receivers", result_type=list[str],
                                        start_to_close_timeout=opt.WEBHOOK_EMIT_START_TO_CLOSE,
                                        schedule_to_close_timeout=opt.WEBHOOK_EMIT_SCHEDULE_TO_CLOSE,
                                        heartbeat_timeout=opt.HEARTBEAT, retry_policy=opt.WEBHOOK_EMIT_RETRY)
    except ActivityError as err:
        workflow.logger.warning("webhook receivers not woken: %s", err.cause or err)
