"""Outbound webhooks: wake a receiver's WebhookDeliveryWorkflow (`webhooks/<name>`), replay events.

Waking is signal-with-start: the workflow runs while its receiver has pending rows and ends when the
queue is empty; the next event starts it again. The rows are written BEFORE the wake, so whatever the
interleaving (the workflow ending just then, two events at once) no row is left without a running
workflow to deliver it: a wake that finds the workflow closed starts a new run.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from temporalio.client import Client

from models import webhooks as wh


async def wake(client: Client, receiver: str, task_queue: str) -> None:
    """Start `webhooks/<receiver>` or signal the running one (idempotent)."""
    await client.start_workflow(
        wh.DELIVERY_WORKFLOW, wh.DeliveryInput(receiver), id=wh.delivery_workflow_id(receiver),
        task_queue=task_queue, start_signal=wh.WAKE_SIGNAL,
        static_summary=f"Webhook deliveries to {receiver}", memo={"webhook_receiver": receiver})


async def wake_pending(client: Client, task_queue: str, url: str | None = None) -> list[str]:
    """Wake every enabled receiver that has pending rows (a sweep: after an ingest, a replay)."""
    from activities.webhooks import receivers_with_pending

    receivers = await asyncio.to_thread(receivers_with_pending, url)
    for r in receivers:
        await wake(client, r, task_queue)
    return receivers


async def replay(client: Client, since: dt.datetime, task_queue: str, receiver: str | None = None,
                 url: str | None = None) -> dict[str, int]:
    """Queue again the events since `since` (same ids) and wake their receivers."""
    from activities.webhooks import replay as replay_rows

    counts = await asyncio.to_thread(replay_rows, since, receiver, url)
    for r in sorted(counts):
        await wake(client, r, task_queue)
    return counts
