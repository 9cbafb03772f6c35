"""The engine's Temporal Schedules on any cluster: apply (create or update from the settings), list,
pause and unpause.

`apply_schedules` is what `email-engine schedules apply`, the worker unit's ExecStartPre and
`email-engine dev` run: it compares each installed Schedule with the one the settings describe
(models/schedules.py) and writes only what differs, keeping an operator's pause and its note.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from models import schedules as sm
from models.errors import Refused
from models.settings import Settings


@dataclass
class ApplyOutcome:
    name: str
    action: str  # created | updated | unchanged
    when: str
    changes: list[str] = field(default_factory=list)
    paused: bool = False
    note: str = ""

    def line(self) -> str:
        text = f"schedule {self.name}: {self.action} ({self.when})"
        if self.changes:
            text += ": " + "; ".join(self.changes)
        if self.paused:
            text += f" [paused: {self.note}]"
        return text


@dataclass
class ScheduleRow:
    name: str
    present: bool
    when: str = ""
    paused: bool = False
    note: str = ""
    next_run: str | None = None
    last_started: str | None = None
    last_workflow_id: str | None = None
    last_result: str | None = None  # the last run's workflow status: COMPLETED, FAILED, RUNNING, ...
    runs: int = 0


def wanted(settings: Settings, only: Sequence[str] | None = None) -> list[sm.ScheduleDef]:
    """The Schedules the settings describe (all of them, or the named ones)."""
    from models.dns_contracts import WORKFLOW_ID as DNS_WORKFLOW_ID
    from models.dns_contracts import DnsValidationInput
    from models.guard_contracts import RUN_WORKFLOW as GUARD_WORKFLOW
    from models.guard_contracts import GuardRunInput
    from models.scan_contracts import ScanInput
    from workflows.accounting import AccountingIngestInput
    from workflows.mailwizz_sync import MailwizzSyncInput

    q = settings.task_queue
    defs = [
        sm.ScheduleDef(sm.BLOCKLIST_SCAN, "BlocklistScanWorkflow", sm.BLOCKLIST_SCAN, q,
                       args=dataclasses.asdict(ScanInput(act_concurrency=settings.blocklist_act_concurrency)),
                       every_seconds=round(settings.blocklist_scan_interval_hours * 3600),
                       execution_timeout_seconds=2 * 3600,
                       note="blocklist scan of warming, active and quarantined IPs and their domains"),
        sm.ScheduleDef(sm.DNS_VALIDATION, "DnsValidationWorkflow", DNS_WORKFLOW_ID, q,
                       args=dataclasses.asdict(DnsValidationInput(concurrency=settings.dns_check_concurrency)),
                       daily_hour_utc=settings.dns_check_hour, time_zone="UTC",
                       note="daily SPF/DKIM/DMARC/PTR checks of every sending domain"),
        sm.ScheduleDef(sm.ACCOUNTING_INGEST, "AccountingIngestWorkflow", "accounting-ingest-run", q,
                       args=dataclasses.asdict(AccountingIngestInput()),
                       every_seconds=settings.accounting_ingest_interval_minutes * 60,
                       note="PowerMTA accounting over SFTP from every enabled MTA host"),
        sm.ScheduleDef(sm.MAILWIZZ_SYNC, "MailwizzSyncWorkflow", "mailwizz-sync", q,
                       args=dataclasses.asdict(MailwizzSyncInput()), every_seconds=3600, offset_seconds=1200,
                       note="hourly: MailWizz delivery-server check and campaign figures per tenant"),
        sm.ScheduleDef(sm.ACTIVE_GUARD, GUARD_WORKFLOW, sm.ACTIVE_GUARD, q, args=dataclasses.asdict(GuardRunInput()),
                       daily_hour_utc=settings.guard_hour, time_zone="UTC", execution_timeout_seconds=2 * 3600,
                       note="daily: every active IP's 7-day bounce and complaint rates; step down or pause on a "
                            "real excess"),
    ]
    if only:
        for name in only:
            if problem := sm.unknown_name(name):
                raise Refused(problem)
        defs = [d for d in defs if d.name in only]
    return defs


def build(d: sm.ScheduleDef, state: ScheduleState | None = None) -> Schedule:
    """The temporalio Schedule of a definition; `state` (an installed one's pause and note) is kept."""
    timeout = dt.timedelta(seconds=d.execution_timeout_seconds) if d.execution_timeout_seconds else None
    if d.daily_hour_utc is not None:
        spec = ScheduleSpec(calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(d.daily_hour_utc)],
                                                            minute=[ScheduleRange(0)], second=[ScheduleRange(0)])],
                            time_zone_name=d.time_zone or None)
    else:
        offset = dt.timedelta(seconds=d.offset_seconds) if d.offset_seconds else None
        spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=dt.timedelta(seconds=d.every_seconds or 0),
                                                            offset=offset)],
                            time_zone_name=d.time_zone or None)
    return Schedule(
        action=ScheduleActionStartWorkflow(d.workflow, d.args, id=d.workflow_id, task_queue=d.task_queue,
                                           execution_timeout=timeout),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy[d.overlap.upper()]),
        state=state or ScheduleState(note=d.note),
    )


async def _args(client: Client, payloads: Sequence[Any]) -> dict[str, Any]:
    raw = [p for p in payloads if isinstance(p, Payload)]
    if len(raw) != 1:
        return {"(arguments)": len(payloads)}
    codec = client.data_converter.payload_codec
    if codec is not None:
        raw = list(await codec.decode(raw))
    try:
        value = json.loads(raw[0].data)
    except ValueError:
        return {"(undecodable)": raw[0].metadata.get("encoding", b"").decode()}
    return value if isinstance(value, dict) else {"(not an object)": value}


def _seconds(value: dt.timedelta | None) -> int | None:
    return None if value is None else round(value.total_seconds())


async def installed(client: Client, name: str, desc: ScheduleDescription) -> sm.ScheduleDef:
    """An installed Schedule read back into the shape of a definition; shapes the engine never writes
    (cron strings, several intervals, other calendars) come back as values that differ from any want."""
    sched = desc.schedule
    action = sched.action
    if not isinstance(action, ScheduleActionStartWorkflow):
        return sm.ScheduleDef(name, f"({type(action).__name__})", "", "")
    spec = sched.spec
    every: int | None = None
    offset = 0
    hour: int | None = None
    if len(spec.intervals) == 1 and not spec.calendars and not spec.cron_expressions:
        every = _seconds(spec.intervals[0].every)
        offset = _seconds(spec.intervals[0].offset) or 0
    elif len(spec.calendars) == 1 and not spec.intervals and not spec.cron_expressions:
        cal = spec.calendars[0]
        daily = (len(cal.hour) == 1 and cal.hour[0].start == cal.hour[0].end
                 and [(r.start, r.end) for r in cal.minute] == [(0, 0)]
                 and [(r.start, r.end) for r in cal.second] == [(0, 0)]
                 and [(r.start, r.end) for r in cal.day_of_week] in ([], [(0, 6)])
                 and [(r.start, r.end) for r in cal.day_of_month] in ([], [(1, 31)])
                 and [(r.start, r.end) for r in cal.month] in ([], [(1, 12)]) and not cal.year)
        hour = cal.hour[0].start if daily else -1
    else:
        every = -1
    workflow = action.workflow if isinstance(action.workflow, str) else getattr(action.workflow, "__name__", "?")
    return sm.ScheduleDef(
        name, workflow, action.id, action.task_queue, args=await _args(client, action.args),
        every_seconds=every, offset_seconds=offset, daily_hour_utc=hour,
        execution_timeout_seconds=_seconds(action.execution_timeout),
        overlap=sched.policy.overlap.name.lower(), time_zone=spec.time_zone_name or "",
        note=sched.state.note or "")


async def describe(client: Client, name: str) -> ScheduleDescription | None:
    """The installed Schedule, or None when there is none by that id."""
    try:
        return await client.get_schedule_handle(name).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def apply_schedules(client: Client, settings: Settings, *, dry_run: bool = False,
                          only: Sequence[str] | None = None) -> list[ApplyOutcome]:
    """Create the missing Schedules, update the ones that differ from the settings, leave the rest;
    idempotent. A paused Schedule stays paused with its note. `dry_run`: report, change nothing."""
    outcomes = []
    for want in wanted(settings, only):
        handle = client.get_schedule_handle(want.name)
        desc = await describe(client, want.name)
        if desc is None:
            if not dry_run:
                try:
                    await client.create_schedule(want.name, build(want))
                except ScheduleAlreadyRunningError:  # created meanwhile by another apply: compare again
                    desc = await describe(client, want.name)
            if desc is None:
                outcomes.append(ApplyOutcome(want.name, "created", want.when()))
                continue
        have = await installed(client, want.name, desc)
        changes = sm.differences(want, have)
        state = desc.schedule.state
        if changes and not dry_run:
            def update(inp: ScheduleUpdateInput, want: sm.ScheduleDef = want) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=build(want, inp.description.schedule.state))

            await handle.update(update)
        outcomes.append(ApplyOutcome(want.name, "updated" if changes else "unchanged", want.when(), changes,
                                     state.paused, state.note or ""))
    return outcomes


async def _last_result(client: Client, workflow_id: str, run_id: str | None) -> str:
    try:
        info = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return "UNKNOWN (history gone)"
        raise
    return info.status.name if info.status is not None else "UNKNOWN"


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None


async def list_schedules(client: Client, settings: Settings) -> list[ScheduleRow]:
    """Each of the engine's Schedules: installed or not, paused (and why), next run, last run's result."""
    rows = []
    for want in wanted(settings):
        desc = await describe(client, want.name)
        if desc is None:
            rows.append(ScheduleRow(want.name, present=False, when=want.when()))
            continue
        have = await installed(client, want.name, desc)
        info, state = desc.info, desc.schedule.state
        row = ScheduleRow(want.name, True, have.when(), state.paused, state.note or "",
                          _iso(info.next_action_times[0]) if info.next_action_times else None,
                          runs=info.num_actions)
        if info.recent_actions:
            last = info.recent_actions[-1]
            row.last_started = _iso(last.started_at)
            action = last.action
            wid = getattr(action, "workflow_id", None)
            if wid:
                row.last_workflow_id = wid
                row.last_result = await _last_result(client, wid, getattr(action, "first_execution_run_id", None))
        rows.append(row)
    return rows


def _reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise Refused("a reason is required (--reason): it is shown beside the Schedule in the Web UI")
    return reason


async def _installed_handle(client: Client, name: str) -> Any:
    if problem := sm.unknown_name(name):
        raise Refused(problem)
    if await describe(client, name) is None:
        raise Refused(f"Schedule {name!r} is not installed: run `email-engine schedules apply`")
    return client.get_schedule_handle(name)


async def pause_schedule(client: Client, name: str, reason: str, actor: str = "operator") -> str:
    """Pause one Schedule (its runs stop until unpaused); the note says who and why."""
    note = f"paused by {actor}: {_reason(reason)}"
    await (await _installed_handle(client, name)).pause(note=note)
    return note


async def unpause_schedule(client: Client, name: str, reason: str, actor: str = "operator") -> str:
    note = f"unpaused by {actor}: {_reason(reason)}"
    await (await _installed_handle(client, name)).unpause(note=note)
    return note
