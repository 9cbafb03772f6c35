"""Failover saga and scan activities: thin, idempotent database steps that state what they expect.

Every step writes a StatusChange audit row whose actor is the saga's (or scan's) workflow id.
A step that finds its work already done (a retry, a replay, a second detection) changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.blocklists import ListedEntry, ScanReport
from activities.db import session_scope
from activities.keepalive import heartbeating
from models import names
from models.enums import IpStatus
from models.failover import (
    BreakerEvidence,
    BreakerPolicy,
    Listing,
    QuarantinePolicy,
    ScanAction,
    ScanDecision,
    StandbyCandidate,
    quarantine_until,
    standby_order,
)
from models.failover_tables import StandbyClaim
from models.settings import get_settings
from models.tables import BlocklistEvent, DailyStat, SendingDomain, SendingIp, StatusChange, Tenant, utcnow


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _unexpected(message: str) -> ApplicationError:
    return ApplicationError(message, type="UnexpectedStatus", non_retryable=True)


def _ip(session: Session, address: str, tenant: str | None = None, lock: bool = False) -> SendingIp:
    address = names.ip_address(address)
    stmt = select(SendingIp).where(SendingIp.address == address)
    if lock:
        stmt = stmt.with_for_update()
    ip = session.exec(stmt).first()
    if ip is None:
        raise ApplicationError(f"IP {address} is not in the inventory", type="UnknownIp", non_retryable=True)
    if tenant is not None:
        owner = session.get(Tenant, ip.tenant_id)
        if owner is None or owner.name != tenant:
            raise ApplicationError(f"IP {address} does not belong to tenant {tenant}", type="UnknownIp",
                                   non_retryable=True)
    return ip


def _audit(session: Session, ip: SendingIp, from_status: str | None, from_phase: str | None, reason: str,
           actor: str) -> None:
    assert ip.id is not None
    session.add(StatusChange(ip_id=ip.id, from_status=from_status, to_status=ip.status.value, from_phase=from_phase,
                             to_phase=ip.warmup_phase.value if ip.warmup_phase else None, reason=reason[:1024],
                             actor=actor[:255]))


def policies() -> tuple[BreakerPolicy, QuarantinePolicy]:
    s = get_settings()
    return (BreakerPolicy(max_complaint_rate=s.failover_max_complaint_rate, window_days=s.failover_window_days,
                          approval_timeout_seconds=int(s.failover_approval_timeout_hours * 3600)),
            QuarantinePolicy(days=s.quarantine_days, max_extensions=s.quarantine_max_extensions))


# --------------------------------------------------------------------------------------------
# Step 1: quarantine


@dataclass(frozen=True)
class QuarantineRequest:
    tenant: str
    address: str
    listings: list[Listing]
    actor: str  # the saga's workflow id


@dataclass(frozen=True)
class QuarantineResult:
    address: str
    previous_status: str
    previous_phase: str | None
    quarantine_until: dt.datetime
    changed: bool


def quarantine_ip(req: QuarantineRequest, url: str | None = None) -> QuarantineResult:
    """Take a listed IP out of the pool at once: status quarantine, quota and weight 0, quarantine
    until now + the quarantine period, listed-on recorded, one open BlocklistEvent per listing.
    Expects warming or active; an IP already quarantined by this saga is left as it is."""
    _, qpolicy = policies()
    with session_scope(url) as session:
        ip = _ip(session, req.address, req.tenant, lock=True)
        events = list(session.exec(select(BlocklistEvent).where(BlocklistEvent.ip_id == ip.id,
                                                                BlocklistEvent.workflow_id == req.actor)))
        if ip.status == IpStatus.QUARANTINE and events:
            done = session.exec(select(StatusChange).where(StatusChange.ip_id == ip.id,
                                                           StatusChange.actor == req.actor)
                                .order_by(col(StatusChange.id))).first()
            until = _aware(ip.quarantine_until) or utcnow()
            return QuarantineResult(ip.address, done.from_status if done and done.from_status else ip.status.value,
                                    done.from_phase if done else None, until, changed=False)
        if ip.status not in (IpStatus.WARMING, IpStatus.ACTIVE):
            raise _unexpected(f"{ip.address} is {ip.status.value}, expected warming or active")
        now = utcnow()
        prev_status, prev_phase = ip.status.value, ip.warmup_phase.value if ip.warmup_phase else None
        ip.status = IpStatus.QUARANTINE
        ip.warmup_phase = None
        ip.phase_started_on = None
        ip.daily_quota = 0
        ip.weight = 0
        ip.quarantine_until = quarantine_until(now, qpolicy)
        ip.quarantine_extensions = 0
        ip.listed_on = "; ".join(lst.describe() for lst in req.listings)[:2048] or "listed"
        ip.status_changed_at = now
        session.add(ip)
        _audit(session, ip, prev_status, prev_phase,
               f"failover step 1: quarantined until {ip.quarantine_until:%Y-%m-%d %H:%M} UTC, listed on "
               f"{ip.listed_on}", req.actor)
        domains = {d.name: d.id for d in session.exec(select(SendingDomain).where(SendingDomain.ip_id == ip.id))}
        for lst in req.listings or [Listing(zone="unknown", target=ip.address)]:
            session.add(BlocklistEvent(ip_id=ip.id, domain_id=domains.get(lst.target), zone=lst.zone[:253],
                                       code=lst.code, meaning=(lst.meaning or "")[:512] or None, detected_at=now,
                                       workflow_id=req.actor))
        return QuarantineResult(ip.address, prev_status, prev_phase, ip.quarantine_until, changed=True)


# --------------------------------------------------------------------------------------------
# Step 2: circuit breaker evidence


@dataclass(frozen=True)
class EvidenceRequest:
    tenant: str
    address: str


def collect_breaker_evidence(req: EvidenceRequest, url: str | None = None) -> BreakerEvidence:
    """The tenant's complaint rate over the window (all its IPs' daily stats) and the other IPs of
    the tenant with a blocklist event in the window."""
    policy, _ = policies()
    now = utcnow()
    since_day = now.date() - dt.timedelta(days=policy.window_days)
    since = now - dt.timedelta(days=policy.window_days)
    with session_scope(url) as session:
        ip = _ip(session, req.address, req.tenant)
        tenant_ips = select(SendingIp.id).where(SendingIp.tenant_id == ip.tenant_id)
        sent, complaints = session.exec(
            select(func.coalesce(func.sum(DailyStat.sent), 0), func.coalesce(func.sum(DailyStat.complaints), 0))
            .where(col(DailyStat.ip_id).in_(tenant_ips), DailyStat.day > since_day)
        ).one()
        rows = session.exec(
            select(SendingIp.address, BlocklistEvent.zone, BlocklistEvent.detected_at)
            .join(BlocklistEvent, col(BlocklistEvent.ip_id) == col(SendingIp.id))
            .where(SendingIp.tenant_id == ip.tenant_id, SendingIp.id != ip.id, BlocklistEvent.detected_at >= since)
            .order_by(col(BlocklistEvent.detected_at))
        ).all()
    seen: dict[str, str] = {}
    for address, zone, at in rows:
        seen.setdefault(address, f"{address} ({zone}, {_aware(at):%Y-%m-%d %H:%M})")
    return BreakerEvidence(tenant=req.tenant, address=ip.address, sent_7d=int(sent), complaints_7d=int(complaints),
                           other_listings=list(seen.values()), policy=policy)


# --------------------------------------------------------------------------------------------
# Step 3: standby candidates and the claim (the database guarantee)


@dataclass(frozen=True)
class StandbyQuery:
    tenant: str
    listed_address: str


def standby_candidates(req: StandbyQuery, url: str | None = None) -> list[str]:
    """The tenant's unclaimed standbys in the order to try them (models.failover.standby_order)."""
    with session_scope(url) as session:
        listed = _ip(session, req.listed_address, req.tenant)
        claimed = select(StandbyClaim.ip_id)
        ips = list(session.exec(select(SendingIp).where(SendingIp.tenant_id == listed.tenant_id,
                                                        SendingIp.status == IpStatus.STANDBY,
                                                        col(SendingIp.id).not_in(claimed))))
        ids = [ip.id for ip in ips if ip.id is not None]
        listings = dict(session.exec(select(BlocklistEvent.ip_id, func.count()).where(col(BlocklistEvent.ip_id)
                                     .in_(ids)).group_by(col(BlocklistEvent.ip_id))).all())
        last_sent = dict(session.exec(select(DailyStat.ip_id, func.max(DailyStat.day)).where(
            col(DailyStat.ip_id).in_(ids), DailyStat.sent > 0).group_by(col(DailyStat.ip_id))).all())
        cands = [StandbyCandidate(ip.address, ip.purpose.value, int(listings.get(ip.id or 0, 0)),
                                  last_sent.get(ip.id or 0)) for ip in ips]
        return standby_order(cands, listed.purpose.value)


@dataclass(frozen=True)
class ClaimRequest:
    address: str
    workflow_id: str


def claim_standby(req: ClaimRequest, url: str | None = None) -> bool:
    """Claim a standby for one saga. The claim row's primary key (ip_id) makes it exclusive: of two
    sagas claiming at the same instant, one INSERT wins and the other gets a unique violation
    (PostgreSQL makes the second wait for the first to commit). The claim only counts if the IP is
    still standby inside the same transaction. Idempotent: a saga's own claim returns True."""
    try:
        with session_scope(url) as session:
            ip = _ip(session, req.address)
            existing = session.get(StandbyClaim, ip.id)
            if existing is not None:
                return existing.workflow_id == req.workflow_id
            assert ip.id is not None
            session.add(StandbyClaim(ip_id=ip.id, workflow_id=req.workflow_id))
            session.flush()  # the INSERT happens here: a concurrent claim blocks or fails now
            session.refresh(ip, with_for_update=True)  # the status as committed, locked until we commit
            if ip.status != IpStatus.STANDBY:
                session.rollback()
                return False
            _audit(session, ip, ip.status.value, None, "failover step 3: standby claimed", req.workflow_id)
            return True
    except IntegrityError:
        return False


def release_standby(req: ClaimRequest, url: str | None = None) -> bool:
    """Drop this saga's claim (compensation, and at the end of the saga). Idempotent."""
    with session_scope(url) as session:
        ip = _ip(session, req.address)
        claim = session.get(StandbyClaim, ip.id)
        if claim is None or claim.workflow_id != req.workflow_id:
            return False
        session.delete(claim)
        _audit(session, ip, ip.status.value, ip.warmup_phase.value if ip.warmup_phase else None,
               "failover: standby claim released (undo)", req.workflow_id)
        return True


def claims_of(workflow_id: str, url: str | None = None) -> list[str]:
    with session_scope(url) as session:
        rows = session.exec(select(SendingIp.address).join(StandbyClaim, col(StandbyClaim.ip_id) == col(SendingIp.id))
                            .where(StandbyClaim.workflow_id == workflow_id))
        return list(rows)


# --------------------------------------------------------------------------------------------
# Audit of steps that change no status, and the last step


@dataclass(frozen=True)
class AuditRequest:
    address: str
    reason: str
    actor: str
    #: The saga run writing the row: a later run of the same saga id writes its own rows (the id is reused).
    run_id: str = ""


def audit_step(req: AuditRequest, url: str | None = None) -> None:
    """An audit row for a step that changes no status (decision, deploy, compensation). A retried
    activity does not write the same row twice; a later run of the same saga id writes its own."""
    reason = f"{req.reason[:1000]} [run {req.run_id[:8]}]" if req.run_id else req.reason[:1024]
    with session_scope(url) as session:
        ip = _ip(session, req.address)
        stmt = select(StatusChange.id).where(StatusChange.ip_id == ip.id, StatusChange.actor == req.actor,
                                             StatusChange.reason == reason)
        dup = session.exec(stmt).first()
        if dup is None:
            _audit(session, ip, ip.status.value, ip.warmup_phase.value if ip.warmup_phase else None, reason,
                   req.actor)


@dataclass(frozen=True)
class FinishRequest:
    address: str
    workflow_id: str
    outcome: str
    run_id: str = ""  # the saga run that ends: one outcome row per ending, even when the id is reused


def finish_failover(req: FinishRequest, url: str | None = None) -> int:
    """Step 6: the saga's blocklist events get their outcome, its standby claims are released, and an
    audit row says how it ended (exactly one per run: a retry finds it written). Returns the number of
    events updated."""
    with session_scope(url) as session:
        ip = _ip(session, req.address)
        events = list(session.exec(select(BlocklistEvent).where(BlocklistEvent.ip_id == ip.id,
                                                                BlocklistEvent.workflow_id == req.workflow_id)))
        for ev in events:
            ev.outcome = req.outcome[:512]
            session.add(ev)
        for claim in session.exec(select(StandbyClaim).where(StandbyClaim.workflow_id == req.workflow_id)):
            session.delete(claim)
        run = f" [run {req.run_id[:8]}]" if req.run_id else ""
        reason = f"failover step 6: {req.outcome[:1024 - 60]}{run}"[:1024]
        if session.exec(select(StatusChange.id).where(StatusChange.ip_id == ip.id, StatusChange.actor ==
                                                      req.workflow_id, StatusChange.reason == reason)).first() is None:
            _audit(session, ip, ip.status.value, None, reason, req.workflow_id)
        return len(events)


def describe_ip(address: str, url: str | None = None) -> str:
    """The state an IP is in, in words, for an alert after a compensation failed ("X is warming
    (week_1) with quota 50, claimed by failover/...")."""
    with session_scope(url) as session:
        ip = _ip(session, address)
        phase = f" ({ip.warmup_phase.value})" if ip.warmup_phase else ""
        claim = session.get(StandbyClaim, ip.id)
        held = f", claimed by {claim.workflow_id}" if claim is not None else ""
        return f"{ip.address} is {ip.status.value}{phase} with quota {ip.daily_quota}{held}"


def unfinished_sagas(session: Session, ip_ids: list[int]) -> set[int]:
    """Quarantined IPs whose failover did not complete: the newest saga event of the IP has no outcome
    or a failed one, and that saga never recorded its step-4 deploy (a failover in effect whose last
    record failed is not run again: it was alerted)."""
    out: set[int] = set()
    if not ip_ids:
        return out
    latest = (select(BlocklistEvent.ip_id, func.max(BlocklistEvent.id).label("last"))
              .where(col(BlocklistEvent.ip_id).in_(ip_ids), col(BlocklistEvent.workflow_id).like("failover/%"))
              .group_by(col(BlocklistEvent.ip_id)).subquery())
    events = session.exec(select(BlocklistEvent).join(latest, col(BlocklistEvent.id) == latest.c.last)).all()
    for ev in events:
        if ev.outcome is not None and not ev.outcome.startswith("failed"):
            continue
        deployed = session.exec(select(StatusChange.id).where(
            StatusChange.ip_id == ev.ip_id, StatusChange.actor == ev.workflow_id,
            col(StatusChange.reason).like("failover step 4: deployed%"),
            col(StatusChange.at) >= ev.detected_at)).first()
        if deployed is None and ev.ip_id is not None:
            out.add(ev.ip_id)
    return out


# --------------------------------------------------------------------------------------------
# Scan: targets and the quarantine decisions


@dataclass(frozen=True)
class QuarantineAction:
    address: str
    action: str  # ScanAction: extend | retire | rest_and_rewarm
    listings: list[Listing] = field(default_factory=list)
    actor: str = ""


def apply_quarantine_action(req: QuarantineAction, url: str | None = None) -> bool:
    """Apply a scan's verdict on a quarantined IP. Expects status quarantine with the quarantine
    period over (a retry after success finds the period running, or another status: no change).
    Returns whether it changed anything."""
    action = ScanAction(req.action)
    _, qpolicy = policies()
    now = utcnow()
    with session_scope(url) as session:
        ip = _ip(session, req.address, lock=True)
        until = _aware(ip.quarantine_until)
        if ip.status != IpStatus.QUARANTINE or (until is not None and until > now):
            return False
        listed_on = "; ".join(lst.describe() for lst in req.listings)[:2048]
        if action == ScanAction.EXTEND:
            ip.quarantine_until = quarantine_until(now, qpolicy)
            ip.quarantine_extensions += 1
            ip.listed_on = listed_on or ip.listed_on
            reason = (f"blocklist scan: still listed ({listed_on}); quarantine extended to "
                      f"{ip.quarantine_until:%Y-%m-%d %H:%M} UTC, extension {ip.quarantine_extensions}"
                      f"/{qpolicy.max_extensions}")
        elif action == ScanAction.RETIRE:
            ip.status = IpStatus.RETIRING
            ip.listed_on = listed_on or ip.listed_on
            reason = f"blocklist scan: listed again after {ip.quarantine_extensions} extensions ({listed_on}): retiring"
        elif action == ScanAction.REST_AND_REWARM:
            ip.status = IpStatus.RESTING
            ip.quarantine_until = None
            reason = "blocklist scan: quarantine over and clean: resting, then re-warm"
            for ev in session.exec(select(BlocklistEvent).where(BlocklistEvent.ip_id == ip.id,
                                                                col(BlocklistEvent.cleared_at).is_(None))):
                ev.cleared_at = now
                session.add(ev)
        else:
            raise ApplicationError(f"not a quarantine action: {req.action}", type="BadRequest", non_retryable=True)
        ip.status_changed_at = now
        session.add(ip)
        _audit(session, ip, IpStatus.QUARANTINE.value, None, reason, req.actor)
        if action != ScanAction.REST_AND_REWARM:
            domains = {d.name: d.id for d in session.exec(select(SendingDomain).where(SendingDomain.ip_id == ip.id))}
            for lst in req.listings:
                session.add(BlocklistEvent(ip_id=ip.id, domain_id=domains.get(lst.target), zone=lst.zone[:253],
                                           code=lst.code, meaning=(lst.meaning or "")[:512] or None, detected_at=now,
                                           outcome=action.value, workflow_id=req.actor))
        return True


# --------------------------------------------------------------------------------------------
# Temporal activity wrappers (sync: the worker runs them in its thread pool)

@activity.defn(name="failover_quarantine_ip")
@heartbeating
def quarantine_ip_activity(req: QuarantineRequest) -> QuarantineResult:
    return quarantine_ip(req)


@activity.defn(name="failover_breaker_evidence")
@heartbeating
def breaker_evidence_activity(req: EvidenceRequest) -> BreakerEvidence:
    return collect_breaker_evidence(req)


@activity.defn(name="failover_standby_candidates")
@heartbeating
def standby_candidates_activity(req: StandbyQuery) -> list[str]:
    return standby_candidates(req)


@activity.defn(name="failover_claim_standby")
@heartbeating
def claim_standby_activity(req: ClaimRequest) -> bool:
    return claim_standby(req)


@activity.defn(name="failover_release_standby")
@heartbeating
def release_standby_activity(req: ClaimRequest) -> bool:
    return release_standby(req)


@activity.defn(name="failover_audit")
@heartbeating
def audit_step_activity(req: AuditRequest) -> None:
    audit_step(req)


@activity.defn(name="failover_finish")
@heartbeating
def finish_failover_activity(req: FinishRequest) -> int:
    return finish_failover(req)


@activity.defn(name="blocklist_quarantine_action")
@heartbeating
def quarantine_action_activity(req: QuarantineAction) -> bool:
    return apply_quarantine_action(req)


@activity.defn(name="failover_describe_ip")
def describe_ip_activity(address: str) -> str:
    return describe_ip(address)


ACTIVITIES: list[Callable[..., Any]] = [
    quarantine_ip_activity, breaker_evidence_activity, standby_candidates_activity, claim_standby_activity,
    release_standby_activity, audit_step_activity, finish_failover_activity, quarantine_action_activity,
    describe_ip_activity]


# --------------------------------------------------------------------------------------------
# Scan evaluation: a ScanReport against the database state -> one decision per IP


@dataclass
class EvaluateRequest:
    report: ScanReport
    workflow_id: str


def _listings(entries: list[ListedEntry], target: str) -> list[Listing]:
    return [Listing(zone=e.zone_name or e.zone, target=target, code=",".join(e.codes) or None,
                    meaning=e.meaning or None, delist_url=e.delist_url or None) for e in entries]


def evaluate_scan(report: ScanReport, workflow_id: str, url: str | None = None,
                  now: dt.datetime | None = None) -> list[ScanDecision]:
    """Compare a scan with the database (status, quarantine period, extensions) and decide per IP
    (models.failover.scan_decision). A listing of an IP's domain counts for the IP. Persists the
    run (blocklist_scan_run) with its decisions. IPs no longer scanned statuses are left alone."""
    from models.failover import IpScanState, scan_decision, tenant_scan_decisions
    from models.failover_tables import BlocklistScanRun

    _, qpolicy = policies()
    share = get_settings().failover_blast_radius_share
    now = now or utcnow()
    by_ip: dict[str, list[Listing]] = {}
    unknown: dict[str, bool] = {}
    domain_targets: dict[str, Any] = {}
    for t in report.targets:
        if t.kind == "ip":
            by_ip.setdefault(t.value, []).extend(_listings(t.listed, t.value))
            unknown[t.value] = unknown.get(t.value, False) or bool(t.unknown)
        else:
            domain_targets[t.value] = t
    decisions: list[ScanDecision] = []
    with session_scope(url) as session:
        if domain_targets:
            for dname, address in session.exec(select(SendingDomain.name, SendingIp.address).join(
                    SendingIp, col(SendingIp.id) == col(SendingDomain.ip_id))
                    .where(col(SendingDomain.name).in_(list(domain_targets)))):
                t = domain_targets[dname]
                by_ip.setdefault(address, []).extend(_listings(t.listed, dname))
                unknown[address] = unknown.get(address, False) or bool(t.unknown)
        rows = session.exec(select(SendingIp, Tenant.name).join(Tenant, col(Tenant.id) == col(SendingIp.tenant_id))
                            .where(col(SendingIp.address).in_(list(by_ip)))).all()
        unfinished = unfinished_sagas(session, [ip.id for ip, _ in rows
                                                if ip.id is not None and ip.status == IpStatus.QUARANTINE])
        for ip, tenant in sorted(rows, key=lambda r: (r[1], r[0].address)):
            state = IpScanState(tenant, ip.address, ip.status.value, _aware(ip.quarantine_until),
                                ip.quarantine_extensions, by_ip.get(ip.address, []), unknown.get(ip.address, False),
                                saga_unfinished=ip.id in unfinished)
            decisions.append(scan_decision(state, now, qpolicy))
        new_in = {d.tenant for d in decisions if d.action == ScanAction.START_SAGA}
        sending = dict(session.exec(
            select(Tenant.name, func.count()).join(SendingIp, col(SendingIp.tenant_id) == col(Tenant.id))
            .where(col(Tenant.name).in_(list(new_in)),
                   col(SendingIp.status).in_([IpStatus.ACTIVE, IpStatus.WARMING]))
            .group_by(col(Tenant.name))).all()) if new_in else {}
        decisions = tenant_scan_decisions(decisions, {k: int(v) for k, v in sending.items()}, share)
        session.add(BlocklistScanRun(
            workflow_id=workflow_id, started_at=dt.datetime.fromisoformat(report.started_at), finished_at=now,
            ips_scanned=len(rows), listed=sum(1 for d in decisions if d.listings),
            inconclusive=sum(1 for v in unknown.values() if v), broken_zones=[b.zone_name for b in report.broken],
            decisions=[{"tenant": d.tenant, "address": d.address, "action": d.action.value, "detail": d.detail,
                        "listings": [lst.describe() for lst in d.listings],
                        **({"hold": d.blast_radius} if d.blast_radius else {})}
                       for d in decisions if d.action != ScanAction.NONE or d.listings]))
    return decisions


@activity.defn(name="blocklist_evaluate_scan")
@heartbeating
def evaluate_scan_activity(req: EvaluateRequest) -> list[ScanDecision]:
    return evaluate_scan(req.report, req.workflow_id)


ACTIVITIES.append(evaluate_scan_activity)
