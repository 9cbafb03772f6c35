"""DnsValidationWorkflow: check every sending domain's DNS authentication, alert on changes.

Run daily by the Temporal Schedule "dns-validation" (EMAIL_ENGINE_DNS_CHECK_HOUR, UTC; installed by
client/schedules.py, `email-engine schedules apply`), or on demand.

The domains are checked in batches: the activity "check_dns_batch" reads a page of domains from the
database by id (after the previous page's last id), checks them with bounded concurrency and persists
each result (what the DNS gate reads); only counts and the state changes come back, so the names of a
10,000-domain fleet never travel through Temporal. After `batches_per_run` batches (or earlier when
the server suggests it) the workflow continues as new with its progress (counts, cursor, changes
capped at 50 per kind): a run's history stays about six events per batch whatever the fleet's size.
The "status" query shows the progress across runs. One alert at the very end summarizes every change
of state (newly failing, not checkable, recovered) and the domains that could not be checked; a day
without changes sends nothing.

Runs that started before the batches (BATCH_PATCH absent) replay their per-domain path unchanged.

Webhooks (issue 15): a batch queues one `dns.failed` event per failing domain in the transaction that
records its check (activities/dns_checks.py; id: the validation's day, domain, IP and failing checks),
so domain names still never cross Temporal; the run then wakes the receivers (before continuing as new
and at the end), only when a batch queued something. The wake is under the patch of
workflows/webhook_events.py: histories recorded before it (tests/data/dns-validation-history-v2-*.json)
replay unchanged.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert
    from models.dns_auth import change_alert_text, changes
    from models.dns_contracts import (
        DnsBatchRequest,
        DnsBatchResult,
        DnsProgress,
        DnsSpan,
        DnsValidationInput,
        DnsValidationStatus,
    )
    from models.dns_progress import add_batch, summary_alert
    from workflows import activity_options as opt
    from workflows.webhook_events import wake_receivers

#: Validations from here on check pages of domains and continue as new (issue 14).
BATCH_PATCH = "dns-validation-batches"
# Timeouts and retries: the DNS_* policies of workflows/activity_options.py.


@workflow.defn(name="DnsValidationWorkflow")
class DnsValidationWorkflow:
    @workflow.init
    def __init__(self, inp: DnsValidationInput) -> None:
        self._progress = inp.progress or DnsProgress()

    @workflow.query(name="status")
    def status(self) -> DnsValidationStatus:
        return self._progress.status

    @workflow.run
    async def run(self, inp: DnsValidationInput) -> DnsValidationStatus:
        if not workflow.patched(BATCH_PATCH):
            return await self._per_domain(inp)
        p = self._progress
        st = p.status
        st.runs += 1
        if inp.progress is None:
            span: DnsSpan = await workflow.execute_activity(
                "dns_target_span", inp.tenant, result_type=DnsSpan, start_to_close_timeout=opt.DNS_DB_START_TO_CLOSE,
                schedule_to_close_timeout=opt.DNS_SCHEDULE_TO_CLOSE, retry_policy=opt.DNS_RETRY)
            st.total, p.last_id, p.day = span.total, span.last_id, f"{workflow.now():%Y-%m-%d}"
        batches = queued = 0
        while p.cursor < p.last_id:
            if batches >= max(1, inp.batches_per_run) or (batches and workflow.info().is_continue_as_new_suggested()):
                if queued:
                    await wake_receivers()
                workflow.continue_as_new(replace(inp, progress=p))
            try:
                batch: DnsBatchResult = await workflow.execute_activity(
                    "check_dns_batch",
                    DnsBatchRequest(inp.tenant, p.cursor, p.last_id, max(1, inp.batch_size), inp.concurrency,
                                    day=p.day),
                    result_type=DnsBatchResult, start_to_close_timeout=opt.DNS_BATCH_START_TO_CLOSE,
                    heartbeat_timeout=opt.DNS_BATCH_HEARTBEAT, schedule_to_close_timeout=opt.DNS_SCHEDULE_TO_CLOSE,
                    retry_policy=opt.DNS_RETRY)
            except ActivityError as err:  # the database stayed down past the budget: report what was done
                st.errors += 1
                p.failures.append(f"checks stopped after {st.done} of {st.total} domains: {err.cause or err}")
                queued += 1  # its attempts may have queued events before failing
                break
            add_batch(p, batch)
            queued += batch.webhooks
            batches += 1
            if not batch.more:
                break
        if queued:
            await wake_receivers()
        text = summary_alert(p)
        if text:
            title, body, severity = text
            await workflow.execute_activity(
                "send_alert",
                Alert(key=f"dns-validation/{p.day}/{workflow.info().workflow_id}", title=title, body=body,
                      severity=severity),
                start_to_close_timeout=opt.DNS_ALERT_START_TO_CLOSE,
                schedule_to_close_timeout=opt.DNS_ALERT_SCHEDULE_TO_CLOSE, retry_policy=opt.DNS_ALERT_RETRY)
        st.finished = True
        return st

    async def _per_domain(self, inp: DnsValidationInput) -> DnsValidationStatus:
        """Before BATCH_PATCH: every name through Temporal and one activity per domain, in one run.
        Kept so that a validation running across the upgrade replays; new runs never take this path."""
        status = self._progress.status
        domains: list[str] = await workflow.execute_activity(
            "list_dns_targets", inp.tenant, start_to_close_timeout=opt.DNS_V1_LIST_START_TO_CLOSE,
            retry_policy=opt.DNS_V1_RETRY, result_type=list[str])
        status.total = len(domains)
        gate = asyncio.Semaphore(max(1, inp.concurrency))
        summaries: list[dict[str, Any]] = []
        failed: list[str] = []

        async def one(domain: str) -> None:
            async with gate:
                try:
                    summary: dict[str, Any] = await workflow.execute_activity(
                        "check_dns_domain", domain, start_to_close_timeout=opt.DNS_V1_CHECK_START_TO_CLOSE,
                        retry_policy=opt.DNS_V1_RETRY, result_type=dict)
                except ActivityError as exc:  # failed after its retries: report it, check the rest
                    failed.append(f"{domain}: {exc.cause or exc}")
                    status.errors += 1
                else:
                    summaries.append(summary)
                    state = summary.get("state")
                    if state == "pass":
                        status.passing += 1
                    elif state == "fail":
                        status.failing += 1
                    else:
                        status.unknown += 1
                status.done += 1

        await asyncio.gather(*(one(d) for d in domains))
        grouped = changes(summaries)
        status.changes = [f"{k}: {s['domain']}" for k, rows in grouped.items() for s in rows]
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
                start_to_close_timeout=opt.DNS_ALERT_START_TO_CLOSE, retry_policy=opt.DNS_V1_RETRY)
        status.finished = True
        return status
