"""Run-command hook: the hourly Temporal Schedule of AccountingIngestWorkflow (dev server; production
installs the same schedule with this hook or `temporal schedule create`)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

from models.settings import Settings
from workers.schedules import install_schedule

SCHEDULE_ID = "accounting-ingest"


def schedule(settings: Settings) -> Schedule:
    from workflows.accounting import AccountingIngestInput, AccountingIngestWorkflow

    every = timedelta(minutes=settings.accounting_ingest_interval_minutes)
    return Schedule(
        action=ScheduleActionStartWorkflow(AccountingIngestWorkflow.run, AccountingIngestInput(),
                                           id="accounting-ingest-run", task_queue=settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="PowerMTA accounting over SFTP from every enabled MTA host"),
    )


async def install_accounting_schedule(client: Client, settings: Settings) -> list[str]:
    """Create the schedule, or bring an existing one up to date (idempotent)."""
    verb = await install_schedule(client, SCHEDULE_ID, schedule(settings))
    return [f"schedule {SCHEDULE_ID} {verb}: accounting ingest every "
            f"{settings.accounting_ingest_interval_minutes} min"]
