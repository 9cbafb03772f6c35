"""DnsValidationWorkflow: check every sending domain's DNS authentication, alert on changes.

Run daily by the Temporal Schedule "dns-validation" (EMAIL_ENGINE_DNS_CHECK_HOUR, UTC; installed by
client/schedules.py, `email-engine schedules apply`), or on demand. Domains are checked by the activity
"check_dns_domain" (which persists the result the DNS gate reads) with bounded concurrency;
progress is in the "status" query. One alert summarizes every change of state (newly failing,
not checkable, recovered); a day without changes sends nothing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert
    from models.dns_auth import change_alert_text, changes
    from models.dns_contracts import DnsValidationInput, DnsValidationStatus

LIST_TIMEOUT = timedelta(minutes=2)
CHECK_TIMEOUT = timedelta(minutes=3)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3)


@workflow.defn(name="DnsValidationWorkflow")
class DnsValidationWorkflow:
    def __init__(self) -> None:
        self._status = DnsValidationStatus()

    @workflow.query(name="status")
    def status(self) -> DnsValidationStatus:
        return self._status

    @workflow.run
    async def run(self, inp: DnsValidationInput) -> DnsValidationStatus:
        domains: list[str] = await workflow.execute_activity(
            "list_dns_targets", inp.tenant, start_to_close_timeout=LIST_TIMEOUT, retry_policy=RETRY,
            result_type=list[str])
        self._status.total = len(domains)
        gate = asyncio.Semaphore(max(1, inp.concurrency))
        summaries: list[dict[str, Any]] = []
        failed: list[str] = []

        async def one(domain: str) -> None:
            async with gate:
                try:
                    summary: dict[str, Any] = await workflow.execute_activity(
                        "check_dns_domain", domain, start_to_close_timeout=CHECK_TIMEOUT, retry_policy=RETRY,
                        result_type=dict)
                except ActivityError as exc:  # failed after its retries: report it, check the rest
                    failed.append(f"{domain}: {exc.cause or exc}")
                    self._status.errors += 1
                else:
                    summaries.append(summary)
                    state = summary.get("state")
                    if state == "pass":
                        self._status.passing += 1
                    elif state == "fail":
                        self._status.failing += 1
                    else:
                        self._status.unknown += 1
                self._status.done += 1

        await asyncio.gather(*(one(d) for d in domains))
        grouped = changes(summaries)
        self._status.changes = [f"{k}: {s['domain']}" for k, rows in grouped.items() for s in rows]
        text = change_alert_text(grouped, len(domains))
        if text or failed:
            title, body, severity = text or (f"DNS checks: {len(failed)} domain(s) could not be checked", "",
                                             "warning")
            if failed:
                body += ("\n" if body else "") + "Check errors:\n" + "\n".join(f"- {f}" for f in failed[:20])
            await workflow.execute_activity(
                "send_alert",
                Alert(key=f"dns-validation/{workflow.now():%Y-%m-%d}/{workflow.info().workflow_id}",
                      title=title, body=body, severity=severity),
                start_to_close_timeout=timedelta(minutes=1), retry_policy=RETRY)
        self._status.finished = True
        return self._status
