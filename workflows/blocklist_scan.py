"""BlocklistScanWorkflow: the scheduled blocklist scan (Temporal Schedule, every 4 h by default).

Scans every warming, active and quarantined IP and its domain and compares the answers with the database
(pure rule models.failover.scan_decision) in one activity, "blocklist_fleet_scan": answers and decisions
stay in the database, only counts and the decisions that act come back (paged by size,
"blocklist_scan_page"), so a 100,000-IP fleet's scan stays far below Temporal's payload limit. Then acts:
- a new listing of a warming/active IP starts its FailoverSaga (with the tenant's other new listings of
  this scan as breaker evidence, and the blast-radius hold when they are too many: one decision per
  scan and tenant, models.failover.tenant_scan_decisions); a quarantined IP whose failover never
  completed gets its saga again (same id: it joins a running one, or finishes a failed one) through the activity
  "start_failover_saga" (client start with USE_EXISTING). Not a child workflow: a child start has no
  id-conflict policy (a second detection would fail instead of joining the running saga), and the
  saga must outlive the scan whatever the parent close policy; the activity runs the client's
  start_saga (client/failovers.py), so a manual and a scheduled detection join the same saga;
- a quarantined IP whose quarantine is over: clean -> resting, then re-warm ("start_ip_warmup");
  still listed -> quarantine extended; listed again after the maximum extensions -> retiring + alert.
Zones that failed their self-test are reported (alert) and their answers never act.
Webhooks (issue 15, patched): `blocklist.listed` for each new listing that starts a saga, `ip.retired`.

Page by page (PAGED_PATCH): the decisions are acted on one page at a time, and between pages the scan
continues as new (after `pages_per_run` pages, when the server suggests it, or past MAX_RUN_EVENTS)
carrying only ScanProgress: the summary with capped lists (its pages_done is the cursor), the broken
zones' names and the last tenants alerted; pools of joined failovers are deployed before each run ends,
so nothing carried grows with the fleet. Every decision was taken by the scan activity before the
first page, so the breaker evidence and the blast radius stay one decision per scan and tenant
whatever the runs; the blast-radius alert goes out at the tenant's first held decision, the
broken-zones and problems alerts once, at the end of the last run. The `summary` query shows the
progress across runs. Scans recorded before the patch (all pages first, then acting) replay unchanged.

Concurrently (CONCURRENT_ACT_PATCH): a page's decisions are acted on at most ScanInput.act_concurrency
at a time (a semaphore over asyncio.gather: the workflow's event loop is deterministic, so the commands
replay in the same order). Nothing orders one decision after another: each concerns its own IP and saga
id, the breaker evidence and blast radius were decided for the whole scan by the activity, the
blast-radius alert goes with the tenant's first held decision (chosen in page order before acting), and
joined pools are deployed at the end of the run as before. Each decision's effects enter the summary in
page order, as soon as every decision before it is done, so the summary (and the `summary` query at any
point) is the one acting one at a time would give, whatever order the activities complete in. A continue
as new waits for the whole page. Runs recorded before the patch act one at a time (a bound of 1: the
same commands, in the same order, as the loop they ran).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import Alert
    from activities.blocklists import ScanReport, ScanRequest, ScanTarget
    from activities.failover import EvaluateRequest, QuarantineAction
    from models.deploys import DeployOutcome, DeployPoolRequest
    from models.failover import ScanAction, ScanDecision
    from models.failover_contracts import StartSagaRequest, StartSagaResult
    from models.scan_contracts import (
        FleetScanRequest,
        ScanInput,
        ScanOutcome,
        ScanPageRequest,
        ScanProgress,
        ScanSummary,
        act_limit,
    )
    from models.scan_progress import blast_radius_alert, first_blast_alert, problems_text, remember
    from models.warmup_contracts import StartWarmupRequest
    from workflows import activity_options as opt
    from workflows.webhook_events import emit

# Timeouts and retries: the SCAN_* policies of workflows/activity_options.py.
#: Scans from here on run "blocklist_fleet_scan" (issue 14); earlier histories replay the three activities.
FLEET_SCAN_PATCH = "fleet-scan-one-activity"
#: Scans from here on act page by page and continue as new between pages; earlier histories replay the
#: path that reads every page first.
PAGED_PATCH = "scan-pages-continue-as-new"
#: Runs from here on act on a page's decisions concurrently (ScanInput.act_concurrency); runs recorded
#: before it replay one decision at a time.
CONCURRENT_ACT_PATCH = "scan-act-concurrently"
#: What acting on one decision adds to the summary: (list name, entry), models.scan_progress.remember.
Notes = list[tuple[str, str]]
#: A run continues as new past this many events even unsuggested (the time-skipping server never
#: suggests; a default server does at 4,096 events), below the 10,240-event warning.
MAX_RUN_EVENTS = 8000


@workflow.defn(name="BlocklistScanWorkflow")
class BlocklistScanWorkflow:
    @workflow.init
    def __init__(self, inp: ScanInput) -> None:
        self._progress = inp.progress or ScanProgress()
        self._summary = self._progress.summary
        self._phase = "act" if inp.progress else "starting"
        #: Tenants with a quarantined IP whose running saga this run joined: their pool is deployed once,
        #: at the end of the run.
        self._converge: set[str] = set()

    @workflow.query
    def summary(self) -> ScanSummary:
        return self._summary

    @workflow.query
    def phase(self) -> str:
        return self._phase

    @workflow.run
    async def run(self, inp: ScanInput) -> ScanSummary:
        wid = workflow.info().workflow_id
        if inp.progress is not None:  # a later run: only the paged path continues as new
            return await self._paged(inp, wid, None)
        if not workflow.patched(FLEET_SCAN_PATCH):
            decisions, broken_keys = await self._report_scan(inp, wid)
        elif not workflow.patched(PAGED_PATCH):
            decisions, broken_keys = await self._fleet_scan(inp, wid)
        else:
            return await self._paged(inp, wid, await self._scan(inp, wid))
        # Before PAGED_PATCH: every decision in this run, then the blast-radius summaries.
        self._phase = "act"
        for d in decisions:
            self._remember(await self._act_or_report(d, wid))
        await self._blast_radius_alerts(decisions, wid)
        self._progress.broken_keys = broken_keys
        return await self._finish(wid)

    async def _paged(self, inp: ScanInput, wid: str, out: ScanOutcome | None) -> ScanSummary:
        """Act on the decisions page by page from the cursor (summary.pages_done); continue as new
        between pages when the run's history has grown."""
        p, s = self._progress, self._summary
        s.runs += 1
        page = list(out.decisions) if out is not None else None  # page 0 came with the scan's result
        if out is not None:
            s.pages, s.actions, p.broken_keys = out.pages, out.actions, list(out.broken_zones)
        self._phase = "act"
        limit = act_limit(inp.act_concurrency) if workflow.patched(CONCURRENT_ACT_PATCH) else 1
        pages_here = 0
        while s.pages_done < s.pages:
            if pages_here and self._history_grown(inp, pages_here):
                await self._deploy_joined(wid)
                workflow.continue_as_new(replace(inp, progress=p))
            if page is None:
                try:
                    page = await self._page(wid, s.pages_done)
                except ActivityError as err:  # the database stayed down past the budget: report what was done
                    remember(s, "problems", f"decision page {s.pages_done} of {s.pages} unreadable, "
                                            f"{s.actions - s.acted} decisions not acted on: {err.cause or err}")
                    break
            await self._act_on_page(page, wid, limit)
            s.pages_done += 1
            pages_here += 1
            page = None
        return await self._finish(wid)

    async def _act_on_page(self, page: list[ScanDecision], wid: str, limit: int) -> None:
        """Act on a page's decisions, at most `limit` at a time; each one's effects enter the summary in
        page order, once the decisions before it are done (see the module docstring)."""
        p, s = self._progress, self._summary
        # The tenant's first held decision of the scan sends the blast-radius alert: chosen in page order.
        alert = [bool(d.blast_radius) and first_blast_alert(p, d.tenant) for d in page]
        done: list[Notes | None] = [None] * len(page)
        slots = asyncio.Semaphore(limit)
        shown = 0  # decisions of the page whose effects are in the summary

        async def act(i: int) -> None:
            nonlocal shown
            d = page[i]
            async with slots:
                notes = await self._act_or_report(d, wid)
                if alert[i]:
                    await self._alert(f"{wid}/blast-radius/{d.tenant}", *blast_radius_alert(d), "critical")
            done[i] = notes
            while shown < len(page) and (ready := done[shown]) is not None:
                self._remember(ready)
                s.acted += 1
                shown += 1

        await asyncio.gather(*(act(i) for i in range(len(page))))

    def _remember(self, notes: Notes) -> None:
        for name, value in notes:
            remember(self._summary, name, value)

    @staticmethod
    def _history_grown(inp: ScanInput, pages_here: int) -> bool:
        info = workflow.info()
        return (pages_here >= max(1, inp.pages_per_run) or info.is_continue_as_new_suggested()
                or info.get_current_history_length() >= MAX_RUN_EVENTS)

    async def _finish(self, wid: str) -> ScanSummary:
        """The end of the scan (its last run): pools of joined unfinished failovers, then one alert for
        the broken zones and one for the actions that failed."""
        s = self._summary
        await self._deploy_joined(wid)
        if s.broken_zones:
            await self._alert(f"blocklist-scan/broken/{','.join(sorted(self._progress.broken_keys))}",
                              "Blocklist zones failed their self-test",
                              "Their answers were ignored in this scan:\n" + "\n".join(s.broken_zones), "warning")
        if s.problems:
            await self._alert(f"{wid}/problems", "Blocklist scan: actions failed", problems_text(s), "critical")
        self._phase = "done"
        return s

    async def _deploy_joined(self, wid: str) -> None:
        """Deploy the pools of tenants whose running, unfinished failover this run joined: a saga that
        started on earlier code may hold with its quarantined IP still in the pool (a no-op when the MTA
        already agrees with the database). At the end of each run, so nothing of it is carried."""
        s = self._summary
        for tenant in sorted(self._converge):
            try:
                out: DeployOutcome = await workflow.execute_activity(
                    "deploy_tenant_pool", DeployPoolRequest(tenant, "quarantined IPs of unfinished failovers out of "
                                                            "the pool", wid),
                    result_type=DeployOutcome, start_to_close_timeout=opt.DEPLOY_START_TO_CLOSE,
                    heartbeat_timeout=opt.SCAN_DEPLOY_HEARTBEAT, schedule_to_close_timeout=opt.SCAN_SCHEDULE_TO_CLOSE,
                    retry_policy=opt.SCAN_DEPLOY_RETRY)
                remember(s, "deployed", f"{tenant}: {out.host} generation {out.generation}")
            except ActivityError as err:
                remember(s, "problems", f"deploy of {tenant}'s pool: {err.cause or err}")
        self._converge.clear()

    async def _scan(self, inp: ScanInput, wid: str) -> ScanOutcome:
        """One activity scans, evaluates and records; only counts and the decisions that act come back
        (the first page inline)."""
        s = self._summary
        self._phase = "scan"
        out: ScanOutcome = await workflow.execute_activity(
            "blocklist_fleet_scan", FleetScanRequest(inp.tenant, wid, page_bytes=max(1, inp.page_bytes)),
            result_type=ScanOutcome, start_to_close_timeout=opt.SCAN_START_TO_CLOSE,
            schedule_to_close_timeout=opt.SCAN_FLEET_SCHEDULE_TO_CLOSE, heartbeat_timeout=opt.SCAN_HEARTBEAT,
            retry_policy=opt.SCAN_RETRY)
        s.targets, s.queries, s.listed, s.broken_zones = out.targets, out.queries, out.listed, list(out.broken)
        return out

    async def _page(self, wid: str, page: int) -> list[ScanDecision]:
        decisions: list[ScanDecision] = await workflow.execute_activity(
            "blocklist_scan_page", ScanPageRequest(wid, page), result_type=list[ScanDecision],
            start_to_close_timeout=opt.SCAN_DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
            schedule_to_close_timeout=opt.SCAN_SCHEDULE_TO_CLOSE, retry_policy=opt.SCAN_DB_RETRY)
        return decisions

    async def _fleet_scan(self, inp: ScanInput, wid: str) -> tuple[list[ScanDecision], list[str]]:
        """Before PAGED_PATCH: the scan, then every page, before acting. Kept so that a scan running
        across the upgrade replays; new scans never take this path."""
        out = await self._scan(inp, wid)
        self._phase = "evaluate"
        decisions = list(out.decisions)
        for page in range(1, out.pages):
            decisions += await self._page(wid, page)
        return decisions, list(out.broken_zones)

    async def _report_scan(self, inp: ScanInput, wid: str) -> tuple[list[ScanDecision], list[str]]:
        """Before FLEET_SCAN_PATCH: targets, the whole report, then its evaluation, each through Temporal.
        Kept so that a scan running across the upgrade replays; new scans never take this path."""
        s = self._summary
        self._phase = "targets"
        targets: list[ScanTarget] = await workflow.execute_activity(
            "blocklist_scan_targets", inp.tenant, result_type=list[ScanTarget],
            start_to_close_timeout=opt.SCAN_DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
            schedule_to_close_timeout=opt.SCAN_SCHEDULE_TO_CLOSE, retry_policy=opt.SCAN_DB_RETRY)
        s.targets = len(targets)
        self._phase = "scan"
        report: ScanReport = await workflow.execute_activity(
            "scan_blocklists", ScanRequest(targets), result_type=ScanReport,
            start_to_close_timeout=opt.SCAN_START_TO_CLOSE, heartbeat_timeout=opt.SCAN_HEARTBEAT,
            retry_policy=opt.SCAN_V1_RETRY)
        s.queries, s.listed = report.queries, report.listed
        s.broken_zones = [f"{b.zone_name}: {b.reason}" for b in report.broken]
        self._phase = "evaluate"
        decisions: list[ScanDecision] = await workflow.execute_activity(
            "blocklist_evaluate_scan", EvaluateRequest(report, wid), result_type=list[ScanDecision],
            start_to_close_timeout=opt.SCAN_DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
            schedule_to_close_timeout=opt.SCAN_SCHEDULE_TO_CLOSE, retry_policy=opt.SCAN_DB_RETRY)
        return decisions, [b.zone for b in report.broken]

    async def _blast_radius_alerts(self, decisions: list[ScanDecision], wid: str) -> None:
        """Before PAGED_PATCH: one urgent summary per tenant over its blast radius, after every action
        (each held saga also alerts, with buttons)."""
        held: dict[str, list[ScanDecision]] = {}
        for d in decisions:
            if d.blast_radius:
                held.setdefault(d.tenant, []).append(d)
        for tenant, ds in sorted(held.items()):
            zones = sorted({lst.zone for d in ds for lst in d.listings})
            await self._alert(f"{wid}/blast-radius/{tenant}",
                              f"Blast radius: {len(ds)} IPs of {tenant} listed by one scan, none quarantined",
                              "\n".join([ds[0].blast_radius or "", f"Zones: {', '.join(zones)}",
                                          f"IPs: {', '.join(d.address for d in ds)}",
                                          "Each failover is held and the IPs still send: check the zone, then "
                                          "approve or deny each (`email-engine failover list`). No answer means "
                                          "deny."]), "critical")

    async def _alert(self, key: str, title: str, body: str, severity: str) -> None:
        try:
            await workflow.execute_activity("send_alert", Alert(key=key, title=title, body=body, severity=severity),
                                            start_to_close_timeout=opt.SCAN_ALERT_START_TO_CLOSE,
                                            schedule_to_close_timeout=opt.SCAN_ALERT_SCHEDULE_TO_CLOSE,
                                            retry_policy=opt.SCAN_ALERT_RETRY)
        except ActivityError:
            workflow.logger.exception("alert %s could not be sent", key)

    async def _act_or_report(self, d: ScanDecision, wid: str) -> Notes:
        """Act on one decision; what it adds to the summary (a failure after retries is a problem)."""
        notes: Notes = []
        try:
            await self._act(d, wid, notes)
        except ActivityError as err:
            notes.append(("problems", f"{d.address} {d.action.value}: {err.cause or err}"))
        return notes

    async def _act(self, d: ScanDecision, wid: str, notes: Notes) -> None:
        if d.action in (ScanAction.START_SAGA, ScanAction.RESUME_SAGA):
            by = f"scan {wid}" + (" (failover not completed: run again)" if d.action == ScanAction.RESUME_SAGA else "")
            res: StartSagaResult = await workflow.execute_activity(
                "start_failover_saga", StartSagaRequest(d.tenant, d.address, list(d.listings), by,
                                                        same_scan=list(d.same_scan), blast_radius=d.blast_radius),
                result_type=StartSagaResult, start_to_close_timeout=opt.SCAN_DB_START_TO_CLOSE,
                heartbeat_timeout=opt.HEARTBEAT, schedule_to_close_timeout=opt.SCAN_SCHEDULE_TO_CLOSE,
                retry_policy=opt.SCAN_DB_RETRY)
            notes.append(("sagas", res.workflow_id))
            if d.action == ScanAction.START_SAGA:
                await emit("blocklist.listed", {
                    "tenant": d.tenant, "ip": d.address, "failover": res.workflow_id,
                    "listings": [{"zone": lst.zone, "target": lst.target, "code": lst.code, "meaning": lst.meaning,
                                  "delist_url": lst.delist_url} for lst in d.listings]})
            if res.joined and d.action == ScanAction.RESUME_SAGA:
                self._converge.add(d.tenant)
        elif d.action in (ScanAction.EXTEND, ScanAction.RETIRE, ScanAction.REST_AND_REWARM):
            changed: bool = await workflow.execute_activity(
                "blocklist_quarantine_action", QuarantineAction(d.address, d.action.value, list(d.listings), wid),
                result_type=bool, start_to_close_timeout=opt.SCAN_DB_START_TO_CLOSE, heartbeat_timeout=opt.HEARTBEAT,
                schedule_to_close_timeout=opt.SCAN_SCHEDULE_TO_CLOSE, retry_policy=opt.SCAN_DB_RETRY)
            if not changed:
                return
            if d.action == ScanAction.EXTEND:
                notes.append(("extended", d.address))
            elif d.action == ScanAction.RETIRE:
                notes.append(("retired", d.address))
                await self._alert(f"retire/{d.address}", f"{d.tenant}: {d.address} retiring",
                                  f"{d.address} ({d.tenant}) was {d.detail}: "
                                  f"{'; '.join(lst.describe() for lst in d.listings)}. It is retiring and will not "
                                  "send again; replace it in the inventory.", "critical")
                await emit("ip.retired", {"tenant": d.tenant, "ip": d.address, "reason": d.detail,
                                          "listings": [lst.describe() for lst in d.listings]})
            else:
                try:
                    await workflow.execute_activity(
                        "start_ip_warmup", StartWarmupRequest(d.address, "re-warm after quarantine (clean)", wid),
                        result_type=str, start_to_close_timeout=opt.DB_START_TO_CLOSE,
                        schedule_to_close_timeout=opt.SCAN_SCHEDULE_TO_CLOSE, retry_policy=opt.SCAN_REWARM_RETRY)
                    notes.append(("rewarming", d.address))
                except ActivityError as err:
                    await self._alert(f"rewarm/{d.address}", f"{d.tenant}: {d.address} resting, re-warm refused",
                                      f"{d.address} left quarantine clean and is resting, but its warmup could not "
                                      f"start: {err.cause or err}", "warning")
