"""Pure PowerMTA v5 renderer: FleetSnapshot -> {relative path: text}.

Only directives from the PowerMTA v5 User's Guide (notes/mta.md §1) are emitted; the list of them,
with the scopes each may appear in and the guide section, is models/mta_render/powermta_directives.toml
(the tests parse every render and check it against that list).

Layout (paths relative to the PowerMTA config dir, e.g. /etc/pmta):
  email-engine/main.conf               includes one fragment per tenant (explicit, sorted)
  email-engine/tenants/<tenant>.conf   that tenant's VMTAs, its pool, its feeder's <source>
The operator's `config` gets one managed block: `include <config_dir>/email-engine/main.conf`.
"""

from __future__ import annotations

import posixpath

from models.mta_render.common import checked_tenant, quota_label
from models.snapshot import FleetSnapshot, IpView, TenantView

MANAGED = "email-engine"


def _vmta(ip: IpView, out: list[str]) -> None:
    pool_note = "in the pool" if ip.sending else "NOT in any pool"
    out.append(f"# {ip.address} ({quota_label(ip)}): {pool_note}")
    if not ip.sending:
        out.append("# Still defined: deleting a VirtualMTA while mail is queued for it bounces that mail with")
        out.append("# 5.3.5 'specified VirtualMTA does not exist' (User's Guide 8.5.2). Out of the pool, no new")
        out.append("# mail is routed to it by default-virtual-mta; its queue drains.")
    out.append(f"<virtual-mta {ip.vmta}>")
    out.append(f"    smtp-source-host {ip.address} {ip.hostname}")
    out.append(f"    domain-key {ip.dkim_selector},{ip.domain},{ip.dkim_key_path}")
    if ip.daily_quota > 0:
        out.append(f"    # quota: {ip.address} may send {ip.daily_quota} messages/day ({quota_label(ip)});")
        out.append("    # max-smtp-msg-rate limits recipients across all queues of this VirtualMTA (3.3.12.2)")
        out.append(f"    max-smtp-msg-rate {ip.daily_quota}/d")
    else:
        out.append(f"    # quota: daily quota is 0 ({quota_label(ip)}); no rate limit rendered, it is in no pool")
    out.append("    <domain *>")
    out.append("        # signing is off by default (3.3.10.19): sign with this VirtualMTA's domain-key")
    out.append("        dkim-sign yes")
    out.append("    </domain>")
    out.append("</virtual-mta>")
    out.append("")


def render_tenant(t: TenantView) -> str:
    """One tenant's fragment."""
    checked_tenant(t)
    sending = [ip for ip in t.ips if ip.sending]
    out = [
        f"# Tenant {t.name}: rendered by email-engine from the inventory. Do not edit; changes are overwritten.",
        f"# {len(t.ips)} IPs, {len(sending)} in pool {t.pool} (active and warming only).",
        "# Daily quotas (warmup phase or active) are enforced per IP with max-smtp-msg-rate N/d on its",
        "# VirtualMTA (3.3.12.2). cold-virtual-mta is not used: it counts per destination domain and needs",
        "# a warm VMTA to overflow to (3.3.12.4, 10.7).",
        "",
    ]
    for ip in t.ips:
        _vmta(ip, out)
    if sending:
        out.append(f"# Pool of {t.name}: round-robin over its active and warming VirtualMTAs (3.3.13).")
        out.append("# Pools have no weight directive; each member's daily quota is its max-smtp-msg-rate above.")
        out.append(f"<virtual-mta-pool {t.pool}>")
        out.extend(f"    virtual-mta {ip.vmta}" for ip in sending)
        out.append("</virtual-mta-pool>")
        out.append("")
    else:
        out.append(f"# Tenant {t.name} has no active or warming IP: no pool is rendered.")
        out.append("")
    if t.feeder_ip:
        out.append(f"# {t.name}'s MailWizz feeder. Its mail goes to its own pool only: default-virtual-mta")
        out.append("# names the pool; X-Virtual-MTA (set by the rotation service) picks one of its VMTAs.")
        out.append("# Relaying is allowed for this feeder address only; other clients keep the defaults")
        out.append("# (always-allow-relaying and process-x-virtual-mta both default to false, 3.3.7).")
        out.append("# The guide documents no per-source allow-list for X-Virtual-MTA: the rotation service only")
        out.append("# hands this feeder its own tenant's VMTA names.")
        out.append(f"<source {t.feeder_ip}>")
        if sending:
            out.append("    always-allow-relaying yes")
            out.append("    process-x-virtual-mta yes")
            out.append(f"    default-virtual-mta {t.pool}")
        else:
            out.append("    # no sending IP: relaying stays refused for this feeder")
            out.append("    always-allow-relaying no")
            out.append("    process-x-virtual-mta no")
        out.append("</source>")
        out.append("")
    return "\n".join(out)


def render(snapshot: FleetSnapshot, config_dir: str) -> dict[str, str]:
    """All files: main.conf plus one fragment per tenant (sorted by tenant name)."""
    tenants = sorted(snapshot.tenants, key=lambda t: t.name)
    files: dict[str, str] = {}
    main = [
        "# email-engine: PowerMTA VirtualMTAs, pools and feeder sources, one fragment per tenant.",
        "# Rendered from the inventory; do not edit. Validate with `pmta test config`, apply with `pmta reload`.",
        "",
    ]
    for t in tenants:
        rel = f"{MANAGED}/tenants/{t.name}.conf"
        files[rel] = render_tenant(t)
        main.append(f"include {posixpath.join(config_dir, rel)}")
    files[f"{MANAGED}/main.conf"] = "\n".join(main) + "\n"
    return files


def config_block(config_dir: str) -> str:
    """The engine's block in the operator's `config`."""
    return f"include {posixpath.join(config_dir, MANAGED, 'main.conf')}"
