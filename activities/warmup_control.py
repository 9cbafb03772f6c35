"""Starting, cancelling, pausing, resuming and reading warmups (activities and the CLI's functions).

Contract (other features rely on it):
- activity "start_ip_warmup" (StartWarmupRequest) -> workflow id: moves a non-warming IP (standby or
  resting) into warming at the phase its history allows (models.warmup.resume_phase), through the DNS
  gate unless `override_dns` gives a reason (then the override is audited), then starts
  IpWarmupWorkflow. An IP the inventory already records as warming just gets its workflow started at
  its recorded phase and day, without the gate. Idempotent: a running workflow is left alone.
- activity "cancel_ip_warmup" (CancelWarmupRequest): compensation. Terminates the workflow (if any) and
  puts the IP back to `restore_status` (quota and weight from that status), with an audit row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlmodel import Session, col, func, select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.db import session_scope
from activities.warmup import tenant_schedule_and_thresholds
from models.enums import IpStatus, WarmupPhase
from models.names import NameError_, ip_address
from models.schedule import default_quota, default_weight
from models.settings import Settings, get_settings
from models.tables import DailyStat, SendingDomain, SendingIp, StatusChange, Tenant, utcnow
from models.warmup import resume_phase, status_for_start
from workflows.search_attributes import IP_ADDRESS, IP_STATUS, TENANT, WARMUP_PHASE
from workflows.warmup import IpWarmupWorkflow, PauseRequest, ResumeRequest, WarmupInput, WarmupStatus, workflow_id


class WarmupError(ValueError):
    """A precise refusal: unknown IP, status that cannot warm, DNS gate failed, no workflow."""


@dataclass
class StartWarmupRequest:
    address: str
    reason: str
    actor: str
    override_dns: str | None = None


@dataclass
class CancelWarmupRequest:
    address: str
    restore_status: str
    reason: str
    actor: str


@dataclass
class StartPlan:
    tenant: str
    address: str
    domain: str
    phase: str
    phase_started_on: str
    quota: int
    moved_from: str | None  # the status it left (None: it was already warming)
    dns_override: bool = False


@dataclass
class StartOutcome:
    workflow_id: str
    started: bool  # False: a workflow was already running (left alone)
    plan: StartPlan
    messages: list[str] = field(default_factory=list)


def _ip(session: Session, address: str) -> tuple[SendingIp, Tenant, SendingDomain | None]:
    try:
        address = ip_address(address)
    except NameError_ as err:
        raise WarmupError(str(err)) from None
    ip = session.exec(select(SendingIp).where(SendingIp.address == address)).first()
    if ip is None:
        raise WarmupError(f"IP {address} is not in the inventory")
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
        ip, tenant, _ = _ip(session, address)
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


def warmup_input(plan: StartPlan, settings: Settings, reason: str) -> WarmupInput:
    return WarmupInput(tenant=plan.tenant, address=plan.address, domain=plan.domain, phase=plan.phase,
                       phase_started_on=plan.phase_started_on, quota=plan.quota, reason=reason,
                       wake_window_seconds=settings.warmup_wake_window_seconds,
                       deploy_at_start=plan.moved_from is not None)


async def start_workflow(client: Client, plan: StartPlan, reason: str, settings: Settings | None = None,
                         task_queue: str | None = None, inp: WarmupInput | None = None) -> tuple[str, bool]:
    """Start the IP's workflow unless one is running: (workflow id, started)."""
    settings = settings or get_settings()
    wid = workflow_id(plan.tenant, plan.address)
    try:
        await client.start_workflow(
            IpWarmupWorkflow.run, inp or warmup_input(plan, settings, reason), id=wid,
            task_queue=task_queue or settings.task_queue,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(TENANT, plan.tenant), SearchAttributePair(IP_ADDRESS, plan.address),
                SearchAttributePair(WARMUP_PHASE, plan.phase), SearchAttributePair(IP_STATUS, "warming")]),
            memo={"tenant": plan.tenant, "ip": plan.address, "domain": plan.domain},
            static_summary=f"Warmup of {plan.address} ({plan.tenant}, {plan.domain})"[:200],
        )
    except WorkflowAlreadyStartedError:
        return wid, False
    return wid, True


async def start_warmup(client: Client, address: str, reason: str, actor: str, override_dns: str | None = None,
                       url: str | None = None, task_queue: str | None = None) -> StartOutcome:
    plan = await asyncio.to_thread(prepare_start, address, reason, actor, override_dns, url)
    wid, started = await start_workflow(client, plan, reason, task_queue=task_queue)
    return StartOutcome(wid, started, plan)


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


async def start_all_warming(client: Client, tenant: str | None = None, reason: str = "warmup started",
                            url: str | None = None, task_queue: str | None = None) -> list[StartOutcome]:
    plans = await asyncio.to_thread(warming_plans, tenant, url)
    outcomes = []
    for plan in plans:
        wid, started = await start_workflow(client, plan, reason, task_queue=task_queue)
        outcomes.append(StartOutcome(wid, started, plan))
    return outcomes


def _locate(address: str, url: str | None = None) -> tuple[str, str]:
    with session_scope(url) as session:
        ip, tenant, _ = _ip(session, address)
        return tenant.name, ip.address


async def _running_handle(client: Client, address: str, url: str | None) -> Any:
    tenant, addr = await asyncio.to_thread(_locate, address, url)
    handle = client.get_workflow_handle(workflow_id(tenant, addr))
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise WarmupError(f"no warmup workflow for {addr} (start it with `email-engine warmup start {addr}`)") \
                from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise WarmupError(f"the warmup of {addr} is not running ({desc.status.name.lower() if desc.status else '?'})")
    return handle


async def pause_warmup(client: Client, address: str, reason: str, days: float | None = None,
                       actor: str = "operator", url: str | None = None) -> str:
    handle = await _running_handle(client, address, url)
    await handle.signal(IpWarmupWorkflow.pause, PauseRequest(reason=reason, days=days, actor=actor))
    return str(handle.id)


async def resume_warmup(client: Client, address: str, reason: str = "", actor: str = "operator",
                        url: str | None = None) -> str:
    handle = await _running_handle(client, address, url)
    await handle.signal(IpWarmupWorkflow.resume, ResumeRequest(reason=reason, actor=actor))
    return str(handle.id)


async def warmup_status(client: Client, tenant: str, address: str) -> WarmupStatus | None:
    handle = client.get_workflow_handle(workflow_id(tenant, address))
    try:
        return await handle.query(IpWarmupWorkflow.status)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def warmup_statuses(client: Client, tenant: str | None = None, url: str | None = None
                          ) -> list[tuple[StartPlan, WarmupStatus | None]]:
    """Every warming IP of the inventory with its workflow's status query (None: no workflow)."""
    plans = await asyncio.to_thread(warming_plans, tenant, url)
    sem = asyncio.Semaphore(16)

    async def one(plan: StartPlan) -> tuple[StartPlan, WarmupStatus | None]:
        async with sem:
            return plan, await warmup_status(client, plan.tenant, plan.address)

    return list(await asyncio.gather(*(one(p) for p in plans)))


def status_dict(plan: StartPlan, st: WarmupStatus | None) -> dict[str, Any]:
    if st is None:
        return {"tenant": plan.tenant, "address": plan.address, "workflow": None, "phase": plan.phase,
                "quota": plan.quota}
    return {"tenant": plan.tenant, "address": plan.address, "workflow": st.workflow_id, **asdict(st)}


def restore_ip(address: str, restore_status: str, reason: str, actor: str, url: str | None = None) -> bool:
    """Put a warming IP back to `restore_status` (idempotent): True if something changed."""
    target = IpStatus(restore_status)
    if target == IpStatus.WARMING:
        raise WarmupError("restore_status must not be warming")
    with session_scope(url) as session:
        ip, tenant, _ = _ip(session, address)
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


async def cancel_warmup(client: Client, address: str, restore_status: str, reason: str, actor: str,
                        url: str | None = None) -> bool:
    tenant, addr = await asyncio.to_thread(_locate, address, url)
    handle = client.get_workflow_handle(workflow_id(tenant, addr))
    try:
        await handle.terminate(f"warmup cancelled: {reason}")
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    return await asyncio.to_thread(restore_ip, addr, restore_status, reason, actor, url)


# ------------------------------------------------------------------------------------------ activities


def _non_retryable(err: Exception, kind: str) -> ApplicationError:
    return ApplicationError(str(err), type=kind, non_retryable=True)


@activity.defn(name="start_ip_warmup")
async def start_ip_warmup(req: StartWarmupRequest) -> str:
    """Move the IP into warming (DNS gate) and start its workflow; returns the workflow id."""
    try:
        outcome = await start_warmup(activity.client(), req.address, req.reason, req.actor, req.override_dns,
                                     task_queue=activity.info().task_queue)
    except (WarmupError, ValueError) as err:
        raise _non_retryable(err, "WarmupRefused") from None
    return outcome.workflow_id


@activity.defn(name="cancel_ip_warmup")
async def cancel_ip_warmup(req: CancelWarmupRequest) -> bool:
    """Compensation of start_ip_warmup: stop the workflow, restore the IP's status; True if it changed."""
    try:
        return await cancel_warmup(activity.client(), req.address, req.restore_status, req.reason, req.actor)
    except (WarmupError, ValueError) as err:
        raise _non_retryable(err, "WarmupCancelRefused") from None
