"""Test zones for the DNS authentication checks: one sending domain per case, served by NSD.

Loopback range 127.0.20.0/24 (reverse zone 20.0.127.in-addr.arpa). Each case has its own IP, its
own zone and its own DKIM private key file; `CASES` maps the case name to what the check must say.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from activities.dns_checks import DnsTarget
from tests.servers.nsd import NsdServer, txt, zone_text

SUFFIX = "ee-test"
REVERSE = "20.0.127.in-addr.arpa"


@dataclass(frozen=True)
class Case:
    name: str
    octet: int
    expect: dict[str, str]  # item -> expected status (items not named: valid)
    sub: str = ""  # the sending domain is <sub>.<zone> (DMARC only at the organizational domain)

    @property
    def zone(self) -> str:
        return f"{self.name}.{SUFFIX}"

    @property
    def domain(self) -> str:
        return f"{self.sub}.{self.zone}" if self.sub else self.zone

    @property
    def ip(self) -> str:
        return f"127.0.20.{self.octet}"

    @property
    def helo(self) -> str:
        return f"mail.{self.domain}"


CASES = {c.name: c for c in [
    Case("all-valid", 10, {}),
    Case("spf-missing-ip", 11, {"spf": "invalid"}),
    Case("spf-too-many-lookups", 12, {"spf": "invalid"}),
    Case("spf-two-records", 13, {"spf": "invalid"}),
    Case("dkim-absent", 14, {"dkim": "invalid"}),
    Case("dkim-revoked", 15, {"dkim": "invalid"}),
    Case("dkim-other-key", 16, {"dkim": "invalid"}),
    Case("dmarc-absent", 17, {"dmarc": "invalid"}),
    Case("ptr-absent", 18, {"ptr": "invalid"}),
    Case("ptr-not-confirmed", 19, {"ptr": "invalid"}),
    Case("ed25519", 20, {}),
    Case("rsa-1024", 21, {"dkim": "warn"}),
    Case("dmarc-no-rua", 22, {"dmarc": "warn"}),
    Case("ptr-other-helo", 23, {"ptr": "invalid"}),
    Case("spf-redirect-mx", 24, {}),
    Case("spf-plus-all", 25, {"spf": "invalid"}),
    Case("spf-void-lookups", 26, {"spf": "invalid"}),
    Case("dmarc-org", 27, {}, sub="news"),
]}


def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def dkim_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    pub = key.public_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; h=sha256; p={base64.b64encode(der).decode()}"


class DnsFleet:
    """Zones + keys for every case, written under `root`; `start()` serves them with NSD."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys_dir = root / "keys"
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        self.zones: dict[str, str] = {}
        self.targets: dict[str, DnsTarget] = {}
        main_key = _rsa(2048)
        other_key = _rsa(2048)
        self.other_key_pem = _pem(other_key)  # what dkim-other-key publishes
        reverse: list[str] = []
        for case in CASES.values():
            key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = main_key
            if case.name == "ed25519":
                key = ed25519.Ed25519PrivateKey.generate()
            elif case.name == "rsa-1024":
                key = _rsa(1024)
            key_path = self.keys_dir / f"{case.domain}.default.key"
            key_path.write_bytes(_pem(key))
            self.targets[case.name] = DnsTarget(domain_id=0, domain=case.domain, tenant="t", ip=case.ip,
                                                helo=case.helo, selector="default", key_path=str(key_path))
            self.zones[case.zone] = zone_text(case.zone, self._records(case, key, other_key))
            if case.name != "ptr-absent":
                reverse.append(f"{case.octet} IN PTR mail.{case.domain}.")
        self.zones[REVERSE] = zone_text(REVERSE, reverse)
        # the parent, so that DMARC's walk to _dmarc.<tld> gets NXDOMAIN, not REFUSED (-> unknown)
        self.zones[SUFFIX] = zone_text(SUFFIX, [])
        self.server: NsdServer | None = None

    def _records(self, case: Case, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
                 other_key: rsa.RSAPrivateKey) -> list[str]:
        d, ip = case.domain, case.ip
        spf = f"v=spf1 ip4:{ip} -all"
        recs = ["@ IN MX 10 mail", f"mail IN A {ip}" if case.name != "ptr-not-confirmed" else "mail IN A 127.0.20.99"]
        if case.name == "all-valid":
            # include chain: the IP is authorized two includes deep, in a /28
            spf = f"v=spf1 include:_spf.{d} ~all"
            recs += [f"_spf IN TXT {txt(f'v=spf1 ip4:127.0.20.200 include:_spf2.{d} -all')}",
                     f"_spf2 IN TXT {txt('v=spf1 ip4:127.0.20.0/28 -all')}"]
        elif case.name == "spf-missing-ip":
            spf = f"v=spf1 ip4:127.0.20.200/30 a:other.{d} -all"
            recs.append("other IN A 127.0.20.201")
        elif case.name == "spf-too-many-lookups":
            spf = f"v=spf1 ip4:{ip} include:l1.{d} -all"
            recs += [f"l{i} IN TXT {txt(f'v=spf1 include:l{i + 1}.{d} -all' if i < 11 else 'v=spf1 -all')}"
                     for i in range(1, 12)]
        elif case.name == "spf-two-records":
            recs.append(f"@ IN TXT {txt('v=spf1 ip4:127.0.20.250 -all')}")
        elif case.name == "spf-redirect-mx":
            spf = f"v=spf1 redirect=_r.{d}"
            recs.append(f"_r IN TXT {txt(f'v=spf1 mx:{d} -all')}")  # a bare `mx` would mean _r's MX
        elif case.name == "spf-void-lookups":
            spf = f"v=spf1 a:nx1.{d} a:nx2.{d} a:nx3.{d} ip4:{ip} -all"
        elif case.name == "spf-plus-all":
            spf = f"v=spf1 ip4:{ip} +all"
        recs.append(f"@ IN TXT {txt(spf)}")
        recs.append(f"@ IN TXT {txt('google-site-verification=unrelated')}")
        if case.name == "dkim-revoked":
            recs.append(f"default._domainkey IN TXT {txt('v=DKIM1; k=rsa; p=')}")
        elif case.name == "dkim-other-key":
            recs.append(f"default._domainkey IN TXT {txt(dkim_record(other_key))}")
        elif case.name != "dkim-absent":
            recs.append(f"default._domainkey IN TXT {txt(dkim_record(key))}")
        if case.name == "dmarc-no-rua":
            recs.append(f"_dmarc IN TXT {txt('v=DMARC1; p=quarantine')}")
        elif case.sub:  # records under <sub>, DMARC at the zone (the organizational domain) only
            recs = [f"$ORIGIN {d}.", *recs, f"$ORIGIN {case.zone}.",
                    f"_dmarc IN TXT {txt(f'v=DMARC1; p=reject; rua=mailto:dmarc@{d}')}"]
        elif case.name != "dmarc-absent":
            recs.append(f"_dmarc IN TXT {txt(f'v=DMARC1; p=reject; rua=mailto:dmarc@{d}')}")
        return recs

    def inventory(self, tenant: str = "dns-t") -> str:
        """An inventory file with one standby IP per case (MTA host disabled: never contacted)."""
        lines = ['[[mta_hosts]]', 'name = "dns-mta"', 'address = "127.0.20.1"', 'enabled = false', '',
                 '[[tenants]]', f'name = "{tenant}"', 'mta_host = "dns-mta"', '',
                 '[tenants.mailwizz]', 'base_url = "http://127.0.20.2/api"', 'source_ip = "127.0.20.2"']
        for name in CASES:
            t = self.target(name)
            lines += ['', '[[tenants.ips]]', f'address = "{t.ip}"', f'hostname = "{t.helo}"',
                      f'domain = "{t.domain}"', f'dkim_key_path = "{t.key_path}"', 'status = "standby"']
        return "\n".join(lines) + "\n"

    def target(self, name: str) -> DnsTarget:
        t = self.targets[name]
        if name == "ptr-other-helo":  # PTR names mail.<d> (forward-confirmed); the HELO is another host
            return DnsTarget(**{**t.__dict__, "helo": f"smtp.{t.domain}"})
        return t

    def start(self) -> NsdServer:
        self.server = NsdServer(self.root / "nsd", self.zones).start()
        return self.server

    def stop(self) -> None:
        if self.server:
            self.server.stop()
