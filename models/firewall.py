"""Host firewalls (issue 15, seed §2.1): nftables rulesets rendered from the inventory. Pure, no I/O.

`render(fleet, host) -> text` for the Email Engine host (`ENGINE`) and for each MTA host; the same
inventory gives byte-identical text. Everything rendered is either fixed text or a value validated
again here (addresses through models.names, ports as integers, set names from a fixed vocabulary), so
nothing from the inventory can add a line or a rule of its own.

What each host accepts (a table `inet email_engine` with input and output chains, policy drop):

* every host: replies of its own connections (`ct state established,related`), loopback, the ICMP and
  ICMPv6 messages a host needs (path MTU, neighbour discovery: without them IPv6 stops working), DHCP
  replies, DNS out (to `dns_resolvers`, or to any address when none is listed: an MTA host that resolves
  itself, as blocklists require), SSH in from `admin_addresses` (and the SSH server's packets back to
  them: a session conntrack picks up mid-stream is `new` until a reply passed), and the `allow` rules.
* the engine host: HTTPS (443) in from anywhere; out to the tenants' MailWizz APIs (the URL's port), the
  MTA hosts (their SSH ports and 25) and the enabled webhook receivers (the URL's port).
* an MTA host: SSH from the engine (`engine_addresses`) as well; SMTP (25) in from the feeders
  (MailWizz `source_ip`) of its tenants, and from anywhere to the host's own address only when one of
  its tenants has a bounce or FBL domain (that domain's MX is this address: reports come from any
  mail server; PowerMTA relays only for its `<source>` feeders); SMTP out only from its tenants'
  sending IPs (every status: a standby may be activated by a failover before the next deploy).

The MTA host ruleset always accepts the engine's addresses on the SSH port (render checks it with the
model in models/nft_model.py before returning), and the deployer refuses a ruleset that would drop its
own session (`session_problems`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models import names
from models import nft_model as nft
from models.snapshot import FleetSnapshot, MtaHostView

#: The one table the engine owns on a host; the rest of the host's ruleset is the operator's.
FAMILY, TABLE = "inet", "email_engine"
#: Where the ruleset lives in a release, relative to the MTA config's managed directory.
RULESET_FILE = "firewall/email-engine.nft"
#: The ruleset name of the Email Engine host itself (no MTA host may be called this).
ENGINE = "engine"
#: Loaded to take the table away (rolling back to a release without a ruleset): idempotent.
REMOVE_TABLE = f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


class FirewallError(ValueError):
    """The inventory cannot be turned into a safe ruleset (names the entry and what is missing)."""


Network = Annotated[str, AfterValidator(names.ip_network)]
Address = Annotated[str, AfterValidator(names.ip_address)]
Port = Annotated[int, Field(ge=1, le=65535)]
TenantName = Annotated[str, AfterValidator(names.tenant)]
Token = Annotated[str, AfterValidator(lambda v: names.token(v, "name"))]

_RULE_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")


def _rule_name(value: str) -> str:
    if not isinstance(value, str) or not _RULE_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid rule name (lower-case letters, digits, '_'; at most 32)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class AllowRule(_Strict):
    """An extra accept rule the fleet needs (Telegram, NTP, package mirrors, Temporal, monitoring)."""

    name: Annotated[str, AfterValidator(_rule_name)]
    #: `engine` and/or MTA host names.
    hosts: list[Token] = Field(min_length=1)
    direction: Literal["in", "out"]
    protocol: Literal["tcp", "udp"] = "tcp"
    ports: list[Port] = Field(min_length=1)
    addresses: list[Network] = Field(min_length=1)


class FirewallPolicy(_Strict):
    """The inventory file's `[firewall]` section."""

    #: Opt-in: MTA deploys ship each host's ruleset in the release, check it with `nft -c`, apply it with
    #: `nft -f` after the MTA reload and roll it back with the rest. False: render only.
    deploy: bool = False
    #: SSH (every host) from these: addresses or CIDR networks.
    admin_addresses: list[Network] = Field(min_length=1)
    #: Where the engine connects from (SSH to the MTA hosts: deploys, accounting over SFTP).
    engine_addresses: list[Network] = Field(min_length=1)
    engine_ssh_port: Port = 22
    #: DNS resolvers every host may query (53/udp+tcp); empty: port 53 to any address.
    dns_resolvers: list[Address] = Field(default_factory=list)
    #: A tenant's MailWizz API addresses, when its base_url names a host (default: the URL's IP literal,
    #: else the tenant's MailWizz source_ip: the seed's MailWizz server is one machine).
    mailwizz_addresses: dict[TenantName, list[Network]] = Field(default_factory=dict)
    #: A webhook receiver's addresses, needed when its URL names a host (nft matches addresses, not names).
    webhook_addresses: dict[Token, list[Network]] = Field(default_factory=dict)
    allow: list[AllowRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lists_not_empty(self) -> FirewallPolicy:
        for key, lists in (("mailwizz_addresses", self.mailwizz_addresses),
                           ("webhook_addresses", self.webhook_addresses)):
            for name, addrs in lists.items():
                if not addrs:
                    raise ValueError(f"{key}.{name}: list at least one address")
        if len({r.name for r in self.allow}) != len(self.allow):
            raise ValueError("allow: two rules have the same name")
        return self


@dataclass(frozen=True)
class ReceiverView:
    name: str
    url: str
    enabled: bool = True


@dataclass(frozen=True)
class FirewallFleet:
    """Everything a ruleset is rendered from: the policy, the fleet, the webhook receivers."""

    policy: FirewallPolicy
    snapshot: FleetSnapshot
    receivers: tuple[ReceiverView, ...] = ()

    @property
    def host_names(self) -> list[str]:
        return [ENGINE, *(h.name for h in self.snapshot.hosts)]


# --- addresses --------------------------------------------------------------------------------------

def _collapse(values: Iterable[str], what: str) -> tuple[list[str], list[str]]:
    """Validated, collapsed (no overlap: the kernel refuses overlapping intervals), sorted, as text;
    (IPv4, IPv6). A full-length prefix is written as the bare address."""
    found: dict[int, list[nft.Interval]] = {4: [], 6: []}
    for v in values:
        try:
            iv = nft.interval(names.canonical_network(v))
        except names.NameError_ as err:
            raise FirewallError(f"{what}: {err}") from None
        found[iv[0]].append(iv)
    return nft.collapse(found[4]), nft.collapse(found[6])


def _url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(names.http_base_url(url))
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> str | None:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return None


def _loopback(host: str) -> bool:
    lit = _literal(host)
    return host.lower() == "localhost" or (lit is not None and ipaddress.ip_address(lit).is_loopback)


# --- text --------------------------------------------------------------------------------------------

def _ports(ports: Iterable[int]) -> str:
    values = sorted({int(p) for p in ports})
    for p in values:
        if not 0 < p < 65536:
            raise FirewallError(f"port {p} is out of range")
    return str(values[0]) if len(values) == 1 else "{ " + ", ".join(map(str, values)) + " }"


class _Builder:
    """Sets and the two chains of one host's table, in the order rules are added."""

    def __init__(self) -> None:
        self.sets: list[tuple[str, str, list[str]]] = []
        self.chains: dict[str, list[str]] = {"input": [], "output": []}

    def comment(self, chain: str, text: str) -> None:
        self.chains[chain].append(f"# {text}")

    def rule(self, chain: str, text: str) -> None:
        self.chains[chain].append(text)

    def by_address(self, chain: str, direction: Literal["saddr", "daddr"], set_base: str,
                   values: Iterable[str], what: str, tail: str) -> None:
        """`ip saddr @<set>_v4 <tail>` and the IPv6 twin, for whichever family has addresses."""
        v4, v6 = _collapse(values, what)
        for family, kind, elements in (("ip", "ipv4_addr", v4), ("ip6", "ipv6_addr", v6)):
            if not elements:
                continue
            name = f"{set_base}_v{4 if family == 'ip' else 6}"
            if name not in {s[0] for s in self.sets}:
                self.sets.append((name, kind, elements))
            elif next(s[2] for s in self.sets if s[0] == name) != elements:
                raise FirewallError(f"internal: set {name} rendered twice with different elements")
            self.rule(chain, f"{family} {direction} @{name} {tail}")

    def text(self, header: Sequence[str]) -> str:
        out = [*(f"# {h}" if h else "#" for h in header), "",
               f"table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", "", f"table {FAMILY} {TABLE} {{"]
        for name, kind, elements in self.sets:
            out += [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tflags interval", "\t\telements = {"]
            out += [f"\t\t\t{e}," for e in elements[:-1]] + [f"\t\t\t{elements[-1]}", "\t\t}", "\t}", ""]
        for chain in ("input", "output"):
            out += [f"\tchain {chain} {{", f"\t\ttype filter hook {chain} priority filter; policy drop;"]
            out += [f"\t\t{line}" for line in self.chains[chain]]
            out += ["\t}", ""]
        out[-1] = "}"
        return "\n".join(out) + "\n"


HEADER = [
    "Rendered from the Email Engine inventory (`email-engine firewall render`); do not edit: the next",
    "render replaces it. Only the table `inet email_engine` is replaced: the two lines below create it if it",
    "is missing and delete it, and the block after them recreates it, in the one transaction `nft -f` makes",
    "of a file. The operator's other tables are left alone (no `flush ruleset`); a packet must pass every",
    "table's chains on its hook, so they can still drop what this table accepts, never accept what it drops.",
]


def _common_head(b: _Builder) -> None:
    for chain, iface in (("input", "iif"), ("output", "oif")):
        b.comment(chain, "replies and related packets (ICMP errors) of connections already accepted")
        b.rule(chain, "ct state established,related accept")
        b.rule(chain, f'{iface} "lo" accept')
    b.comment("input", "path MTU, errors, ping; IPv6 neighbour and router discovery (RFC 4890)")
    b.rule("input", "icmp type { destination-unreachable, time-exceeded, parameter-problem, echo-request } accept")
    b.rule("input", "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, "
                    "echo-request, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept")
    b.comment("input", "DHCP and DHCPv6 replies (address leases)")
    b.rule("input", "udp sport 67 udp dport 68 accept")
    b.rule("input", "udp sport 547 udp dport 546 accept")
    b.comment("output", "ICMP and ICMPv6 (errors, neighbour discovery); DHCP and DHCPv6 requests")
    b.rule("output", "meta l4proto { icmp, ipv6-icmp } accept")
    b.rule("output", "udp sport 68 udp dport 67 accept")
    b.rule("output", "udp sport 546 udp dport 547 accept")


def _dns(b: _Builder, policy: FirewallPolicy) -> None:
    if policy.dns_resolvers:
        b.comment("output", "DNS to the resolvers of the inventory")
        for proto in ("udp", "tcp"):
            b.by_address("output", "daddr", "dns", policy.dns_resolvers, "firewall.dns_resolvers",
                         f"{proto} dport 53 accept")
    else:
        b.comment("output", "DNS to any address (no resolvers listed: the host resolves recursively)")
        b.rule("output", "udp dport 53 accept")
        b.rule("output", "tcp dport 53 accept")


def _ssh_from(b: _Builder, set_base: str, values: Sequence[str], what: str, port: int) -> None:
    """SSH in from `values`, and the server's packets back to them even when conntrack classifies them
    `new`: a session that was running before conntrack tracked it is picked up mid-stream, and its
    packets are `new` until one has been seen in each direction (so the deploy's own session never
    waits for a retransmission)."""
    b.comment("input", f"SSH from the {what}")
    b.by_address("input", "saddr", set_base, values, f"firewall.{set_base}_addresses",
                 f"tcp dport {_ports([port])} accept")
    b.comment("output", f"SSH replies to the {what} (a session conntrack picked up mid-stream starts as new)")
    b.by_address("output", "daddr", set_base, values, f"firewall.{set_base}_addresses",
                 f"tcp sport {_ports([port])} accept")


def _admin_ssh(b: _Builder, policy: FirewallPolicy, port: int) -> None:
    _ssh_from(b, "admin", policy.admin_addresses, "admin addresses", port)


def _extras(b: _Builder, policy: FirewallPolicy, host: str) -> None:
    for rule in policy.allow:
        if host not in rule.hosts:
            continue
        chain = "input" if rule.direction == "in" else "output"
        direction: Literal["saddr", "daddr"] = "saddr" if rule.direction == "in" else "daddr"
        b.comment(chain, f"allow rule {rule.name} of the inventory")
        b.by_address(chain, direction, f"allow_{rule.name}", rule.addresses, f"firewall.allow {rule.name}",
                     f"{rule.protocol} dport {_ports(rule.ports)} accept")


def _mailwizz_destinations(fleet: FirewallFleet) -> tuple[list[str], list[int]]:
    addrs: list[str] = []
    ports: list[int] = []
    for t in fleet.snapshot.tenants:
        if not t.mailwizz_url:
            continue
        host, port = _url_host_port(t.mailwizz_url)
        if _loopback(host):
            continue
        override = fleet.policy.mailwizz_addresses.get(t.name)
        lit = _literal(host)
        addrs += override or ([lit] if lit else [t.feeder_ip])
        ports.append(port)
    return addrs, ports


def _webhook_destinations(fleet: FirewallFleet) -> tuple[list[str], list[int]]:
    addrs: list[str] = []
    ports: list[int] = []
    for r in fleet.receivers:
        if not r.enabled:
            continue
        host, port = _url_host_port(r.url)
        if _loopback(host):
            continue
        lit = _literal(host)
        found = fleet.policy.webhook_addresses.get(r.name) or ([lit] if lit else [])
        if not found:
            raise FirewallError(f"webhook receiver {r.name!r}: its URL names the host {host!r}; list its addresses "
                                f"in firewall.webhook_addresses.{r.name} (nftables matches addresses, not names)")
        addrs += found
        ports.append(port)
    return addrs, ports


def render_engine(fleet: FirewallFleet) -> str:
    """The Email Engine host's ruleset (the operator installs it; the engine never deploys to itself)."""
    policy, b = fleet.policy, _Builder()
    _common_head(b)
    b.comment("input", "HTTPS from anywhere")
    b.rule("input", "tcp dport 443 accept")
    _admin_ssh(b, policy, policy.engine_ssh_port)
    _dns(b, policy)
    mw_addrs, mw_ports = _mailwizz_destinations(fleet)
    if mw_addrs:
        b.comment("output", "MailWizz APIs of the tenants")
        b.by_address("output", "daddr", "mailwizz", mw_addrs, "MailWizz addresses",
                     f"tcp dport {_ports(mw_ports)} accept")
    hosts = fleet.snapshot.hosts
    if hosts:
        b.comment("output", "MTA hosts: SSH (deploys, accounting files) and SMTP")
        b.by_address("output", "daddr", "mta_hosts", [h.address for h in hosts], "mta_hosts",
                     f"tcp dport {_ports([25, *(h.ssh_port for h in hosts)])} accept")
    wh_addrs, wh_ports = _webhook_destinations(fleet)
    if wh_addrs:
        b.comment("output", "webhook receivers")
        b.by_address("output", "daddr", "webhooks", wh_addrs, "webhook receivers",
                     f"tcp dport {_ports(wh_ports)} accept")
    _extras(b, policy, ENGINE)
    return b.text([*HEADER, "", "Host: the Email Engine host."])


def render_mta(fleet: FirewallFleet, host_name: str) -> str:
    """The ruleset of one MTA host; checked against the model: the engine's addresses reach its SSH port."""
    policy, b = fleet.policy, _Builder()
    host = fleet.snapshot.host(names.token(host_name, "MTA host name"))
    address = names.canonical_ip(host.address)
    tenants = [t for t in fleet.snapshot.tenants if t.mta_host == host.name]
    _common_head(b)
    _admin_ssh(b, policy, host.ssh_port)
    _ssh_from(b, "engine", policy.engine_addresses, "Email Engine (deploys, accounting files)", host.ssh_port)
    feeders = [t.feeder_ip for t in tenants if t.feeder_ip]
    if feeders:
        b.comment("input", "SMTP from the tenants' feeders (MailWizz source_ip)")
        b.by_address("input", "saddr", "feeders", feeders, "feeders", "tcp dport 25 accept")
    if any(t.bounce_domain or t.fbl_domain for t in tenants):
        b.comment("input", "SMTP to this host's address from anywhere: it is the MX of the bounce/FBL domains")
        b.rule("input", f"{'ip' if names.ip_version(address) == 4 else 'ip6'} daddr {address} tcp dport 25 accept")
    _dns(b, policy)
    sending = [ip.address for t in tenants for ip in t.ips]
    if sending:
        b.comment("output", "SMTP only from the tenants' sending IPs")
        b.by_address("output", "saddr", "sending", sending, "sending IPs", "tcp dport 25 accept")
    _extras(b, policy, host.name)
    text = b.text([*HEADER, "", f"Host: MTA host {host.name} ({address})."])
    _check_reachable(text, host, policy)
    return text


def render(fleet: FirewallFleet, host: str) -> str:
    return render_engine(fleet) if host == ENGINE else render_mta(fleet, host)


def render_all(fleet: FirewallFleet) -> dict[str, str]:
    return {name: render(fleet, name) for name in fleet.host_names}


# --- checks with the model -----------------------------------------------------------------------------

def _probe_address(network: str) -> str:
    net = ipaddress.ip_network(network)
    return str(net.network_address if net.num_addresses == 1 else net.network_address + 1)


def _check_reachable(text: str, host: MtaHostView, policy: FirewallPolicy) -> None:
    """Defence in depth: every engine and admin network reaches the SSH port (a new connection)."""
    version = ipaddress.ip_address(host.address).version
    if not any(ipaddress.ip_network(a).version == version for a in policy.engine_addresses):
        raise FirewallError(f"firewall.engine_addresses: no IPv{version} address, but the engine reaches MTA host "
                            f"{host.name} at {host.address}: its SSH would be dropped")
    ruleset = nft.load(text)
    for src in [*policy.engine_addresses, *policy.admin_addresses]:
        probe = _probe_address(src)
        if ipaddress.ip_address(probe).version != ipaddress.ip_address(host.address).version:
            continue
        d = nft.decide(ruleset, nft.Packet("input", probe, host.address, "tcp", dport=host.ssh_port))
        if not d.accepted:
            raise FirewallError(f"internal: the ruleset of {host.name} would drop SSH from {probe} ({d.by})")


def _unmapped(address: str) -> str:
    """An IPv4 connection to a dual-stack socket may be written `::ffff:a.b.c.d`: the kernel filters it as
    IPv4 (`ip saddr`), so judge it as IPv4."""
    mapped = ipaddress.ip_address(address)
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
        return str(mapped.ipv4_mapped)
    return address


@dataclass(frozen=True)
class SshSession:
    """The deploy's own connection as the host sees it (ssh(1) ENVIRONMENT, SSH_CONNECTION: "client IP
    address, client port number, server IP address, and server port number")."""

    client: str
    client_port: int
    server: str
    server_port: int

    @classmethod
    def parse(cls, text: str) -> SshSession:
        parts = text.strip().split(" ")
        if len(parts) != 4 or not parts[1].isdigit() or not parts[3].isdigit():
            raise FirewallError(f"SSH_CONNECTION {text.strip()[:120]!r} is not 'client port server port'")
        try:
            client, server = (_unmapped(names.ip_address(p)) for p in (parts[0], parts[2]))
        except names.NameError_ as err:
            raise FirewallError(f"SSH_CONNECTION: {err}") from None
        return cls(client, int(parts[1]), server, int(parts[3]))

    @property
    def local(self) -> bool:
        """Loopback traffic (and traffic to one's own address) goes through the `lo` interface."""
        return ipaddress.ip_address(self.client).is_loopback or self.client == self.server


def session_problems(text: str, session: SshSession) -> list[str]:
    """Why loading `text` would cut this SSH session or keep the next deploy out ([] = safe). The
    session's packets must pass both ways whether conntrack tracked the session before the load
    (`established`) or picks it up mid-stream (`new` until both directions were seen; see
    models/nft_model.py); a new connection from the same address to the same port is the next deploy.
    The operator's other tables are not modelled: they already let this session through and this file
    does not change them."""
    try:
        ruleset = nft.load(text)
    except nft.NftModelError as err:
        return [f"the ruleset cannot be checked: {err}"]
    iface = "lo" if session.local else "eth0"
    checks = []
    for state, how in (("established", "tracked"), ("new", "picked up mid-stream; also the next deploy's connection")):
        checks += [
            (f"the open session's packets to the host ({how})", nft.Packet(
                "input", session.client, session.server, "tcp", dport=session.server_port,
                sport=session.client_port, ct_state=state, iif=iface)),
            (f"the open session's packets from the host ({how})", nft.Packet(
                "output", session.server, session.client, "tcp", dport=session.client_port,
                sport=session.server_port, ct_state=state, oif=iface)),
        ]
    problems = []
    for what, pkt in checks:
        d = nft.decide(ruleset, pkt)
        if not d.accepted:
            problems.append(f"{what} ({session.client} <-> {session.server}:{session.server_port}) would be "
                            f"dropped by {d.by}")
    return problems


def cross_check(policy: FirewallPolicy, hosts: Sequence[tuple[str, str]], tenant_names: Sequence[str],
                receivers: Sequence[ReceiverView]) -> list[str]:
    """Inventory rules across entries: references exist, every enabled receiver has addresses, the engine
    has an address of each MTA host's family. `hosts`: (name, address) of the MTA hosts."""
    errors = []
    host_names = [h for h, _ in hosts]
    versions = {ipaddress.ip_network(a).version for a in policy.engine_addresses}
    for name, address in hosts:
        if ipaddress.ip_address(address).version not in versions:
            errors.append(f"firewall.engine_addresses: no IPv{ipaddress.ip_address(address).version} address, but "
                          f"the engine reaches MTA host {name!r} at {address} (its SSH would be dropped)")
    if ENGINE in host_names:
        errors.append(f"mta_hosts: the name {ENGINE!r} is the Email Engine host's in firewall rules; "
                      "rename the MTA host")
    for name in policy.mailwizz_addresses:
        if name not in tenant_names:
            errors.append(f"firewall.mailwizz_addresses.{name}: unknown tenant")
    by_name = {r.name: r for r in receivers}
    for name in policy.webhook_addresses:
        if name not in by_name:
            errors.append(f"firewall.webhook_addresses.{name}: unknown webhook receiver")
    for r in receivers:
        host, _ = _url_host_port(r.url)
        if r.enabled and not _loopback(host) and not _literal(host) and r.name not in policy.webhook_addresses:
            errors.append(f"webhooks ({r.name!r}): the firewall needs the receiver's addresses (its URL names "
                          f"{host!r}): add firewall.webhook_addresses.{r.name} = [...]")
    for rule in policy.allow:
        for h in rule.hosts:
            if h != ENGINE and h not in host_names:
                errors.append(f"firewall.allow ({rule.name!r}).hosts: unknown host {h!r} ({ENGINE!r} or an MTA host)")
    return errors
