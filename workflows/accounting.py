"""AccountingIngestWorkflow: fetch new PowerMTA accounting records from every enabled MTA host over SFTP
and count them into the daily stats. Run hourly by a Temporal Schedule (client/schedules.py);
idempotent (offsets live in the database), so overlapping or repeated runs add nothing twice.

Contact webhooks (issue 15): the ingest queues `contact.*` events in the chunk's own transaction; each
run then wakes the receivers with pending rows (also those queued by `email-engine stats ingest`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.accounting import HostIngestReport, HostIngestRequest
    from activities.alerts import Alert
    from workflows import activity_options as opt
    from workflows.webhook_events import wake_receivers

# Timeouts and retries: the ACCOUNTING_* policies of workflows/activity_options.py.


@dataclass
class AccountingIngestInput:
    hosts: list[str] | None = None  # None: every enabled MTA host


@dataclass
class AccountingIngestResult:
    hosts: list[HostIngestReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(f.records for h in self.hosts for f in h.files)


@workflow.defn(name="AccountingIngestWorkflow")
class AccountingIngestWorkflow:
    @workflow.run
    async def run(self, inp: AccountingIngestInput) -> AccountingIngestResult:
        hosts = inp.hosts
        if hosts is None:
            hosts = await workflow.execute_activity(
                "list_accounting_hosts", result_type=list[str], start_to_close_timeout=opt.DB_START_TO_CLOSE,
                schedule_to_close_timeout=opt.ACCOUNTING_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                retry_policy=opt.DB_RETRY)
        result = AccountingIngestResult()
        for host in hosts:
            try:
                report = await workflow.execute_activity(
                    "ingest_host_accounting", HostIngestRequest(host), result_type=HostIngestReport,
                    start_to_close_timeout=opt.ACCOUNTING_HOST_START_TO_CLOSE,
                    schedule_to_close_timeout=opt.ACCOUNTING_SCHEDULE_TO_CLOSE,
                    heartbeat_timeout=opt.ACCOUNTING_HOST_HEARTBEAT, retry_policy=opt.ACCOUNTING_HOST_RETRY)
            except ActivityError as err:
                result.failed[host] = str(err.cause or err)
                continue
            result.hosts.append(report)
        malformed = sum(f.malformed for h in result.hosts for f in h.files)
        if result.failed or malformed:
            body = "; ".join(f"{h}: {e}" for h, e in result.failed.items())
            if malformed:
                body += f"{'; ' if body else ''}{malformed} malformed accounting record(s) skipped"
            await workflow.execute_activity(
                "send_alert", Alert(key="accounting-ingest", title="Accounting ingest had problems", body=body,
                                    severity="warning"),
                result_type=bool, start_to_close_timeout=opt.ALERT_START_TO_CLOSE,
                schedule_to_close_timeout=opt.ALERT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                retry_policy=opt.ALERT_RETRY)
        await wake_receivers()
        return result
