"""The inventory half of starting and stopping a warmup (helpers of client/warmups.py and client/relay.py).

- prepare_start: moves a non-warming IP (standby or resting) into warming at the phase its history
  allows (models.warmup.resume_phase), through the DNS gate unless `override_dns` gives a reason
  (then the override is audited). An IP already warming is left as it is. Idempotent.
- restore_ip: the compensation: puts a warming IP back to `restore_status`, with an audit row.
- warming_plans / locate: what the inventory records, for the client's start-all and status.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, func, select

from activities.db import session_scope
from activities.warmup import tenant_schedule_and_thresholds
from models.enums import IpStatus, WarmupPhase
from models.errors import UnknownIp, WarmupError
from models.names import NameError_, ip_address
from models.schedule import default_quota, default_weight
from models.tables import DailyStat, SendingDomain, SendingIp, StatusChange, Tenant, utcnow
from models.warmup import resume_phase, status_for_start
from models.warmup_contracts import StartPlan


def _ip(session: Session, address: str, lock: bool = False) -> tuple[SendingIp, Tenant, SendingDomain | None]:
    """The IP, its tenant and domain; `lock`: the IP's row is locked (FOR UPDATE) until the
    transaction ends, for a status write that must not overwrite a concurrent one."""
    try:
        address = ip_address(address)
    except NameError_ as err:
        raise WarmupError(str(err)) from None
    stmt = select(SendingIp).where(SendingIp.address == address)
    ip = session.exec(stmt.with_for_update() if lock else stmt).first()
    if ip is None:
        raise UnknownIp(f"IP {address} is not in the inventory")
    tenant = session.get(Tenant, ip.tenant_id)
    assert tenant is not None
    domain = session.exec(select(SendingDomain).where(SendingDomain.ip_id == ip.id)).first()
    return ip, tenant, domain


def _history(session: Session, ip: SendingIp) -> tuple[WarmupPhase | None, bool, dt.date | None]:
    """(last recorded phase, whether it was last active, last day it sent) from the audit and the stats."""
    last_sent = session.exec(select(func.max(DailyStat.day)).where(DailyStat.ip_id == ip.id, DailyStat.sent > 0)).one()
    row = session.exec(
        select(StatusChange).where(StatusChange.ip_id == ip.id,
                                   col(StatusChange.to_status).in_([IpStatus.WARMING.value, IpStatus.ACTIVE.value]))
        .order_by(col(StatusChange.at).desc(), col(StatusChange.id).desc())).first()
    if row is None:
        return None, False, last_sent
    if row.to_status == IpStatus.ACTIVE.value:
        return None, True, last_sent
    return (WarmupPhase(row.to_phase) if row.to_phase else None), False, last_sent


def prepare_start(address: str, reason: str, actor: str, override_dns: str | None = None,
                  url: str | None = None, today: dt.date | None = None) -> StartPlan:
    """The database half of starting a warmup (idempotent): the DNS gate, the move into warming."""
    from activities.dns_gate import dns_gate_failures, record_dns_override

    today = today or dt.datetime.now(dt.UTC).date()
    with session_scope(url) as session:
        ip, tenant, domain = _ip(session, address)
        plan = StartPlan(tenant=tenant.name, address=ip.address, domain=domain.name if domain else "",
                         phase=(ip.warmup_phase or WarmupPhase.WEEK_1).value,
                         phase_started_on=(ip.phase_started_on or today).isoformat(), quota=ip.daily_quota,
                         moved_from=None)
        if ip.status == IpStatus.WARMING:
            return plan
        refusal = status_for_start(ip.status)
        if refusal:
            raise WarmupError(f"IP {ip.address}: {refusal}")
    failures = dns_gate_failures(plan.address, url)
    if failures and not (override_dns and override_dns.strip()):
        raise WarmupError(f"IP {plan.address} fails the DNS gate: {'; '.join(failures)} "
                          "(fix DNS, or override with a reason)")
    if failures:
        assert override_dns is not None
        record_dns_override(plan.address, override_dns.strip(), actor, url)
        plan.dns_override = True
    with session_scope(url) as session:
        ip, tenant, _ = _ip(session, address, lock=True)
        if ip.status == IpStatus.WARMING:  # a concurrent start won; nothing to do twice
            plan.phase = (ip.warmup_phase or WarmupPhase.WEEK_1).value
            return plan
        refusal = status_for_start(ip.status)
        if refusal:
            raise WarmupError(f"IP {ip.address}: {refusal}")
        last_phase, was_active, last_sent = _history(session, ip)
        phase = resume_phase(last_phase=last_phase, was_active=was_active, last_sent_on=last_sent, today=today)
        schedule, _ = tenant_schedule_and_thresholds(session, tenant)
        quota = default_quota(IpStatus.WARMING, phase, schedule)
        old = ip.status
        ip.status, ip.warmup_phase, ip.daily_quota = IpStatus.WARMING, phase, quota
        ip.weight = default_weight(IpStatus.WARMING, quota, schedule)
        ip.phase_started_on, ip.status_changed_at = today, utcnow()
        session.add(ip)
        assert ip.id is not None
        why = reason + (f" (DNS gate overridden: {override_dns})" if plan.dns_override else "")
        session.add(StatusChange(ip_id=ip.id, from_status=old.value, to_status=IpStatus.WARMING.value,
                                 from_phase=None, to_phase=phase.value, reason=why[:1024], actor=actor[:255]))
        plan.phase, plan.phase_started_on, plan.quota = phase.value, today.isoformat(), quota
        plan.moved_from = old.value
        return plan


def warming_plans(tenant: str | None = None, url: str | None = None) -> list[StartPlan]:
    """A plan for every IP the inventory records as warming (at its recorded phase and day)."""
    today = dt.datetime.now(dt.UTC).date()
    with session_scope(url) as session:
        tenants = {t.id: t.name for t in session.exec(select(Tenant))}
        if tenant is not None and tenant not in tenants.values():
            raise WarmupError(f"no tenant named {tenant!r}")
        domains = {d.ip_id: d.name for d in session.exec(select(SendingDomain))}
        ips = session.exec(select(SendingIp).where(SendingIp.status == IpStatus.WARMING)
                           .order_by(col(SendingIp.tenant_id), col(SendingIp.id)))
        return [StartPlan(tenant=tenants[ip.tenant_id], address=ip.address, domain=domains.get(ip.id or 0, ""),
                          phase=(ip.warmup_phase or WarmupPhase.WEEK_1).value,
                          phase_started_on=(ip.phase_started_on or today).isoformat(), quota=ip.daily_quota,
                          moved_from=None)
                for ip in ips if tenant is None or tenants[ip.tenant_id] == tenant]


def locate(address: str, url: str | None = None) -> tuple[str, str]:
    """(tenant, normalized address) of an inventory IP; UnknownIp if it is not there."""
    with session_scope(url) as session:
        ip, tenant, _ = _ip(session, address)
        return tenant.name, ip.address


def restore_ip(address: str, restore_status: str, reason: str, actor: str, url: str | None = None) -> bool:
    """Put a warming IP back to `restore_status` (idempotent): True if something changed."""
    target = IpStatus(restore_status)
    if target == IpStatus.WARMING:
        raise WarmupError("restore_status must not be warming")
    with session_scope(url) as session:
        ip, tenant, _ = _ip(session, address, lock=True)
        if ip.status == target:
            return False
        if ip.status != IpStatus.WARMING:
            raise WarmupError(f"IP {ip.address} is {ip.status.value}, expected warming")
        schedule, _ = tenant_schedule_and_thresholds(session, tenant)
        old_phase = ip.warmup_phase
        ip.status, ip.warmup_phase, ip.phase_started_on = target, None, None
        ip.daily_quota = default_quota(target, None, schedule)
        ip.weight = default_weight(target, ip.daily_quota, schedule)
        ip.status_changed_at = utcnow()
        session.add(ip)
        assert ip.id is not None
        session.add(StatusChange(ip_id=ip.id, from_status=IpStatus.WARMING.value, to_status=target.value,
                                 from_phase=old_phase.value if old_phase else None, to_phase=None,
                                 reason=reason[:1024], actor=actor[:255]))
        return True
