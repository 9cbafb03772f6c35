"""Pure Postfix (+ OpenDKIM) renderer: FleetSnapshot -> {relative path: text}.

How each tenant's mail leaves only through its own IPs, weighted by quota (verified against real
Postfix 3.7 in tests/test_mta_postfix_e2e.py):

* master.cf: one smtp(8) transport per IP, `ee-<vmta>`, with `-o smtp_bind_address=` (or
  `smtp_bind_address6=`), `-o smtp_bind_address_enforce=yes` (defer rather than leave from another
  address), `-o smtp_helo_name=` and `-o syslog_name=postfix-<vmta>`.
* `randmap:` ignores the lookup key (src/util/dict_random.c), so one randmap cannot choose per tenant
  and `sender_dependent_default_transport_maps` cannot be per-tenant random. Instead smtpd picks the
  route when the feeder submits: `smtpd_sender_restrictions` looks the sender's domain up in
  `sender_tenants` (texthash) whose result is the tenant's restriction class; the class is
  `check_sender_access pipemap:{randmap:{<transport repeated by quota share>}, texthash:filters}, permit`:
  randmap picks a transport name, `filters` maps it to the access action `FILTER ee-<vmta>:`, and the
  message is delivered by that transport (empty next hop = the recipient domain, or
  `default_filter_nexthop`). FILTER does not end the restriction list, so the class ends with
  `check_client_access inline:{FEEDER=OK}, reject`: only the tenant's own feeder (its MailWizz
  server's IP, like PowerMTA's `<source FEEDER>`) may send with the tenant's domains. A sender domain of
  no tenant is rejected; a tenant without sending IPs is deferred (450). Mail therefore never falls
  through to `default_transport`. (Relaying itself still needs the feeder in `mynetworks`.)
* Weights: each sending IP appears in its tenant's randmap in proportion to its daily quota (divided
  by the gcd of the quotas; scaled to at most MAX_SLOTS entries per tenant, never below 1).
* OpenDKIM: KeyTable (`name domain:selector:keyfile`) and SigningTable (`domain name`, file dataset).

Files (relative to the Postfix config dir):
  email-engine/main.cf          parameters, copied into the managed block of main.cf
  email-engine/master.cf        transports, copied into the managed block of master.cf
  email-engine/sender_tenants   texthash: sender domain -> restriction class (or a 450 for no pool)
  email-engine/filters          texthash: transport name -> FILTER action
  email-engine/opendkim/KeyTable, email-engine/opendkim/SigningTable
"""

from __future__ import annotations

import math
import posixpath
from functools import reduce

from models.mta_render.common import checked_tenant, quota_label
from models.snapshot import FleetSnapshot, IpView, TenantView

MANAGED = "email-engine"
#: Upper bound of randmap entries per tenant (keeps main.cf lines reasonable at 10,000 IPs).
MAX_SLOTS = 2000


def transport_name(ip: IpView) -> str:
    return f"ee-{ip.vmta}"


def restriction_class(tenant: str) -> str:
    return "ee_tenant_" + tenant.replace("-", "_")


def weights(ips: list[IpView]) -> dict[str, int]:
    """Randmap repetitions per transport, proportional to daily quota (quota 0 -> not listed)."""
    quotas = {transport_name(ip): ip.daily_quota for ip in ips if ip.daily_quota > 0}
    if not quotas:
        return {}
    g = reduce(math.gcd, quotas.values())
    reps = {k: q // g for k, q in quotas.items()}
    total = sum(reps.values())
    if total > MAX_SLOTS:
        reps = {k: max(1, round(r * MAX_SLOTS / total)) for k, r in reps.items()}
    return reps


def _transport(ip: IpView, name: str) -> str:
    """master.cf lines of one transport, as one text (joined with the other entries by newlines)."""
    # the address is canonical (checked_tenant): IPv6 text always has a colon, IPv4 text never
    bind = "smtp_bind_address6" if ":" in ip.address else "smtp_bind_address"
    return (f"# {ip.tenant} {ip.address} ({quota_label(ip)}){'' if ip.sending else ': not in any pool'}\n"
            f"{name} unix - - n - - smtp\n"
            f"  -o {bind}={ip.address}\n"
            "  -o smtp_bind_address_enforce=yes\n"
            f"  -o smtp_helo_name={ip.hostname}\n"
            f"  -o syslog_name=postfix-{ip.vmta}")


def render(snapshot: FleetSnapshot, config_dir: str) -> dict[str, str]:
    tenants: list[TenantView] = [checked_tenant(t) for t in sorted(snapshot.tenants, key=lambda t: t.name)]
    d = posixpath.join(config_dir, MANAGED)
    master = ["# email-engine: one smtp transport per sending IP (rendered; do not edit)."]
    main = [
        "# email-engine: per-tenant transport choice at submission (rendered; do not edit).",
        "# Owned parameters: smtpd_restriction_classes, smtpd_sender_restrictions, ee_tenant_*.",
    ]
    senders: list[str] = ["# sender domain -> tenant restriction class"]
    filters: list[str] = ["# transport -> access action that routes the message through it"]
    keytable: list[str] = []
    signing: list[str] = []
    classes: list[str] = []
    for t in tenants:
        sending = [ip for ip in t.ips if ip.sending]
        reps = weights(sending)
        for ip in t.ips:
            name = transport_name(ip)
            master.append(_transport(ip, name))
            filters.append(f"{name} FILTER {name}:")
            key = f"{ip.dkim_selector}._domainkey.{ip.domain}"
            keytable.append(f"{key} {ip.domain}:{ip.dkim_selector}:{ip.dkim_key_path}")
            signing.append(f"{ip.domain} {key}")
        cls = restriction_class(t.name)
        if reps:
            classes.append(cls)
            main.append(f"# {t.name}: " + ", ".join(
                f"{transport_name(ip)} x{reps[transport_name(ip)]} ({quota_label(ip)})"
                for ip in sending if transport_name(ip) in reps))
            slots = ",".join(",".join([name] * n) for name, n in reps.items())  # every n >= 1
            # only the tenant's own feeder may use its domains (as PowerMTA's <source FEEDER>): OK ends
            # the class with the FILTER kept; any other client falls through to reject
            tail = f"check_client_access inline:{{{t.feeder_ip}=OK}}, reject" if t.feeder_ip else "permit"
            main.append(f"{cls} = check_sender_access pipemap:{{randmap:{{{slots}}},texthash:{d}/filters}}, {tail}")
            action = cls
        else:
            main.append(f"# {t.name}: no active or warming IP with a quota; its mail is deferred")
            action = f"450 4.7.1 tenant {t.name} has no sending IP"
        senders.extend(f"{ip.domain} {action}" for ip in t.ips)
    main.append(f"smtpd_restriction_classes = {', '.join(classes)}")
    main.append(f"smtpd_sender_restrictions = check_sender_access texthash:{d}/sender_tenants, "
                "reject")
    return {
        f"{MANAGED}/main.cf": "\n".join(main) + "\n",
        f"{MANAGED}/master.cf": "\n".join(master) + "\n",
        f"{MANAGED}/sender_tenants": "\n".join(senders) + "\n",
        f"{MANAGED}/filters": "\n".join(filters) + "\n",
        f"{MANAGED}/opendkim/KeyTable": "\n".join(keytable) + "\n",
        f"{MANAGED}/opendkim/SigningTable": "\n".join(signing) + "\n",
    }
