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
import re
from dataclasses import dataclass

from models import names
from models.accounting import RECORD_FIELDS
from models.mta_render import cold_vmta
from models.mta_render.cold_vmta import ColdPlan
from models.mta_render.common import checked_tenant, quota_label
from models.snapshot import FleetSnapshot, IpView, TenantView

MANAGED = "email-engine"


_NOT_SENDING = (
    "# Still defined: deleting a VirtualMTA while mail is queued for it bounces that mail with\n"
    "# 5.3.5 'specified VirtualMTA does not exist' (User's Guide 8.5.2). Out of the pool, no new\n"
    "# mail is routed to it by default-virtual-mta; its queue drains.")
_RATE_NOTE = "    # max-smtp-msg-rate limits recipients across all queues of this VirtualMTA (3.3.12.2)"
_COLD_NOTE = (
    "    # warming IPs fed from this VirtualMTA: the first N messages per recipient domain and day\n"
    "    # submitted here go to the cold VirtualMTA at reception, counters reset at midnight\n"
    "    # (cold-virtual-mta 3.3.12.4, max-cold-virtual-mta-msg 3.3.10.48, 10.7); several cold\n"
    "    # VirtualMTAs are used round-robin, the limit applying to each")
_SIGN_ALL = (
    "    <domain *>\n"
    "        # signing is off by default (3.3.10.19): sign with this VirtualMTA's domain-key\n"
    "        dkim-sign yes\n"
    "    </domain>")


def _vmta(ip: IpView, out: list[str], cp: ColdPlan) -> None:
    """One <virtual-mta>. Entries of `out` are joined by newlines; a constant block is one entry."""
    warm_of = cp.warm_of
    label = quota_label(ip)
    if ip.vmta in cp.members:
        pool_note = "in the pool"
    elif ip.vmta in warm_of:
        pool_note = f"NOT in the pool: cold VirtualMTA of {warm_of[ip.vmta]}, which hands it its daily quota"
    elif ip.sending and ip.daily_quota > 0:
        pool_note = "NOT in the pool: no warm VirtualMTA could carry it, so it gets no mail"
    else:
        pool_note = "NOT in any pool"
    out.append(f"# {ip.address} ({label}): {pool_note}")
    if not ip.sending:
        out.append(_NOT_SENDING)
    out.append(f"<virtual-mta {ip.vmta}>\n"
               f"    smtp-source-host {ip.address} {ip.hostname}\n"
               f"    domain-key {ip.dkim_selector},{ip.domain},{ip.dkim_key_path}")
    if ip.daily_quota > 0:
        out.append(f"    # quota: {ip.address} may send {ip.daily_quota} messages/day ({label});\n"
                   f"{_RATE_NOTE}\n"
                   f"    max-smtp-msg-rate {ip.daily_quota}/d")
    else:
        out.append(f"    # quota: daily quota is 0 ({label}); no rate limit rendered, it is in no pool")
    colds = cp.colds.get(ip.vmta, ())
    if colds:
        out.append(_COLD_NOTE)
        for c in colds:
            out.append(f"    cold-virtual-mta {c.vmta}")
    out.append(_SIGN_ALL)
    limits = cp.limits.get(ip.vmta, {})
    if limits:
        out.append(f"    # per-provider split of the cold quota {colds[0].daily_quota}/day ({quota_label(colds[0])});")
        out.append("    # other domains stay here (a <domain *> limit would apply to every domain separately)")
    for domain, n in limits.items():
        out.append(f"    <domain {domain}>\n"
                   "        dkim-sign yes\n"
                   f"        max-cold-virtual-mta-msg {n}/d\n"
                   "    </domain>")
    out.append("</virtual-mta>\n")


def render_tenant(t: TenantView) -> str:
    """One tenant's fragment (its values re-checked)."""
    return _fragment(checked_tenant(t))


def _fragment(t: TenantView) -> str:
    """One tenant's fragment from an already checked tenant (render checks each tenant once)."""
    cp = cold_vmta.plan(t)
    out = [
        f"# Tenant {t.name}: rendered by email-engine from the inventory. Do not edit; changes are overwritten.",
        f"# {len(t.ips)} IPs, {len(cp.pool)} in pool {t.pool}, {sum(map(len, cp.colds.values()))} warming as cold "
        "VirtualMTAs.",
        "# Daily quotas (warmup phase or active) are enforced per IP with max-smtp-msg-rate N/d on its",
        "# VirtualMTA (3.3.12.2). Warming IPs are not pool members (a round-robin pool would offer them an",
        "# active IP's share): each is the cold VirtualMTA of one active IP, which re-routes to it at most",
        "# its daily quota, split over the large mailbox providers (3.3.12.4, 3.3.10.48, 10.7).",
        "",
    ]
    for ip in t.ips:
        _vmta(ip, out, cp)
    if cp.pool:
        if cp.rate_limit_only:
            out.append(f"# Pool of {t.name}: no active IP, so no warm VirtualMTA for cold re-routing; the guide")
            out.append("# says to use rate limits alone then (10.7). Mail beyond the quotas waits in the queues.")
        else:
            out.append(f"# Pool of {t.name}: round-robin over its active VirtualMTAs (3.3.13).")
        out.append("# Pools have no weight directive; each member's daily quota is its max-smtp-msg-rate above.")
        out.append(f"<virtual-mta-pool {t.pool}>")
        out.extend(f"    virtual-mta {name}" for name in cp.pool)
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
        if cp.pool:
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


@dataclass(frozen=True)
class AccountingTarget:
    """Where the engine's accounting files go: EMAIL_ENGINE_ACCOUNTING_DIR and _GLOB (the ingest reads
    `<directory>/<glob>`). PowerMTA adds the date to the configured name, `acct.csv` giving
    `acct-2007-09-05-0000.csv` (User's Guide 11.3.1), so the glob must be `NAME-*.csv`."""

    directory: str = "/var/log/pmta"
    glob: str = "email-engine-acct-*.csv"

    def path(self) -> str:
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._]*(?:-[A-Za-z0-9._]+)*)-\*\.csv", self.glob)
        if not m:
            raise names.NameError_(
                f"accounting glob {self.glob!r} is not NAME-*.csv: PowerMTA names its accounting files "
                "NAME-YYYY-MM-DD-NNNN.csv (User's Guide 11.3.1)")
        return posixpath.join(names.key_path(self.directory.rstrip("/") or "/"), f"{m.group(1)}.csv")


def _accounting(target: AccountingTarget) -> list[str]:
    fields = [f"    record-fields {kind} {','.join(cols)}" for kind, cols in RECORD_FIELDS.items()]
    return [
        "# Accounting the warmup gate reads (hourly ingest of EMAIL_ENGINE_ACCOUNTING_DIR/_GLOB over SFTP):",
        "# exactly the record types and fields the ingest parses (models/accounting.py RECORD_FIELDS).",
        "# <acct-file> 3.3.11; records 3.3.11.11 (rb needs <bounce-processor>, f <feedback-loop-processor>);",
        "# record-fields 3.3.11.12; iso-times 3.3.11.7 (the parser reads ISO times); max-size 3.3.11.4 starts a",
        "# new dated file in place; delete-after 3.3.11.1 (the ingest runs hourly). File format: 11.2.9.",
        f"<acct-file {target.path()}>",
        f"    records {','.join(RECORD_FIELDS)}",
        *fields,
        "    iso-times yes",
        "    max-size 250M",
        "    delete-after 8d",
        "</acct-file>",
        "",
    ]


def _processors(tenants: list[TenantView]) -> list[str]:
    bounce = [(t.name, t.bounce_domain) for t in tenants if t.bounce_domain]
    fbl = [(t.name, t.fbl_domain) for t in tenants if t.fbl_domain]
    out: list[str] = []
    if not bounce and not fbl:
        return ["# No tenant has a bounce_domain or fbl_domain: no rb or f records will be written.", ""]
    out += [
        "# Report domains: their MX is this host (`email-engine dns records`). relay-domain accepts mail for",
        "# them from any host (3.3.1.32.2); what the processors do not consume (errors) is discarded",
        "# (type discard, 3.3.10.51; 12.4) instead of being delivered to their MX, i.e. back here.",
    ]
    for name, domain in bounce + fbl:
        out += [f"relay-domain {domain}  # {name}", f"<domain {domain}>", "    type discard", "</domain>"]
    out.append("")
    for tag, entries, records, section in (("bounce-processor", bounce, "rb", "3.3.3, 12.6"),
                                           ("feedback-loop-processor", fbl, "f", "3.3.4, 12.7")):
        if not entries:
            out += [f"# No tenant has a {'bounce' if records == 'rb' else 'fbl'}_domain: no <{tag}>.", ""]
            continue
        out += [
            f"# <{tag}> ({section}): mail to these domains is parsed into `{records}` accounting records,",
            "# then discarded (deliver-matched-email / deliver-unmatched-email, default no / yes). Adding or",
            "# changing it needs a PowerMTA restart (12.6); deploys only reload.",
            f"<{tag}>",
            "    deliver-matched-email no",
            "    deliver-unmatched-email no",
            "    <address-list>  # 3.3.5",
            *(f"        domain {domain}  # {name}" for name, domain in entries),
            "    </address-list>",
            f"</{tag}>",
            "",
        ]
    return out


def render(snapshot: FleetSnapshot, config_dir: str, accounting: AccountingTarget | None = None
           ) -> dict[str, str]:
    """All files: main.conf (accounting, report processors, includes) plus one fragment per tenant."""
    tenants = sorted(snapshot.tenants, key=lambda t: t.name)
    for t in tenants:
        checked_tenant(t)
    files: dict[str, str] = {}
    main = [
        "# email-engine: PowerMTA VirtualMTAs, pools and feeder sources, one fragment per tenant.",
        "# Rendered from the inventory; do not edit. Validate with `pmta test config`, apply with `pmta reload`.",
        "",
        *_accounting(accounting or AccountingTarget()),
        *_processors(tenants),
    ]
    for t in tenants:
        rel = f"{MANAGED}/tenants/{t.name}.conf"
        files[rel] = _fragment(t)
        main.append(f"include {posixpath.join(config_dir, rel)}")
    files[f"{MANAGED}/main.conf"] = "\n".join(main) + "\n"
    return files


def notes(snapshot: FleetSnapshot) -> tuple[str, ...]:
    """What an operator should know about a render: tenants that cannot send or are not fully measured."""
    out = []
    for t in sorted(snapshot.tenants, key=lambda t: t.name):
        if not t.sending_ips:
            out.append(f"tenant {t.name} has no active or warming IP")
            continue
        cp = cold_vmta.plan(t)
        if cp.rate_limit_only:
            out.append(f"tenant {t.name} has no active IP: its warming IPs share the pool, rate-limited only, and "
                       "mail beyond their quotas queues (User's Guide 10.7)")
        out += [f"tenant {t.name}: warming IP {ip.address} gets no mail (no warm VirtualMTA with a cold VirtualMTA "
                "of the same quota is free)" for ip in cp.unplaced]
        if not t.bounce_domain:
            out.append(f"tenant {t.name} has no bounce_domain: remote bounces (rb) are not counted")
        if not t.fbl_domain:
            out.append(f"tenant {t.name} has no fbl_domain: feedback-loop complaints (f) are not counted")
    return tuple(out)


def config_block(config_dir: str) -> str:
    """The engine's block in the operator's `config`."""
    return f"include {posixpath.join(config_dir, MANAGED, 'main.conf')}"
