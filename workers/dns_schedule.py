"""Start-up hook: the daily Temporal Schedule of DnsValidationWorkflow (06:00 UTC by default)."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)

from models.dns_contracts import WORKFLOW_ID, DnsValidationInput
from models.settings import Settings
from workers.schedules import install_schedule
from workflows.dns_validation import DnsValidationWorkflow

SCHEDULE_ID = "dns-validation"


def dns_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DnsValidationWorkflow.run, DnsValidationInput(concurrency=settings.dns_check_concurrency),
            id=WORKFLOW_ID, task_queue=settings.task_queue),
        spec=ScheduleSpec(calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(settings.dns_check_hour)],
                                                          minute=[ScheduleRange(0)], second=[ScheduleRange(0)])],
                          time_zone_name="UTC"),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="daily SPF/DKIM/DMARC/PTR checks of every sending domain (issue 5)"),
    )


async def install_dns_schedule(client: Client, settings: Settings) -> list[str]:
    """Create the schedule, or bring an existing one up to date with the settings (idempotent)."""
    verb = await install_schedule(client, SCHEDULE_ID, dns_schedule(settings))
    return [f"DNS checks: schedule {SCHEDULE_ID!r} {verb}, daily at {settings.dns_check_hour:02d}:00 UTC"]
