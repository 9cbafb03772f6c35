"""Run-command hook of the operators' side: the hourly MailWizz sync schedule and Web UI links."""

from __future__ import annotations

import urllib.parse
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)

from models.settings import Settings
from workers.schedules import install_schedule

SCHEDULE_ID = "mailwizz-sync"


def mailwizz_schedule(settings: Settings) -> Schedule:
    from workflows.mailwizz_sync import MailwizzSyncInput, MailwizzSyncWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(MailwizzSyncWorkflow.run, MailwizzSyncInput(), id="mailwizz-sync",
                                           task_queue=settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1), offset=timedelta(minutes=20))]),
        state=ScheduleState(note="hourly: MailWizz delivery-server check and campaign figures per tenant"),
    )


def web_ui_url(settings: Settings, query: str) -> str:
    host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"
    return (f"http://{host}:{settings.temporal_ui_port}/namespaces/{settings.temporal_namespace}/workflows"
            f"?query={urllib.parse.quote(query)}")


async def install_ops(client: Client, settings: Settings) -> list[str]:
    """Idempotent: creates or updates the MailWizz schedule; returns what the run command prints."""
    verb = await install_schedule(client, SCHEDULE_ID, mailwizz_schedule(settings))
    example = web_ui_url(settings, 'Tenant="client-2" AND WarmupPhase="week_3"')
    return [
        f"MailWizz: schedule {SCHEDULE_ID!r} {verb}, hourly (only tenants with a key in "
        "EMAIL_ENGINE_MAILWIZZ_KEYS are contacted)",
        "Web UI, filter by search attributes (Tenant, IpAddress, WarmupPhase, IpStatus), e.g. "
        + example,
        "fleet at a glance: `email-engine status`; Telegram ChatOps: `email-engine bot`",
    ]
