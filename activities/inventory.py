"""Apply a validated inventory file to the database, in one transaction, and read the fleet back."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from activities.db import session_scope
from models import inventory as inv_mod
from models.enums import IpStatus
from models.inventory import InventoryError, InventoryFile, Ownership
from models.names import ip_version
from models.schedule import default_quota, default_weight
from models.tables import MailwizzServer, MtaHost, SendingDomain, SendingIp, StatusChange, Tenant, utcnow

#: IP fields the engine itself moves (warmup, failover): a reload of the file leaves them alone
#: unless the operator asks for it (apply_state), so reloading never rewinds a warmup.
STATE_FIELDS = ("status", "warmup_phase", "daily_quota", "weight", "phase_started_on")


@dataclass
class LoadReport:
    added: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)
    kept_state: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(sum(self.added.values()) or sum(self.updated.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "added": dict(self.added),
            "updated": dict(self.updated),
            "unchanged": dict(self.unchanged),
            "details": self.details,
            "kept_engine_state": self.kept_state,
        }


def _ownership(session: Session) -> Ownership:
    tenants = {t.id: t.name for t in session.exec(select(Tenant))}
    ips = list(session.exec(select(SendingIp)))
    addr_by_id = {ip.id: ip.address for ip in ips}
    domains = list(session.exec(select(SendingDomain)))
    return Ownership(
        ip_tenant={ip.address: tenants[ip.tenant_id] for ip in ips},
        domain_tenant={d.name: tenants[d.tenant_id] for d in domains},
        domain_ip={d.name: addr_by_id[d.ip_id] for d in domains},
        vmta_ip={ip.vmta_name: ip.address for ip in ips},
        ip_domain={addr_by_id[d.ip_id]: d.name for d in domains},
    )


def _sync(obj: Any, values: dict[str, Any]) -> list[str]:
    """Set `values` on `obj`; return the names of the fields that changed."""
    changed = []
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed.append(key)
    return changed


def _upsert(session: Session, report: LoadReport, kind: str, label: str, existing: Any,
            model: type, values: dict[str, Any], flush: bool = True) -> Any:
    """Insert or update one row. flush=False when nothing needs its id at once (a fleet's rows are
    flushed together: one flush per row made a 10,000-IP load take half a minute)."""
    if existing is None:
        obj = model(**values)
        session.add(obj)
        report.added[kind] += 1
        report.details.append(f"+ {kind} {label}")
        if flush:
            session.flush()
        return obj
    changed = _sync(existing, values)
    if changed:
        report.updated[kind] += 1
        report.details.append(f"~ {kind} {label}: {', '.join(changed)}")
        session.add(existing)
    else:
        report.unchanged[kind] += 1
    return existing


def apply_inventory(inv: InventoryFile, *, actor: str, url: str | None = None, dry_run: bool = False,
                    apply_state: bool = False, today: dt.date | None = None) -> LoadReport:
    """Validate `inv` against what the database holds, then write it all or nothing."""
    today = today or dt.datetime.now(dt.UTC).date()
    report = LoadReport(dry_run=dry_run)
    with session_scope(url) as session:
        errors = inv_mod.check_against_database(inv, _ownership(session))
        if errors:
            raise InventoryError(errors)
        if apply_state and not dry_run:
            _lock_ips(session, [t.name for t in inv.tenants])
        hosts = {h.name: h for h in session.exec(select(MtaHost))}
        for h in inv.mta_hosts:
            hosts[h.name] = _upsert(session, report, "mta_host", h.name, hosts.get(h.name), MtaHost,
                                    h.model_dump())
        tenants = {t.name: t for t in session.exec(select(Tenant))}
        ips = {ip.address: ip for ip in session.exec(select(SendingIp))}
        domains = {d.name: d for d in session.exec(select(SendingDomain))}
        for t in inv.tenants:
            tenant = _upsert(session, report, "tenant", t.name, tenants.get(t.name), Tenant, {
                "name": t.name, "mta_host_id": hosts[t.mta_host].id, "pool_name": t.pool_name,
                "max_bounce_rate": t.max_bounce_rate, "max_complaint_rate": t.max_complaint_rate,
                "min_open_rate": t.min_open_rate, "min_delivered_share": t.min_delivered_share,
                "bounce_domain": t.bounce_domain, "fbl_domain": t.fbl_domain,
                "active_guard": t.active_guard.value if t.active_guard else None,
                "guard_step_down_phase": t.guard_step_down_phase.value if t.guard_step_down_phase else None,
                "guard_max_capacity_loss_share": t.guard_max_capacity_loss_share,
            })
            mw = session.exec(select(MailwizzServer).where(MailwizzServer.tenant_id == tenant.id)).first()
            _upsert(session, report, "mailwizz_server", t.name, mw, MailwizzServer,
                    {"tenant_id": tenant.id, **t.mailwizz.model_dump()})
            # Two passes: every IP of the tenant, one flush (their ids), then their audit rows and domains.
            # Each entry's report lines stay together (its IP's line, then its domain's).
            start = len(report.details)
            applied = []
            for index, entry in enumerate(t.ips):
                mark = len(report.details)
                ip, change = _apply_ip(session, report, tenant, t, entry, index, ips.get(entry.address),
                                       actor=actor, apply_state=apply_state, today=today)
                applied.append((ip, change, report.details[mark:]))
            session.flush()
            del report.details[start:]
            for entry, (ip, change, lines) in zip(t.ips, applied, strict=True):
                report.details.extend(lines)
                assert ip.id is not None
                if change is not None:
                    change.ip_id = ip.id
                    session.add(change)
                _upsert(session, report, "domain", entry.domain, domains.get(entry.domain), SendingDomain, {
                    "name": entry.domain, "tenant_id": tenant.id, "ip_id": ip.id,
                    "dkim_selector": entry.dkim_selector, "dkim_key_path": t.key_path(entry),
                }, flush=False)
            session.flush()
        _apply_webhooks(session, report, inv)
        _apply_firewall(session, report, inv)
        if dry_run:
            session.rollback()
    return report


def _lock_ips(session: Session, tenants: list[str]) -> None:
    """Lock the IP rows of the file's tenants (SELECT ... FOR UPDATE, in id order, until commit) and
    re-read them as committed, before anything is written: --apply-state writes status, phase and quota,
    so it takes the row locks every status writer takes (warmup steps, failover, standby claims). A
    quarantine in progress is waited for, then seen: the file's state is written over what the IP really
    is, and the audit row names it. SQLite has no row locks (one writer at a time)."""
    owners = select(Tenant.id).where(col(Tenant.name).in_(tenants))
    session.exec(select(SendingIp).where(col(SendingIp.tenant_id).in_(owners)).order_by(col(SendingIp.id))
                 .with_for_update().execution_options(populate_existing=True)).all()


def _apply_webhooks(session: Session, report: LoadReport, inv: InventoryFile) -> None:
    """Receivers as the file says; one left out of the file is disabled (its outbox rows are kept)."""
    from models.webhook_tables import WebhookReceiver

    existing = {r.name: r for r in session.exec(select(WebhookReceiver))}
    for w in inv.webhooks:
        _upsert(session, report, "webhook", w.name, existing.pop(w.name, None), WebhookReceiver,
                {"name": w.name, "url": w.url, "events": ",".join(w.events), "enabled": w.enabled})
    for gone in existing.values():
        _upsert(session, report, "webhook", gone.name, gone, WebhookReceiver, {"enabled": False})


def _apply_firewall(session: Session, report: LoadReport, inv: InventoryFile) -> None:
    """The `[firewall]` section as one row; a file without it removes the row (no ruleset is rendered or
    deployed any more; a table already applied on a host stays until removed there)."""
    from models.firewall_tables import FirewallPolicyRow

    row = session.exec(select(FirewallPolicyRow)).first()
    if inv.firewall is None:
        if row is not None:
            session.delete(row)
            report.updated["firewall"] += 1
            report.details.append("- firewall: the file has no [firewall] section")
        return
    document = inv.firewall.model_dump_json()
    if row is not None and row.document == document:
        report.unchanged["firewall"] += 1
        return
    _upsert(session, report, "firewall", "policy", row, FirewallPolicyRow,
            {"document": document, "updated_at": utcnow()})


def _apply_ip(session: Session, report: LoadReport, tenant: Tenant, t: inv_mod.TenantEntry,
              entry: inv_mod.IpEntry, index: int, existing: SendingIp | None, *, actor: str,
              apply_state: bool, today: dt.date) -> tuple[SendingIp, StatusChange | None]:
    """The IP's row (not flushed) and, when its status or phase changes, its audit row (ip_id set by the
    caller after the flush)."""
    quota = entry.daily_quota if entry.daily_quota is not None else default_quota(entry.status, entry.phase)
    state = {
        "status": entry.status,
        "warmup_phase": entry.phase,
        "daily_quota": quota,
        "weight": entry.weight if entry.weight is not None else default_weight(entry.status, quota),
        "phase_started_on": (entry.phase_started_on or today) if entry.phase else None,
    }
    identity = {
        "address": entry.address, "version": ip_version(entry.address), "hostname": entry.hostname,
        "tenant_id": tenant.id, "purpose": entry.purpose, "vmta_name": t.vmta_name(entry, index),
    }
    if existing is not None and not apply_state:
        differs = [k for k, v in state.items() if getattr(existing, k) != v and k != "phase_started_on"]
        if differs:
            report.kept_state.append(f"{entry.address}: file says {entry.status.value}"
                                     f"{'/' + entry.phase.value if entry.phase else ''}, database keeps "
                                     f"{existing.status.value}"
                                     f"{'/' + existing.warmup_phase.value if existing.warmup_phase else ''}")
        values = identity
    else:
        values = {**identity, **state}
        if existing is not None and entry.phase_started_on is None:
            values["phase_started_on"] = existing.phase_started_on or values["phase_started_on"]
    old_status = existing.status if existing is not None else None
    old_phase = existing.warmup_phase if existing is not None else None
    ip: SendingIp = _upsert(session, report, "ip", entry.address, existing, SendingIp, values, flush=False)
    if old_status != ip.status or old_phase != ip.warmup_phase:
        ip.status_changed_at = utcnow()
        session.add(ip)
        return ip, StatusChange(
            ip_id=ip.id or 0, from_status=old_status.value if old_status else None, to_status=ip.status.value,
            from_phase=old_phase.value if old_phase else None,
            to_phase=ip.warmup_phase.value if ip.warmup_phase else None,
            reason="inventory load", actor=actor,
        )
    return ip, None


def fleet(url: str | None = None, tenant: str | None = None) -> dict[str, Any]:
    """The fleet as plain data: per-tenant counts by status and one row per IP."""
    with session_scope(url) as session:
        tenants = {t.id: t for t in session.exec(select(Tenant).order_by(col(Tenant.name)))}
        if tenant is not None and tenant not in {t.name for t in tenants.values()}:
            raise LookupError(f"no tenant named {tenant!r}")
        domains: dict[int | None, SendingDomain] = {d.ip_id: d for d in session.exec(select(SendingDomain))}
        rows = []
        counts: dict[str, Counter[str]] = {t.name: Counter() for t in tenants.values()
                                           if tenant is None or t.name == tenant}
        for ip in session.exec(select(SendingIp).order_by(col(SendingIp.tenant_id), col(SendingIp.id))):
            tname = tenants[ip.tenant_id].name
            if tenant is not None and tname != tenant:
                continue
            counts[tname][ip.status.value] += 1
            d = domains.get(ip.id)
            rows.append({
                "tenant": tname, "address": ip.address, "hostname": ip.hostname,
                "domain": d.name if d else None, "vmta": ip.vmta_name, "status": ip.status.value,
                "phase": ip.warmup_phase.value if ip.warmup_phase else None,
                "daily_quota": ip.daily_quota, "weight": ip.weight,
            })
    return {
        "tenants": {
            name: {"total": sum(c.values()), "by_status": {s.value: c.get(s.value, 0) for s in IpStatus}}
            for name, c in counts.items()
        },
        "ips": rows,
    }
