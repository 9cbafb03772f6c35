"""Activities of the guard on active IPs (issue 15; rules in models/active_guard.py, record in
models/guard_tables.py): plan a day, apply one step, record an operator's answer, restore a paused IP.

Every change states what it expects (the IP active, the step planned or approved) and is idempotent:
a retried or replayed call finds its work done and changes nothing. Every status change writes a
StatusChange audit row whose actor is the step's workflow id.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, or_, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import session_scope
from activities.keepalive import heartbeating
from activities.warmup import tenant_schedule_and_thresholds
from models import guard_tables as gt
from models import names
from models.active_guard import (
    CapacityBudget,
    GuardAction,
    GuardPolicy,
    GuardVerdict,
    Judgement,
    StepCandidate,
    decide,
    plan_steps,
    policy_for,
    step_quota,
)
from models.enums import SENDING_STATUSES, IpStatus, WarmupPhase
from models.errors import Refused
from models.guard_contracts import GuardPlan, GuardStepInput, IpFigures, TenantPlan, step_workflow_id
from models.guard_tables import GuardStep
from models.schedule import default_weight
from models.settings import get_settings
from models.tables import DailyStat, SendingIp, StatusChange, Tenant, utcnow
from models.warmup import GATE_WINDOW_DAYS, DayStats, gate_window, window_stats

#: A held step older than the approval timeout plus this is stale (its workflow is gone): not waited for.
HELD_GRACE = dt.timedelta(days=1)


def defaults() -> GuardPolicy:
    s = get_settings()
    return GuardPolicy(GuardAction(s.guard_action), s.guard_step_down_phase, s.guard_max_capacity_loss_share)


def _figures(tenant: str, ip: SendingIp, j: Judgement | None, skipped: str = "") -> IpFigures:
    out = IpFigures(tenant=tenant, address=ip.address, quota=ip.daily_quota, skipped=skipped)
    if j is None:
        return out
    ev, st = j.evaluation, j.evaluation.stats

    def bounds(lower: float | None, upper: float | None) -> list[float] | None:
        return None if lower is None or upper is None else [lower, upper]

    out.verdict, out.reason = j.verdict.value, j.reason
    out.sent, out.delivered, out.bounced, out.complaints, out.required = (st.sent, st.delivered, st.bounced,
                                                                          st.complaints, ev.required)
    out.bounce_rate, out.bounce_bounds = ev.bounce.rate, bounds(ev.bounce.lower, ev.bounce.upper)
    out.complaint_rate, out.complaint_bounds = ev.complaint.rate, bounds(ev.complaint.lower, ev.complaint.upper)
    out.max_bounce_rate, out.max_complaint_rate, out.confidence = ev.bounce.limit, ev.complaint.limit, ev.confidence
    return out


@dataclass
class GuardPlanRequest:
    day: str  # ISO date: the run's today (the window is the 7 full days before it)
    tenant: str | None = None
    workflow_id: str = ""  # the run recording the steps (its own rows are its steps again on a retry)
    dry_run: bool = False
    #: every active IP's figures in the plan (the CLI's dry run); else only the notable ones (see TenantPlan)
    detail: bool = False


def _notable(f: IpFigures) -> bool:
    quiet = (GuardVerdict.OK.value, GuardVerdict.HOLD_INSUFFICIENT_DATA.value)
    return bool(f.step or f.skipped) or f.verdict not in quiet


def _windows(session: Session, ips: list[SendingIp], first: dt.date, last: dt.date) -> dict[int, list[DayStats]]:
    days: dict[int, list[DayStats]] = defaultdict(list)
    ids = [ip.id for ip in ips if ip.id is not None]
    if not ids:
        return days
    for r in session.exec(select(DailyStat).where(col(DailyStat.ip_id).in_(ids), col(DailyStat.day) >= first,
                                                  col(DailyStat.day) <= last)):
        # a day with opens recorded counts as measured even if its writer did not set the flag (as the gate)
        days[r.ip_id].append(DayStats(r.day, r.sent, r.delivered, r.bounced, r.complaints, r.opens,
                                      r.opens_measured or r.opens > 0))
    return days


def _kept(session: Session, tenant_id: int, today: dt.date) -> dict[int, GuardStep]:
    """Earlier steps that still stand for their IP: a hold waiting for an operator, or a step an operator
    denied or undid while the evidence window still holds the day of that decision."""
    s = get_settings()
    held_since = utcnow() - dt.timedelta(hours=s.guard_approval_timeout_hours) - HELD_GRACE
    decided_since = dt.datetime.combine(today - dt.timedelta(days=GATE_WINDOW_DAYS), dt.time(0), tzinfo=dt.UTC)
    rows = session.exec(select(GuardStep).where(
        GuardStep.tenant_id == tenant_id, GuardStep.day < today,
        or_((col(GuardStep.status) == gt.HELD) & (col(GuardStep.created_at) >= held_since),
            col(GuardStep.status).in_([gt.DENIED, gt.UNDONE]) & (col(GuardStep.decided_at) >= decided_since)))
        .order_by(col(GuardStep.id)))
    return {r.ip_id: r for r in rows}


def _why_kept(r: GuardStep) -> str:
    if r.status == gt.HELD:
        return f"{r.action} of {r.day} held for an operator ({r.step_workflow_id})"
    until = (r.decided_at or utcnow()).date() + dt.timedelta(days=GATE_WINDOW_DAYS)
    return (f"{r.action} of {r.day} {r.status} by {r.decided_by or 'an operator'}: not acted on again before "
            f"{until + dt.timedelta(days=1)} (the window still holds the day of that decision)")


def _step_input(tenant: str, address: str, row: GuardStep, run_id: str) -> GuardStepInput:
    s = get_settings()
    return GuardStepInput(
        tenant=tenant, address=address, day=row.day.isoformat(), action=row.action, to_phase=row.to_phase,
        quota_before=row.quota_before, quota_after=row.quota_after, loss=row.capacity_loss, held=row.held,
        evidence=row.evidence, hold_reason=row.hold_reason, run_workflow_id=run_id,
        approval_timeout_seconds=round(s.guard_approval_timeout_hours * 3600),
        undo_seconds=round(s.guard_undo_hours * 3600))


def plan_day(req: GuardPlanRequest, url: str | None = None) -> GuardPlan:
    """Judge every active IP of every tenant (or of `req.tenant`) on the 7 full days before `req.day`,
    apply the capacity-loss budget per tenant and, unless `dry_run`, record the steps (one guard_step
    row per IP and day, in this transaction: a concurrent run that records the same IP fails on the
    unique key and, retried, finds it decided). Raises Refused for an unknown tenant."""
    today = dt.date.fromisoformat(req.day)
    first, last = gate_window(today)
    base = defaults()
    plan = GuardPlan(day=today.isoformat(), window_from=first.isoformat(), window_to=last.isoformat(),
                     dry_run=req.dry_run)
    with session_scope(url) as session:
        stmt = select(Tenant).order_by(col(Tenant.name))
        if req.tenant is not None:
            stmt = stmt.where(Tenant.name == req.tenant)
        tenants = list(session.exec(stmt))
        if req.tenant is not None and not tenants:
            raise Refused(f"no tenant named {req.tenant!r}")
        for tenant in tenants:
            assert tenant.id is not None
            schedule, thresholds = tenant_schedule_and_thresholds(session, tenant)
            policy = policy_for(base, tenant.active_guard, tenant.guard_step_down_phase,
                                tenant.guard_max_capacity_loss_share)
            ips = list(session.exec(select(SendingIp).where(SendingIp.tenant_id == tenant.id,
                                                            col(SendingIp.status).in_(list(SENDING_STATUSES)))))
            active = sorted((ip for ip in ips if ip.status == IpStatus.ACTIVE),
                            key=lambda ip: (ip.version, ip.address))
            today_rows = {r.ip_id: r for r in session.exec(select(GuardStep).where(
                GuardStep.tenant_id == tenant.id, GuardStep.day == today))}
            counted = [r for r in today_rows.values() if r.status in gt.COUNTED]
            applied_loss = sum(r.capacity_loss for r in today_rows.values() if r.status == gt.APPLIED)
            budget = CapacityBudget(capacity=sum(ip.daily_quota for ip in ips) + applied_loss,
                                    share=policy.max_capacity_loss_share,
                                    lost=sum(r.capacity_loss for r in counted), steps=len(counted))
            kept = _kept(session, tenant.id, today)
            windows = _windows(session, active, first, last)
            phase_quota = schedule.quota(policy.step_down_phase)
            figures: dict[str, IpFigures] = {}
            candidates: dict[str, tuple[SendingIp, StepCandidate, Judgement]] = {}
            for ip in active:
                assert ip.id is not None
                j = decide(window_stats(windows.get(ip.id, [])), thresholds, ip.daily_quota or 1, policy)
                row = today_rows.get(ip.id)
                if row is not None:
                    mine = bool(req.workflow_id) and row.run_workflow_id == req.workflow_id and not req.dry_run
                    if mine and row.status in (gt.PLANNED, gt.HELD):  # a retry of this run: its own step
                        f = figures[ip.address] = _figures(tenant.name, ip, j)
                        f.step, f.loss = ("held" if row.held else "auto"), row.capacity_loss
                        plan.steps.append(_step_input(tenant.name, ip.address, row, req.workflow_id))
                        continue
                    figures[ip.address] = _figures(tenant.name, ip, j, f"already decided today: {row.action} "
                                                   f"{row.status} ({row.run_workflow_id or 'unknown run'})")
                    continue
                if ip.daily_quota <= 0:
                    figures[ip.address] = _figures(tenant.name, ip, j, "daily quota 0: not sending")
                    continue
                if ip.id in kept:
                    figures[ip.address] = _figures(tenant.name, ip, j, _why_kept(kept[ip.id]))
                    continue
                figures[ip.address] = _figures(tenant.name, ip, j)
                if j.verdict.acts:
                    cand = StepCandidate(ip.address, policy.action, ip.daily_quota,
                                         step_quota(policy.action, phase_quota), j.severity)
                    candidates[ip.address] = (ip, cand, j)
            planned = plan_steps([c for _, c, _ in candidates.values()], budget, tenant.name)
            for p in planned:
                ip, cand, j = candidates[p.candidate.address]
                f = figures[ip.address]
                f.step, f.loss = ("held" if p.held else "auto"), cand.loss
                assert ip.id is not None
                row = GuardStep(
                    ip_id=ip.id, tenant_id=tenant.id, day=today, action=cand.action.value,
                    to_phase=policy.step_down_phase.value if cand.action == GuardAction.STEP_DOWN else None,
                    quota_before=cand.quota_before, quota_after=cand.quota_after, capacity_loss=cand.loss,
                    held=p.held, status=gt.HELD if p.held else gt.PLANNED,
                    evidence=f"{j.reason}. Window {first}..{last}: {f.figures()}"[:2048],
                    hold_reason=p.hold_reason[:1024], run_workflow_id=req.workflow_id[:255],
                    step_workflow_id=step_workflow_id(tenant.name, ip.address))
                if not req.dry_run:
                    session.add(row)
                plan.steps.append(_step_input(tenant.name, ip.address, row, req.workflow_id))
            session.flush()
            auto_loss = sum(p.candidate.loss for p in planned if not p.held)
            rows = [figures[ip.address] for ip in active]
            plan.tenants.append(TenantPlan(
                tenant=tenant.name, action=policy.action.value, step_down_phase=policy.step_down_phase.value,
                max_capacity_loss_share=policy.max_capacity_loss_share, capacity=budget.capacity,
                limit=budget.limit, lost_before=budget.lost, lost_after=budget.lost + auto_loss,
                counts=dict(Counter("skipped" if f.skipped else f.verdict for f in rows)),
                ips=[f for f in rows if req.detail or _notable(f)]))
        if req.dry_run:
            session.rollback()
    return plan


# ------------------------------------------------------------------------------------------ one step


def _unexpected(message: str) -> ApplicationError:
    return ApplicationError(message, type="UnexpectedStatus", non_retryable=True)


def _bad(message: str) -> ApplicationError:
    return ApplicationError(message, type="BadRequest", non_retryable=True)


def _ip(session: Session, address: str, lock: bool = False) -> SendingIp:
    try:
        address = names.ip_address(address)
    except names.NameError_ as err:
        raise _bad(str(err)) from None
    stmt = select(SendingIp).where(SendingIp.address == address)
    ip = session.exec(stmt.with_for_update() if lock else stmt).first()
    if ip is None:
        raise ApplicationError(f"IP {address} is not in the inventory", type="UnknownIp", non_retryable=True)
    return ip


def _row(session: Session, ip: SendingIp, day: str) -> GuardStep:
    row = session.exec(select(GuardStep).where(GuardStep.ip_id == ip.id,
                                               GuardStep.day == dt.date.fromisoformat(day))).first()
    if row is None:
        raise _bad(f"the guard recorded no step of {ip.address} on {day}")
    return row


def _audit(session: Session, ip: SendingIp, from_status: str, from_phase: str | None, reason: str,
           actor: str) -> None:
    assert ip.id is not None
    session.add(StatusChange(ip_id=ip.id, from_status=from_status, to_status=ip.status.value,
                             from_phase=from_phase, to_phase=ip.warmup_phase.value if ip.warmup_phase else None,
                             reason=reason[:1024], actor=actor[:255]))


@dataclass
class GuardStepRequest:
    address: str
    day: str  # the step's day (its guard_step row)
    actor: str  # the step's workflow id
    reason: str = ""
    by: str = ""  # who answered (approve, deny, undo); "" for the engine


@dataclass
class GuardApplyOutcome:
    applied: bool  # False: it was already applied (a retry or a replay)
    status: str
    phase: str | None
    quota_before: int
    quota_after: int


def apply_step(req: GuardStepRequest, url: str | None = None) -> GuardApplyOutcome:
    """Take a planned (or approved) step: the IP must be active and sending. Step down: warming at the
    step's phase, that phase's quota and weight, the phase starting on the step's day. Pause: resting,
    quota and weight 0. Audit row, step applied: one transaction. Applied already: nothing changes."""
    with session_scope(url) as session:
        ip = _ip(session, req.address, lock=True)
        row = _row(session, ip, req.day)
        if row.status == gt.APPLIED:
            return GuardApplyOutcome(False, ip.status.value, ip.warmup_phase.value if ip.warmup_phase else None,
                                     row.quota_before, row.quota_after)
        if row.status not in (gt.PLANNED, gt.APPROVED):
            raise _bad(f"the guard's step of {ip.address} on {req.day} is {row.status}, not to be applied")
        if ip.status != IpStatus.ACTIVE or ip.daily_quota <= 0:
            raise _unexpected(f"{ip.address} is {ip.status.value}"
                              f"{'/' + ip.warmup_phase.value if ip.warmup_phase else ''} with quota {ip.daily_quota}, "
                              "expected active and sending")
        tenant = session.get(Tenant, ip.tenant_id)
        assert tenant is not None
        schedule, _ = tenant_schedule_and_thresholds(session, tenant)
        before = ip.daily_quota
        if row.action == GuardAction.STEP_DOWN.value:
            phase = WarmupPhase(row.to_phase or get_settings().guard_step_down_phase)
            ip.status, ip.warmup_phase, ip.daily_quota = IpStatus.WARMING, phase, schedule.quota(phase)
            ip.phase_started_on = dt.date.fromisoformat(req.day)
            what = f"stepped down to {phase.value}, re-warm"
        else:
            ip.status, ip.warmup_phase, ip.daily_quota, ip.phase_started_on = IpStatus.RESTING, None, 0, None
            what = "paused: resting, out of the pool"
        ip.weight = default_weight(ip.status, ip.daily_quota, schedule)
        ip.status_changed_at = utcnow()
        session.add(ip)
        _audit(session, ip, IpStatus.ACTIVE.value, None,
               f"active guard: {what} (quota {before} -> {ip.daily_quota}/day"
               f"{', approved by ' + row.decided_by if row.status == gt.APPROVED else ''}): {row.evidence}", req.actor)
        row.status, row.applied_at = gt.APPLIED, utcnow()
        row.quota_before, row.quota_after = before, ip.daily_quota
        row.capacity_loss = max(0, before - ip.daily_quota)
        session.add(row)
        return GuardApplyOutcome(True, ip.status.value, ip.warmup_phase.value if ip.warmup_phase else None,
                                 before, ip.daily_quota)


#: (from statuses) -> to status an answer may move a step to
TRANSITIONS = {gt.APPROVED: (gt.HELD,), gt.DENIED: (gt.HELD,), gt.UNDONE: (gt.APPLIED,),
               gt.FAILED: (gt.PLANNED, gt.HELD, gt.APPROVED)}


@dataclass
class GuardRecordRequest:
    step: GuardStepRequest
    status: str  # approved | denied | undone | failed


def record(req: GuardRecordRequest, url: str | None = None) -> bool:
    """Move a step to `status` (an operator's answer, an undo, a failure), with an audit row naming who
    and why. Already there: nothing changes (False). Any other move is refused (BadRequest)."""
    s = req.step
    if req.status not in TRANSITIONS:
        raise _bad(f"not a guard step outcome: {req.status}")
    with session_scope(url) as session:
        ip = _ip(session, s.address, lock=True)
        row = _row(session, ip, s.day)
        if row.status == req.status:
            return False
        if row.status not in TRANSITIONS[req.status]:
            raise _bad(f"the guard's step of {ip.address} on {s.day} is {row.status}; it cannot become {req.status}")
        row.status, row.note = req.status, (s.reason or "")[:1024]
        if req.status != gt.FAILED:
            row.decided_at, row.decided_by = utcnow(), (s.by or "operator")[:255]
        session.add(row)
        who = f" by {s.by}" if s.by else ""
        _audit(session, ip, ip.status.value, ip.warmup_phase.value if ip.warmup_phase else None,
               f"active guard: {row.action} of {s.day} {req.status}{who}: {s.reason}", s.actor)
        return True


def restore_active(req: GuardStepRequest, url: str | None = None) -> bool:
    """Undo of a pause: a resting IP back to active at the tenant's active quota (audited). Active
    already: nothing changes (False). Any other status is refused (UnexpectedStatus)."""
    with session_scope(url) as session:
        ip = _ip(session, req.address, lock=True)
        if ip.status == IpStatus.ACTIVE:
            return False
        if ip.status != IpStatus.RESTING:
            raise _unexpected(f"{ip.address} is {ip.status.value}, expected resting (paused by the guard)")
        tenant = session.get(Tenant, ip.tenant_id)
        assert tenant is not None
        schedule, _ = tenant_schedule_and_thresholds(session, tenant)
        ip.status, ip.daily_quota = IpStatus.ACTIVE, schedule.active_quota
        ip.weight = default_weight(IpStatus.ACTIVE, ip.daily_quota, schedule)
        ip.status_changed_at = utcnow()
        session.add(ip)
        _audit(session, ip, IpStatus.RESTING.value, None,
               f"active guard: pause of {req.day} undone by {req.by or 'operator'}: {req.reason}", req.actor)
        return True


def steps_since(since: dt.date, tenant: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    """The guard's steps from `since` on (newest first), for `guard status`."""
    with session_scope(url) as session:
        stmt = (select(GuardStep, SendingIp.address, Tenant.name)
                .join(SendingIp, col(SendingIp.id) == col(GuardStep.ip_id))
                .join(Tenant, col(Tenant.id) == col(GuardStep.tenant_id))
                .where(col(GuardStep.day) >= since).order_by(col(GuardStep.day).desc(), col(GuardStep.id)))
        if tenant is not None:
            if session.exec(select(Tenant.id).where(Tenant.name == tenant)).first() is None:
                raise Refused(f"no tenant named {tenant!r}")
            stmt = stmt.where(Tenant.name == tenant)
        return [{"day": r.day.isoformat(), "tenant": name, "address": address, "action": r.action,
                 "to_phase": r.to_phase, "quota_before": r.quota_before, "quota_after": r.quota_after,
                 "capacity_loss": r.capacity_loss, "held": r.held, "status": r.status, "evidence": r.evidence,
                 "hold_reason": r.hold_reason, "workflow_id": r.step_workflow_id, "run": r.run_workflow_id,
                 "decided_by": r.decided_by, "note": r.note} for r, address, name in session.exec(stmt)]


# --------------------------------------------------------------------------------------------
# Temporal activity wrappers (sync: the worker runs them in its thread pool)


@activity.defn(name="guard_plan_day")
@heartbeating
def plan_day_activity(req: GuardPlanRequest) -> GuardPlan:
    try:
        return plan_day(req)
    except Refused as err:
        raise ApplicationError(str(err), type="UnknownTenant", non_retryable=True) from None


@activity.defn(name="guard_apply_step")
@heartbeating
def apply_step_activity(req: GuardStepRequest) -> GuardApplyOutcome:
    return apply_step(req)


@activity.defn(name="guard_record")
@heartbeating
def record_activity(req: GuardRecordRequest) -> bool:
    return record(req)


@activity.defn(name="guard_restore_active")
@heartbeating
def restore_active_activity(req: GuardStepRequest) -> bool:
    return restore_active(req)


ACTIVITIES: list[Callable[..., Any]] = [plan_day_activity, apply_step_activity, record_activity,
                                        restore_active_activity]
