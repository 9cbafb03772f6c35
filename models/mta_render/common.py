"""Shared helpers of the pure renderers: re-validation of every rendered value, quota text."""

from __future__ import annotations

from models import names
from models.snapshot import IpView, TenantView


def checked_ip(ip: IpView) -> IpView:
    """Re-validate every value of an IP that reaches a config line (defence in depth: the inventory
    loader already refused bad names; a renderer never writes a value that could break a line)."""
    names.canonical_ip(ip.address)
    names.hostname(ip.hostname)
    names.domain(ip.domain)
    names.selector(ip.dkim_selector)
    names.key_path(ip.dkim_key_path)
    names.token(ip.vmta, "VMTA name")
    names.tenant(ip.tenant)
    if not isinstance(ip.daily_quota, int) or ip.daily_quota < 0:
        raise names.NameError_(f"daily quota of {ip.address} is not a non-negative integer")
    return ip


def checked_tenant(t: TenantView) -> TenantView:
    names.tenant(t.name)
    names.token(t.pool, "pool name")
    if t.feeder_ip:
        names.canonical_ip(t.feeder_ip)
    for report_domain in (t.bounce_domain, t.fbl_domain):
        if report_domain is not None:
            names.domain(report_domain)
    for ip in t.ips:
        checked_ip(ip)
    return t


def quota_label(ip: IpView) -> str:
    """`warming week_2, daily quota 100` / `active, daily quota 10000`."""
    phase = f" {ip.phase.value}" if ip.phase else ""
    return f"{ip.status.value}{phase}, daily quota {ip.daily_quota}"
