"""Start-up hook: the Temporal Schedule of BlocklistScanWorkflow (every 4 h by default, settings)."""

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

from models.scan_contracts import SCHEDULE_ID, ScanInput
from models.settings import Settings
from workers.schedules import install_schedule
from workflows.blocklist_scan import BlocklistScanWorkflow


def blocklist_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(BlocklistScanWorkflow.run, ScanInput(), id=SCHEDULE_ID,
                                           task_queue=settings.task_queue,
                                           execution_timeout=timedelta(hours=2)),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=settings.blocklist_scan_interval_hours))]),
        # a scan still running when the next is due: skip the next (never two scans at once)
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="blocklist scan of warming, active and quarantined IPs and their domains (issue 6)"),
    )


async def install_blocklist_schedule(client: Client, settings: Settings) -> list[str]:
    """Create the schedule, or bring an existing one up to date with the settings (idempotent)."""
    verb = await install_schedule(client, SCHEDULE_ID, blocklist_schedule(settings))
    return [f"Blocklists: schedule {SCHEDULE_ID!r} {verb}, every {settings.blocklist_scan_interval_hours:g} h"]
