"""MtaDeployWorkflow does not stall on Telegram (issue 11): after a failed deploy its alert is fired
off, bounded by a schedule_to_close_timeout, and the next deploy runs while the alert still hangs.
Time-skipping server; deploy_mta_host and send_alert are stand-ins of the same names (no MTA host, no
Telegram: a Telegram that never answers cannot be made real here)."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.alerts import Alert
from client.deploys import request_deploy
from models.deploys import workflow_id
from tests.test_mta_deploy_workflow import new_host, recording_deploy
from workflows.mta_deploy import MtaDeployWorkflow

alerts: list[Alert] = []
release = asyncio.Event()


@activity.defn(name="send_alert")
async def hanging_alert(alert: Alert) -> bool:
    """Telegram that never answers: the activity heartbeats (the worker is alive) but does not finish."""
    alerts.append(alert)
    while not release.is_set():
        activity.heartbeat()
        await asyncio.sleep(0.2)
    return True


async def test_a_failed_deploy_alert_does_not_hold_up_the_next_deploy(temporal_time_skipping) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_time_skipping.client
    queue = f"mta-{uuid.uuid4().hex[:8]}"
    host, fake = new_host("alert")
    fake.gate.set()
    fake.fail = True
    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow],
                      activities=[recording_deploy, hanging_alert]):
        with temporal_time_skipping.auto_time_skipping_disabled():
            failed = await asyncio.wait_for(request_deploy(client, host, "bad", "test", task_queue=queue,
                                                           poll=0.1), 30)
            assert not failed.ok and failed.rolled_back
            for _ in range(100):
                if alerts:
                    break
                await asyncio.sleep(0.05)
            assert [a.key for a in alerts] == [f"mta-deploy-failed/{host}"]
            fake.fail = False
            fake.version = 1
            ok = await asyncio.wait_for(request_deploy(client, host, "fixed", "test", task_queue=queue, poll=0.1),
                                        30)
            assert ok.ok and ok.generation == 2 and ok.digest == "v1"
            assert not release.is_set()  # the alert was still hanging while generation 2 deployed
            release.set()
        await client.get_workflow_handle(workflow_id(host)).terminate("test done")
    assert [g for g, _ in fake.deploys] == [1, 2]
