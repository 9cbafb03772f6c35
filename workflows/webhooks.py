"""WebhookDeliveryWorkflow: one per receiver (id `webhooks/<name>`), delivering its outbox in order.

Design (issue 15), the simplest that keeps every promise:
- Events are rows in the `webhook_outbox` table (activities/webhooks.py), written by a quick, idempotent
  activity ("emit_webhook_event", client/relay.py) that then wakes this workflow by signal-with-start.
  The saga and the warmup only wait for that database write: a dead receiver never slows them.
- This workflow asks "deliver_webhooks" to POST the receiver's pending rows in `id` order; a batch
  stops at the first failure, so an event never overtakes an earlier one. When the head row fails,
  the activity raises and Temporal retries it with backoff (10 s doubling to 10 min) for 72 h
  (WEBHOOK_DELIVERY_SCHEDULE_TO_CLOSE, over the 24 h promised); only then is the head marked failed
  (alert; `webhooks replay` can send it again) and the queue moves on.
- Deduplication is the outbox's unique (receiver, event id); the event id is the `webhook-id` header
  on every attempt and replay, for the receiver to deduplicate too.
- The workflow ends when the queue is empty (no idle workflow per receiver, no polling); the next wake
  starts a new run. A wake that arrives while it runs is remembered, so rows written while the last
  batch was in flight are not left behind. Long queues continue-as-new.
Why not one workflow per event: ordering per receiver would need a lock across workflows; why not a
Temporal-only queue (signals carrying events): the outbox survives a lost signal, lets `webhooks list`
show the queue, and lets replay re-send by time.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert
    from activities.webhooks import DeliverRequest, DeliverResult
    from models.webhooks import DELIVERY_WORKFLOW, WAKE_SIGNAL, DeliveryInput
    from workflows import activity_options as opt

# Timeouts and retries: the WEBHOOK_* policies of workflows/activity_options.py.
MAX_HISTORY = 5_000


@workflow.defn(name=DELIVERY_WORKFLOW)
class WebhookDeliveryWorkflow:
    def __init__(self) -> None:
        self._woken = False

    @workflow.signal(name=WAKE_SIGNAL)
    def wake(self) -> None:
        self._woken = True

    @workflow.run
    async def run(self, inp: DeliveryInput) -> int:
        delivered = inp.delivered
        req = DeliverRequest(inp.receiver)
        while True:
            self._woken = False
            try:
                res: DeliverResult = await workflow.execute_activity(
                    "deliver_webhooks", req, result_type=DeliverResult, heartbeat_timeout=opt.WEBHOOK_BATCH_HEARTBEAT,
                    start_to_close_timeout=opt.WEBHOOK_BATCH_START_TO_CLOSE,
                    schedule_to_close_timeout=opt.WEBHOOK_DELIVERY_SCHEDULE_TO_CLOSE,
                    retry_policy=opt.WEBHOOK_DELIVERY_RETRY)
            except ActivityError as err:
                await self._give_up(inp.receiver, str(err.cause or err))
                continue
            delivered += res.delivered
            if res.disabled or (not res.remaining and not self._woken):
                return delivered
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > MAX_HISTORY:
                workflow.continue_as_new(DeliveryInput(inp.receiver, delivered))

    async def _give_up(self, receiver: str, cause: str) -> None:
        event = await workflow.execute_activity(
            "give_up_webhook", DeliverRequest(receiver), result_type=str | None,  # type: ignore[arg-type]
            start_to_close_timeout=opt.DB_START_TO_CLOSE, schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE,
            heartbeat_timeout=opt.HEARTBEAT, retry_policy=opt.WEBHOOK_DB_RETRY)
        if event is None:
            return
        try:
            await workflow.execute_activity(
                "send_alert", Alert(key=f"webhooks/{receiver}/{event}", severity="critical",
                                    title=f"Webhook receiver {receiver}: event {event} given up",
                                    body=f"Not delivered within {opt.WEBHOOK_DELIVERY_SCHEDULE_TO_CLOSE}: {cause}. "
                                         "The events behind it go on; "
                                         f"`email-engine webhooks replay --receiver {receiver} --since ...` "
                                         "sends it again."),
                result_type=bool, start_to_close_timeout=opt.ALERT_START_TO_CLOSE,
                schedule_to_close_timeout=opt.ALERT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                retry_policy=opt.ALERT_RETRY)
        except ActivityError:
            workflow.logger.exception("alert for webhook %s/%s not sent", receiver, event)
