"""Activities of IpWarmupWorkflow: read an IP's warmup context (stats window, schedule, thresholds) and
persist a phase step idempotently (stating the phase it expects)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import session_scope
from activities.keepalive import heartbeating
from models.enums import IpStatus, WarmupPhase
from models.names import NameError_, ip_address
from models.schedule import Schedule, default_weight
from models.settings import get_settings
from models.tables import DailyStat, SendingDomain, SendingIp, StatusChange, Tenant, WarmupPlan, utcnow
from models.warmup import (
    DayStats,
    GateThresholds,
    WindowStats,
    gate_window,
    tenant_schedule,
    thresholds_for,
    window_stats,
)


@dataclass(frozen=True)
class PhaseQuota:
    phase: str
    quota: int
    min_days: int


@dataclass
class WarmupContextRequest:
    address: str
    today: str  # ISO date: the workflow's day (deterministic, from workflow.now())
    window_days: int = 7


@dataclass
class WarmupContext:
    address: str
    tenant: str
    status: str
    phase: str | None
    phase_started_on: str | None
    quota: int
    thresholds: GateThresholds
    schedule: list[PhaseQuota]
    active_quota: int
    stats: WindowStats
    window_from: str
    window_to: str
    domain: str = ""


def schedule_from(ctx_schedule: list[PhaseQuota], active_quota: int) -> Schedule:
    return Schedule(quotas=tuple((WarmupPhase(p.phase), p.quota) for p in ctx_schedule), active_quota=active_quota,
                    min_days_by_phase=tuple((WarmupPhase(p.phase), p.min_days) for p in ctx_schedule))


def _ip(session: Session, address: str, lock: bool = False) -> SendingIp:
    """The IP's row; `lock`: SELECT ... FOR UPDATE, held until the transaction ends, so a status
    written after reading it cannot overwrite a concurrent change (a quarantine)."""
    try:
        address = ip_address(address)
    except NameError_ as err:
        raise ApplicationError(str(err), type="UnknownIp", non_retryable=True) from None
    stmt = select(SendingIp).where(SendingIp.address == address)
    ip = session.exec(stmt.with_for_update() if lock else stmt).first()
    if ip is None:
        raise ApplicationError(f"IP {address} is not in the inventory", type="UnknownIp", non_retryable=True)
    return ip


def tenant_thresholds(tenant: Tenant) -> GateThresholds:
    """The gate's thresholds for `tenant`: its own overrides, the settings' defaults elsewhere."""
    settings = get_settings()
    defaults = GateThresholds(settings.max_bounce_rate, settings.max_complaint_rate, settings.min_open_rate,
                              settings.warmup_min_delivered_share, settings.warmup_gate_confidence)
    return thresholds_for(defaults, tenant.max_bounce_rate, tenant.max_complaint_rate, tenant.min_open_rate,
                          tenant.min_delivered_share)


def tenant_schedule_and_thresholds(session: Session, tenant: Tenant) -> tuple[Schedule, GateThresholds]:
    plan = [(row.phase, row.daily_quota, row.min_days)
            for row in session.exec(select(WarmupPlan).where(WarmupPlan.tenant_id == tenant.id))]
    return tenant_schedule(plan), tenant_thresholds(tenant)


def load_context(req: WarmupContextRequest, url: str | None = None) -> WarmupContext:
    today = dt.date.fromisoformat(req.today)
    first, last = gate_window(today, req.window_days)
    with session_scope(url) as session:
        ip = _ip(session, req.address)
        tenant = session.get(Tenant, ip.tenant_id)
        assert tenant is not None
        domain = session.exec(select(SendingDomain).where(SendingDomain.ip_id == ip.id)).first()
        schedule, thresholds = tenant_schedule_and_thresholds(session, tenant)
        rows = session.exec(select(DailyStat).where(DailyStat.ip_id == ip.id, col(DailyStat.day) >= first,
                                                    col(DailyStat.day) <= last))
        # A day with opens recorded counts as measured even if its writer did not set the flag.
        stats = window_stats(DayStats(r.day, r.sent, r.delivered, r.bounced, r.complaints, r.opens,
                                      r.opens_measured or r.opens > 0) for r in rows)
        return WarmupContext(
            address=ip.address, tenant=tenant.name, status=ip.status.value,
            phase=ip.warmup_phase.value if ip.warmup_phase else None,
            phase_started_on=ip.phase_started_on.isoformat() if ip.phase_started_on else None,
            quota=ip.daily_quota, thresholds=thresholds,
            schedule=[PhaseQuota(p.value, q, schedule.days(p)) for p, q in schedule.quotas],
            active_quota=schedule.active_quota, stats=stats, window_from=first.isoformat(),
            window_to=last.isoformat(), domain=domain.name if domain else "",
        )


@activity.defn(name="load_warmup_context")
@heartbeating
def load_warmup_context(req: WarmupContextRequest) -> WarmupContext:
    """The IP's status/phase as stored, its tenant's schedule and thresholds, and its last 7 days of stats."""
    return load_context(req)


@dataclass
class PhaseStepRequest:
    address: str
    expected_phase: str  # the phase the caller believes the IP is in (status warming)
    to_phase: str | None  # None: the IP becomes active
    quota: int
    started_on: str  # ISO date the new phase starts
    reason: str
    actor: str  # the workflow id


@dataclass
class PhaseStepOutcome:
    applied: bool  # False: it was already applied (a retry or a replay)
    status: str
    phase: str | None
    quota: int
    weight: int
    messages: list[str] = field(default_factory=list)


def apply_phase_step(req: PhaseStepRequest, url: str | None = None) -> PhaseStepOutcome:
    """Persist phase, quota, weight, phase_started_on and an audit row, only if the IP is warming at
    `expected_phase`. Already at the target (same phase, same start day): nothing changes (idempotent).
    Anything else is a non-retryable "UnexpectedPhase" error naming what the database holds."""
    expected = WarmupPhase(req.expected_phase)
    target = WarmupPhase(req.to_phase) if req.to_phase else None
    to_status = IpStatus.WARMING if target else IpStatus.ACTIVE
    started_on = dt.date.fromisoformat(req.started_on)
    with session_scope(url) as session:
        ip = _ip(session, req.address, lock=True)
        same_start = target is None or ip.phase_started_on == started_on
        if ip.status == to_status and ip.warmup_phase == target and same_start:
            return PhaseStepOutcome(False, ip.status.value, req.to_phase, ip.daily_quota, ip.weight,
                                    ["already applied"])
        if ip.status != IpStatus.WARMING or ip.warmup_phase != expected:
            raise ApplicationError(
                f"IP {ip.address} is {ip.status.value}"
                f"{'/' + ip.warmup_phase.value if ip.warmup_phase else ''}, expected warming/{expected.value}",
                type="UnexpectedPhase", non_retryable=True)
        tenant = session.get(Tenant, ip.tenant_id)
        assert tenant is not None and ip.id is not None
        schedule, _ = tenant_schedule_and_thresholds(session, tenant)
        weight = default_weight(to_status, req.quota, schedule)
        ip.status = to_status
        ip.warmup_phase = target
        ip.daily_quota = req.quota
        ip.weight = weight
        ip.phase_started_on = started_on if target else None
        ip.status_changed_at = utcnow()
        session.add(ip)
        session.add(StatusChange(
            ip_id=ip.id, from_status=IpStatus.WARMING.value, to_status=to_status.value,
            from_phase=expected.value, to_phase=target.value if target else None,
            reason=req.reason[:1024], actor=req.actor[:255],
        ))
        return PhaseStepOutcome(True, to_status.value, req.to_phase, req.quota, weight)


@activity.defn(name="apply_warmup_step")
@heartbeating
def apply_warmup_step(req: PhaseStepRequest) -> PhaseStepOutcome:
    """Activity form of apply_phase_step on the configured database."""
    return apply_phase_step(req)
