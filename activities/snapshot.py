"""Load a FleetSnapshot from the inventory database."""

from __future__ import annotations

from sqlmodel import col, select

from activities.db import session_scope
from models.snapshot import FleetSnapshot, IpView, MtaHostView, TenantView
from models.tables import MailwizzServer, MtaHost, SendingDomain, SendingIp, Tenant


def load_snapshot(url: str | None = None) -> FleetSnapshot:
    """The whole fleet, ordered by host name, tenant name and IP id (stable across calls)."""
    with session_scope(url) as s:
        hosts = list(s.exec(select(MtaHost).order_by(col(MtaHost.name))))
        host_name = {h.id: h.name for h in hosts}
        feeders = {m.tenant_id: m for m in s.exec(select(MailwizzServer))}
        domains: dict[int | None, SendingDomain] = {d.ip_id: d for d in s.exec(select(SendingDomain))}
        ips_by_tenant: dict[int, list[SendingIp]] = {}
        for ip in s.exec(select(SendingIp).order_by(col(SendingIp.id))):
            ips_by_tenant.setdefault(ip.tenant_id, []).append(ip)
        tenants = []
        for t in s.exec(select(Tenant).order_by(col(Tenant.name))):
            assert t.id is not None
            views = []
            for ip in ips_by_tenant.get(t.id, []):
                d = domains[ip.id]
                views.append(IpView(
                    address=ip.address, version=ip.version, hostname=ip.hostname, tenant=t.name,
                    status=ip.status, phase=ip.warmup_phase, daily_quota=ip.daily_quota, weight=ip.weight,
                    vmta=ip.vmta_name, domain=d.name, dkim_selector=d.dkim_selector,
                    dkim_key_path=d.dkim_key_path, purpose=ip.purpose,
                ))
            mw = feeders.get(t.id)
            tenants.append(TenantView(
                name=t.name, pool=t.pool_name, mta_host=host_name.get(t.mta_host_id, ""),
                feeder_ip=mw.source_ip if mw else "", mailwizz_url=mw.base_url if mw else "",
                ips=tuple(views), bounce_domain=t.bounce_domain, fbl_domain=t.fbl_domain,
            ))
        return FleetSnapshot(
            hosts=tuple(MtaHostView(name=h.name, address=h.address, backend=h.backend, ssh_port=h.ssh_port,
                                    ssh_user=h.ssh_user, config_dir=h.config_dir, enabled=h.enabled,
                                    mta_user=h.mta_user)
                        for h in hosts),
            tenants=tuple(tenants),
        )
