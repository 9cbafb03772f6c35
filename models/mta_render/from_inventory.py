"""A FleetSnapshot straight from a parsed inventory file (no database): previews, tests, benchmarks.

Mirrors what activities.inventory.apply_inventory stores (VMTA names, key paths, default quotas and
weights), so rendering this snapshot equals rendering the loaded inventory's snapshot.
"""

from __future__ import annotations

from models.inventory import InventoryFile
from models.names import ip_version
from models.schedule import default_quota, default_weight
from models.snapshot import FleetSnapshot, IpView, MtaHostView, TenantView


def snapshot_from_inventory(inv: InventoryFile) -> FleetSnapshot:
    hosts = tuple(sorted((MtaHostView(name=h.name, address=h.address, backend=h.backend, ssh_port=h.ssh_port,
                                      ssh_user=h.ssh_user, config_dir=h.config_dir, enabled=h.enabled,
                                      mta_user=h.mta_user)
                          for h in inv.mta_hosts), key=lambda h: h.name))
    tenants = []
    for t in sorted(inv.tenants, key=lambda t: t.name):
        ips = []
        for i, e in enumerate(t.ips):
            quota = e.daily_quota if e.daily_quota is not None else default_quota(e.status, e.phase)
            ips.append(IpView(
                address=e.address, version=ip_version(e.address), hostname=e.hostname, tenant=t.name,
                status=e.status, phase=e.phase, daily_quota=quota,
                weight=e.weight if e.weight is not None else default_weight(e.status, quota),
                vmta=t.vmta_name(e, i), domain=e.domain, dkim_selector=e.dkim_selector,
                dkim_key_path=t.key_path(e), purpose=e.purpose,
            ))
        tenants.append(TenantView(name=t.name, pool=t.pool_name, mta_host=t.mta_host,
                                  feeder_ip=t.mailwizz.source_ip, mailwizz_url=t.mailwizz.base_url,
                                  ips=tuple(ips), bounce_domain=t.bounce_domain, fbl_domain=t.fbl_domain))
    return FleetSnapshot(hosts=hosts, tenants=tuple(tenants))
