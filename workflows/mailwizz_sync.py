"""MailwizzSyncWorkflow: hourly, per tenant with a MailWizz key: check that the tenant's MTA is an
active delivery server (the activity alerts if not) and record the day's campaign figures (opens
and clicks attributed to IPs by their sent share). One tenant's MailWizz failing does not stop the
others; it is alerted. Started by the Temporal Schedule "mailwizz-sync" (client/schedules.py).

Then (issue 15) the tenant's new unsubscribes become `contact.unsubscribe` webhook events
("ingest_mailwizz_unsubscribes": incremental per campaign, queued only for subscribed receivers), and
the receivers are woken once at the end when any was queued. Both are new commands: under
UNSUBSCRIBE_PATCH (and the webhook patch for the wake), so syncs recorded before replay unchanged
(tests/data/mailwizz-sync-history-v1.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert
    from workflows import activity_options as opt
    from workflows.webhook_events import wake_receivers

# Timeouts and retries: the MAILWIZZ_* policies of workflows/activity_options.py.
UNSUBSCRIBE_PATCH = "mailwizz-unsubscribe-webhooks"


@dataclass
class MailwizzSyncInput:
    #: Only these tenants (None: every tenant with a MailWizz server and a key).
    tenants: list[str] | None = None


@dataclass
class MailwizzSyncResult:
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _cause(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) and err.cause is not None else err
    return str(getattr(cause, "message", None) or cause)[:500]


@workflow.defn(name="MailwizzSyncWorkflow")
class MailwizzSyncWorkflow:
    @workflow.run
    async def run(self, inp: MailwizzSyncInput) -> MailwizzSyncResult:
        tenants = inp.tenants
        if tenants is None:
            tenants = await workflow.execute_activity(
                "mailwizz_tenants", start_to_close_timeout=opt.DB_START_TO_CLOSE, result_type=list[str],
                schedule_to_close_timeout=opt.DB_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                retry_policy=opt.DB_RETRY)
        result = MailwizzSyncResult()
        queued = 0
        for tenant in tenants:
            try:
                server = await workflow.execute_activity(
                    "check_mailwizz_delivery_server", tenant, start_to_close_timeout=opt.MAILWIZZ_CHECK_START_TO_CLOSE,
                    schedule_to_close_timeout=opt.MAILWIZZ_TENANT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                    retry_policy=opt.MAILWIZZ_RETRY, result_type=dict)
                figures = await workflow.execute_activity(
                    "ingest_mailwizz_stats", tenant, start_to_close_timeout=opt.MAILWIZZ_INGEST_START_TO_CLOSE,
                    schedule_to_close_timeout=opt.MAILWIZZ_TENANT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                    retry_policy=opt.MAILWIZZ_RETRY, result_type=dict)
                result.tenants[tenant] = {"server": server, "figures": figures}
            except ActivityError as err:
                result.failed.append(tenant)
                await self._alert(Alert(key=f"mailwizz-error/{tenant}", severity="warning", dedup_seconds=6 * 3600,
                                        title=f"MailWizz of {tenant} could not be read",
                                        body=f"{_cause(err)}. The tenant's opens and clicks are not updated "
                                             "until this is fixed; sending itself is not affected."))
                continue
            if workflow.patched(UNSUBSCRIBE_PATCH):
                queued += await self._unsubscribes(tenant, result)
        if queued:
            await wake_receivers()
        return result

    async def _unsubscribes(self, tenant: str, result: MailwizzSyncResult) -> int:
        """The tenant's new unsubscribes as webhook events; returns how many were queued."""
        try:
            report = await workflow.execute_activity(
                "ingest_mailwizz_unsubscribes", tenant, start_to_close_timeout=opt.MAILWIZZ_INGEST_START_TO_CLOSE,
                schedule_to_close_timeout=opt.MAILWIZZ_TENANT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                retry_policy=opt.MAILWIZZ_RETRY, result_type=dict)
        except ActivityError as err:
            await self._alert(Alert(key=f"mailwizz-unsubscribes/{tenant}", severity="warning", dedup_seconds=6 * 3600,
                                    title=f"MailWizz unsubscribes of {tenant} could not be read",
                                    body=f"{_cause(err)}. contact.unsubscribe webhooks wait until this is fixed "
                                         "(the next sync reads from where the last one stopped)."))
            return 0
        result.tenants[tenant]["unsubscribes"] = report
        return int(report.get("queued", 0))

    @staticmethod
    async def _alert(alert: Alert) -> None:
        await workflow.execute_activity(
            "send_alert", alert, start_to_close_timeout=opt.ALERT_START_TO_CLOSE,
            schedule_to_close_timeout=opt.ALERT_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
            retry_policy=opt.ALERT_RETRY)
