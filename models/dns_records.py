"""Pure building of the DNS records an operator publishes per sending domain (and the PTR to request).

Per IP (one domain per IP): A/AAAA of its HELO host name, SPF authorizing exactly that IP
(`v=spf1 ip4:… -all`, `ip6:` for IPv6), the DKIM public key TXT (split into strings of at most 255
bytes, RFC 7208 §3.3 / RFC 6376 §3.6.2.2), DMARC, and the PTR the IP provider must set (forward-
confirmed: PTR -> host name -> A -> the IP).
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from models.snapshot import IpView, TenantView

#: DMARC policy published for new sending domains: monitoring first (reports, no enforcement).
DEFAULT_DMARC = "v=DMARC1; p=none; adkim=r; aspf=r"


@dataclass(frozen=True)
class DnsRecord:
    name: str
    type: str
    #: TXT: the character-strings (each <= 255 bytes); other types: one value.
    values: tuple[str, ...]
    domain: str
    tenant: str
    note: str = ""
    missing: bool = field(default=False)

    def zone_line(self) -> str:
        """BIND zone-file form (TXT strings quoted)."""
        value = " ".join(f'"{v}"' if self.type == "TXT" else v for v in self.values)
        return f"{self.name}. 3600 IN {self.type} {value}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["values"] = list(self.values)
        return d


def split_txt(value: str, limit: int = 255) -> tuple[str, ...]:
    """Split a TXT value into character-strings of at most `limit` bytes (ASCII values only)."""
    data = value.encode("ascii")
    return tuple(data[i:i + limit].decode("ascii") for i in range(0, len(data), limit)) or ("",)


def dkim_txt_value(public_key_der: bytes) -> str:
    """`v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>`."""
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public_key_der).decode()


def spf_value(address: str) -> str:
    mech = "ip6" if ipaddress.ip_address(address).version == 6 else "ip4"
    return f"v=spf1 {mech}:{address} -all"


def records_for_ip(ip: IpView, public_key_der: bytes | None, dmarc: str = DEFAULT_DMARC) -> list[DnsRecord]:
    """All records for one IP and its domain, in publishing order."""
    addr = ipaddress.ip_address(ip.address)

    def rec(name: str, rtype: str, values: tuple[str, ...], note: str, missing: bool = False) -> DnsRecord:
        return DnsRecord(name, rtype, values, domain=ip.domain, tenant=ip.tenant, note=note, missing=missing)

    out = [rec(ip.hostname, "AAAA" if addr.version == 6 else "A", (ip.address,),
               "HELO host name; the PTR must point here (forward-confirmed rDNS)"),
           rec(ip.domain, "TXT", split_txt(spf_value(ip.address)), "SPF")]
    dkim_name = f"{ip.dkim_selector}._domainkey.{ip.domain}"
    if public_key_der is None:
        out.append(rec(dkim_name, "TXT", (), f"DKIM key {ip.dkim_key_path} missing: run `email-engine dkim generate`",
                       missing=True))
    else:
        out.append(rec(dkim_name, "TXT", split_txt(dkim_txt_value(public_key_der)), "DKIM"))
    out.append(rec(f"_dmarc.{ip.domain}", "TXT", split_txt(dmarc), "DMARC"))
    out.append(rec(addr.reverse_pointer, "PTR", (ip.hostname + ".",),
                   f"ask the provider of {ip.address} to set this PTR"))
    return out


def records_for_report_domains(tenant: TenantView, mta_address: str) -> list[DnsRecord]:
    """Per tenant, the bounce and FBL report domains (inventory `bounce_domain`, `fbl_domain`): the MTA
    host must be their MX, since PowerMTA's <bounce-processor> / <feedback-loop-processor> only see
    mail they receive themselves (User's Guide 12.6, 12.7: "PowerMTA should be the MX"). Each domain is
    its own MX host (A/AAAA -> the MTA host's address). The bounce domain is also the envelope sender
    (MAIL FROM) domain that SPF checks, so its SPF authorizes every IP of the tenant, standby included
    (an activated standby must pass at once), as collapsed CIDR ranges."""
    addr = ipaddress.ip_address(mta_address)
    out: list[DnsRecord] = []
    for role, domain in (("bounce", tenant.bounce_domain), ("FBL", tenant.fbl_domain)):
        if not domain:
            continue

        out.append(DnsRecord(domain, "MX", (f"10 {domain}.",), domain, tenant.name,
                             f"{role} reports arrive at the MTA host ({mta_address})"))
        out.append(DnsRecord(domain, "AAAA" if addr.version == 6 else "A", (mta_address,), domain, tenant.name,
                             "the MX host: the MTA host"))
        if role == "bounce":
            out.append(DnsRecord(domain, "TXT", split_txt(spf_for_addresses([ip.address for ip in tenant.ips])),
                                 domain, tenant.name, "SPF of the MAIL FROM (bounce) domain: every IP of the tenant"))
    return out


def spf_for_addresses(addresses: list[str]) -> str:
    """`v=spf1 ip4:NET ... ip6:NET ... -all` with the addresses collapsed into the fewest CIDR ranges."""
    v4 = [ipaddress.IPv4Network(a) for a in addresses if ipaddress.ip_address(a).version == 4]
    v6 = [ipaddress.IPv6Network(a) for a in addresses if ipaddress.ip_address(a).version == 6]
    mechs = [f"ip4:{n.network_address if n.prefixlen == 32 else n}" for n in ipaddress.collapse_addresses(v4)]
    mechs += [f"ip6:{n.network_address if n.prefixlen == 128 else n}" for n in ipaddress.collapse_addresses(v6)]
    return " ".join(["v=spf1", *mechs, "-all"])
