"""A small pure model of the nftables semantics the firewall renderer uses: parse a ruleset file and
say what happens to a packet. It lets tests (and the deployer, before it touches a host) check a
rendered ruleset without a kernel. Anything outside the subset below is refused (NftModelError), so the
renderer cannot emit a construct this model would silently misjudge.

Documented semantics modelled (nft(8) of nftables 1.0.6, sections named; nftables wiki pages named):

* Loading a file (`nft -f`, OPTIONS) applies its commands in order as one transaction (wiki "Atomic
  rule replacement": "the kernel handles the rule commands in the file in one single transaction").
  `table inet T` is `add table`: no error if T exists (TABLES: "the former will not return an error if
  the specified table already exists"); `delete table inet T` removes T and everything in it, and is
  an error when T does not exist. A `table T { ... }` block adds to T: a chain that exists keeps its
  rules and gets the block's rules appended, a set gets the elements added. (Hence the renderer's
  `table` + `delete table` lines: without them a second load would append a second copy of the rules.)
* A base chain (`type filter hook input|output priority P; policy drop|accept;`, CHAINS) sees the
  packets of its hook; chains of one hook run in ascending priority (CHAINS: "lower priority values
  have precedence over higher ones"), across all tables. Rules run in order; a rule matches when every
  expression in it matches; `accept` and `drop` end the chain (STATEMENTS > VERDICT STATEMENT: "accept
  and drop are absolute verdicts"); a chain that ends without a verdict applies its policy (CHAINS: "what
  happens to packets not explicitly accepted or refused"; default accept). `drop` is final ("no further
  chains or hooks are evaluated"); `accept` only ends that chain: "The packet can still be dropped later
  by another hook ... or another ... base chain that has a higher priority number" (VERDICT STATEMENT).
  `counter` has no verdict (continue: "the default behaviour in case a rule issues no verdict").
* `ip saddr|daddr X` matches IPv4 packets only and `ip6 ...` IPv6 packets only, also in an `inet` table
  (ADDRESS FAMILIES > IPV4/IPV6/INET: the inet family handles both; PAYLOAD EXPRESSIONS > IPV4/IPV6
  HEADER EXPRESSION). X is an address, a CIDR prefix, an anonymous set `{ ... }` or a named set `@name`
  (SETS; with `flags interval` elements may be prefixes). `tcp|udp sport|dport N` implies the layer-4
  protocol (TCP/UDP HEADER EXPRESSION); `icmp type` and `icmpv6 type` likewise (ICMP/ICMPV6 HEADER
  EXPRESSION). `meta l4proto`, `meta nfproto`, `iif`/`oif` (interface), META EXPRESSIONS.
* `ct state` (CONNTRACK EXPRESSIONS; values in DATA TYPES > CONNTRACK TYPES: new, established, related,
  invalid, untracked) is an input of the model (`Packet.ct_state`), not derived. What a connection that
  existed before the load is: `established` if conntrack was already tracking it in that namespace;
  otherwise conntrack (registered in a namespace only once a ruleset needs it) picks the running TCP
  connection up mid-stream (`nf_conntrack_tcp_loose`, default 1, Linux
  Documentation/networking/nf_conntrack-sysctl.rst: 0 disables "picking up already established
  connections"), and its packets are `new` until one has passed in each direction. The deployer checks
  its session both ways in both states; tests/test_firewall_netns.py shows both on a real kernel.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

Hook = Literal["input", "output"]
CT_STATES = frozenset({"new", "established", "related", "invalid", "untracked"})
L4_PROTOS = frozenset({"tcp", "udp", "icmp", "ipv6-icmp"})
#: Named priorities of the ip/ip6/inet families (CHAINS, table "Standard priority names").
PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
ICMP_TYPES = frozenset({"echo-reply", "destination-unreachable", "source-quench", "redirect", "echo-request",
                        "router-advertisement", "router-solicitation", "time-exceeded", "parameter-problem",
                        "timestamp-request", "timestamp-reply", "info-request", "info-reply",
                        "address-mask-request", "address-mask-reply"})
ICMPV6_TYPES = frozenset({"destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem",
                          "echo-request", "echo-reply", "mld-listener-query", "mld-listener-report",
                          "mld-listener-reduction", "nd-router-solicit", "nd-router-advert",
                          "nd-neighbor-solicit", "nd-neighbor-advert", "nd-redirect", "router-renumbering",
                          "ind-neighbor-solicit", "ind-neighbor-advert", "mld2-listener-report"})


class NftModelError(ValueError):
    """Text outside the modelled subset, or a command the kernel would refuse (e.g. deleting a missing table)."""


@dataclass(frozen=True)
class Packet:
    """One packet as a hook sees it. `iif`/`oif`: interface names (loopback traffic is "lo")."""

    hook: Hook
    saddr: str
    daddr: str
    proto: str
    dport: int | None = None
    sport: int | None = None
    ct_state: str = "new"
    iif: str = "eth0"
    oif: str = "eth0"
    icmp_type: str | None = None

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.saddr).version


@dataclass(frozen=True)
class Match:
    """One expression of a rule: `key` (e.g. "ip saddr", "tcp dport", "ct state") against values.
    Address values are networks; a named set is resolved when the rule is evaluated."""

    key: str
    values: tuple[str, ...] = ()
    set_name: str | None = None


@dataclass(frozen=True)
class Rule:
    matches: tuple[Match, ...]
    verdict: str | None
    line: int
    text: str


@dataclass
class NftSet:
    name: str
    type: str
    interval: bool = False
    #: (IP version, first address, last address) as integers: one per element (an address or a prefix).
    elements: list[Interval] = field(default_factory=list)


@dataclass
class Chain:
    name: str
    hook: str | None = None
    priority: int = 0
    policy: str = "accept"
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Table:
    family: str
    name: str
    sets: dict[str, NftSet] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)


@dataclass
class Ruleset:
    """The modelled kernel state: tables by (family, name)."""

    tables: dict[tuple[str, str], Table] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    accepted: bool
    #: What decided: "table inet t chain input line 12: ip saddr @admin_v4 tcp dport 22 accept", or a policy.
    by: str


# --- tokenizer ------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r'"[^"\n]*"|[{};,=\n]|[^\s{};,="#]+|#[^\n]*|[ \t\r]+|(.)')


def _tokens(text: str) -> Iterator[tuple[str, int]]:
    line = 1
    for m in _TOKEN_RE.finditer(text):
        tok = m.group(0)
        if m.group(1) is not None:
            raise NftModelError(f"line {line}: unexpected character {tok!r}")
        if tok == "\n":
            yield ";", line
            line += 1
        elif tok.startswith("#") or tok.isspace():
            continue
        else:
            yield tok, line


class _Parser:
    def __init__(self, text: str):
        self.toks = list(_tokens(text))
        self.i = 0
        self.lines = text.splitlines()

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    @property
    def line(self) -> int:
        return self.toks[min(self.i, len(self.toks) - 1)][1] if self.toks else 0

    def next(self) -> str:
        if self.i >= len(self.toks):
            raise NftModelError("unexpected end of file")
        tok = self.toks[self.i][0]
        self.i += 1
        return tok

    def expect(self, *words: str) -> str:
        tok = self.next()
        if tok not in words:
            raise NftModelError(f"line {self.line}: expected {' or '.join(words)}, got {tok!r}")
        return tok

    def skip_separators(self) -> None:
        while self.peek() == ";":
            self.i += 1

    def statement_end(self) -> None:
        tok = self.peek()
        if tok is None or tok == "}":
            return
        self.expect(";")

    def values(self) -> list[str]:
        """`{ a, b }` (may span lines), or `a` / `a,b`."""
        out: list[str] = []
        if self.peek() == "{":
            self.next()
            while True:
                self.skip_separators()
                tok = self.next()
                if tok == "}":
                    return out
                if tok == ",":
                    continue
                out.append(tok)
        out.append(self.next())
        while self.peek() == ",":
            self.next()
            out.append(self.next())
        return out


Interval = tuple[int, int, int]
_V4_RE = re.compile(r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})"
                    r"(?:/(0|[1-9][0-9]?))?\Z")


def interval(text: str) -> Interval:
    """(version, first, last) of an address or a prefix without host bits (ValueError otherwise). Plain
    IPv4 text takes a fast path (renders and checks handle 10,000s of addresses); the rest ipaddress."""
    m = _V4_RE.match(text)
    if m:
        octets = [int(x) for x in m.groups()[:4]]
        prefix = int(m.group(5)) if m.group(5) is not None else 32
        if max(octets) <= 255 and prefix <= 32:
            first = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
            host = (1 << (32 - prefix)) - 1
            if first & host:
                raise ValueError(f"{text} has host bits set")
            return 4, first, first | host
    net = ipaddress.ip_network(text, strict=True)
    return net.version, int(net.network_address), int(net.broadcast_address)


def cidr_text(version: int, first: int, prefix: int) -> str:
    """A prefix as nft writes it: the bare address for a full-length one."""
    bits = 32 if version == 4 else 128
    if version == 4:
        addr = f"{first >> 24}.{(first >> 16) & 255}.{(first >> 8) & 255}.{first & 255}"
    else:
        addr = ipaddress.IPv6Address(first).compressed
    return addr if prefix == bits else f"{addr}/{prefix}"


def collapse(intervals: Iterable[Interval]) -> list[str]:
    """The fewest prefixes covering exactly the union of `intervals` (one version), sorted, as text: what
    ipaddress.collapse_addresses gives, with integers (10,000 addresses in milliseconds)."""
    ordered = sorted(intervals, key=lambda i: i[1])
    versions = {i[0] for i in ordered}
    if len(versions) > 1:
        raise ValueError("collapse: IPv4 and IPv6 intervals mixed")
    version = versions.pop() if versions else 4
    merged: list[list[int]] = []
    for _, first, last in ordered:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    bits = 32 if version == 4 else 128
    out = []
    for first, last in merged:
        while first <= last:
            size = (first & -first).bit_length() - 1 if first else bits  # the largest aligned block here
            while first + (1 << size) - 1 > last:
                size -= 1
            out.append(cidr_text(version, first, bits - size))
            first += 1 << size
    return out


def _network(text: str, line: int) -> Interval:
    try:
        return interval(text)
    except ValueError:
        raise NftModelError(f"line {line}: {text!r} is not an address or network") from None


def _port(text: str, line: int) -> str:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise NftModelError(f"line {line}: {text!r} is not a port number")
    return str(int(text))


_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")


def _name(tok: str, line: int, what: str) -> str:
    if not _NAME_RE.match(tok):
        raise NftModelError(f"line {line}: {tok!r} is not a valid {what} name")
    return tok


def _rule(p: _Parser) -> Rule:
    """One rule up to the end of its line: expressions, then at most one verdict, last."""
    line = p.line
    matches: list[Match] = []
    verdict: str | None = None
    while p.peek() not in (";", "}", None):
        if verdict is not None:
            raise NftModelError(f"line {line}: nothing may follow the verdict {verdict!r}")
        tok = p.next()
        if tok in ("accept", "drop"):
            verdict = tok
        elif tok == "counter":
            continue
        elif tok == "ct":
            p.expect("state")
            states = p.values()
            if not set(states) <= CT_STATES:
                raise NftModelError(f"line {line}: unknown ct state in {states}")
            matches.append(Match("ct state", tuple(states)))
        elif tok in ("iif", "oif", "iifname", "oifname"):
            name = p.next()
            matches.append(Match(tok.removesuffix("name"), (name.strip('"'),)))
        elif tok in ("ip", "ip6"):
            direction = p.expect("saddr", "daddr")
            key = f"{tok} {direction}"
            if p.peek() is not None and p.peek().startswith("@"):  # type: ignore[union-attr]
                matches.append(Match(key, (), _name(p.next()[1:], line, "set")))
            else:
                version = 4 if tok == "ip" else 6
                values = p.values()
                if any(_network(v, line)[0] != version for v in values):
                    raise NftModelError(f"line {line}: {key} with an IPv{10 - version} address")
                matches.append(Match(key, tuple(values)))
        elif tok in ("tcp", "udp"):
            direction = p.expect("sport", "dport")
            matches.append(Match(f"{tok} {direction}", tuple(_port(v, line) for v in p.values())))
        elif tok == "meta":
            what = p.expect("l4proto", "nfproto")
            vals = p.values()
            allowed = L4_PROTOS if what == "l4proto" else {"ipv4", "ipv6"}
            if not set(vals) <= allowed:
                raise NftModelError(f"line {line}: unsupported meta {what} {vals}")
            matches.append(Match(f"meta {what}", tuple(vals)))
        elif tok in ("icmp", "icmpv6"):
            p.expect("type")
            vals = p.values()
            if not set(vals) <= (ICMP_TYPES if tok == "icmp" else ICMPV6_TYPES):
                raise NftModelError(f"line {line}: unknown {tok} type in {vals}")
            matches.append(Match(f"{tok} type", tuple(vals)))
        else:
            raise NftModelError(f"line {line}: {tok!r} is outside the modelled nftables subset")
    text = p.lines[line - 1].strip() if 0 < line <= len(p.lines) else ""
    return Rule(tuple(matches), verdict, line, text)


def _chain_body(p: _Parser, chain: Chain, existed: bool) -> None:
    p.expect("{")
    while True:
        p.skip_separators()
        tok = p.peek()
        if tok == "}":
            p.next()
            return
        if tok == "type":
            p.next()
            p.expect("filter")
            p.expect("hook")
            hook = p.expect("input", "output", "forward", "prerouting", "postrouting")
            p.expect("priority")
            prio = p.next()
            if prio in PRIORITIES:
                priority = PRIORITIES[prio]
            elif re.fullmatch(r"-?[0-9]+", prio):
                priority = int(prio)
            else:
                raise NftModelError(f"line {p.line}: unknown priority {prio!r}")
            if existed and (chain.hook, chain.priority) != (hook, priority):
                raise NftModelError(f"line {p.line}: chain {chain.name} exists with another hook or priority")
            chain.hook, chain.priority = hook, priority
            p.statement_end()
        elif tok == "policy":
            p.next()
            chain.policy = p.expect("accept", "drop")
            p.statement_end()
        else:
            chain.rules.append(_rule(p))
            p.statement_end()


def _set_body(p: _Parser, nset: NftSet) -> None:
    p.expect("{")
    while True:
        p.skip_separators()
        tok = p.next()
        if tok == "}":
            return
        if tok == "type":
            kind = p.expect("ipv4_addr", "ipv6_addr")
            if nset.type and nset.type != kind:
                raise NftModelError(f"line {p.line}: set {nset.name} exists with type {nset.type}")
            nset.type = kind
        elif tok == "flags":
            flags = p.values()
            if flags != ["interval"]:
                raise NftModelError(f"line {p.line}: unsupported set flags {flags}")
            nset.interval = True
        elif tok == "elements":
            p.expect("=")
            line = p.line
            seen = set(nset.elements)
            for value in p.values():
                net = _network(value, line)
                if (net[0] == 4) != (nset.type == "ipv4_addr"):
                    raise NftModelError(f"line {line}: {value} does not fit set {nset.name} ({nset.type})")
                if net[2] > net[1] and not nset.interval:
                    raise NftModelError(f"line {line}: set {nset.name} needs flags interval for {value}")
                if net not in seen:  # `add` of an element already there is no error
                    seen.add(net)
                    nset.elements.append(net)
        else:
            raise NftModelError(f"line {p.line}: {tok!r} is outside the modelled set syntax")
        p.statement_end()


def _overlaps(nets: list[Interval]) -> bool:
    ordered = sorted(nets, key=lambda n: (n[1], -n[2]))
    return any(b[1] <= a[2] for a, b in itertools.pairwise(ordered))


def _table_body(p: _Parser, table: Table) -> None:
    p.expect("{")
    while True:
        p.skip_separators()
        tok = p.next()
        if tok == "}":
            return
        if tok == "set":
            name = _name(p.next(), p.line, "set")
            nset = table.sets.setdefault(name, NftSet(name=name, type=""))
            _set_body(p, nset)
            if not nset.type:
                raise NftModelError(f"set {name}: no type")
            if nset.interval and _overlaps(nset.elements):
                # the kernel refuses overlapping intervals without auto-merge (SETS: auto-merge)
                raise NftModelError(f"set {name}: overlapping intervals")
        elif tok == "chain":
            name = _name(p.next(), p.line, "chain")
            existed = name in table.chains
            chain = table.chains.setdefault(name, Chain(name=name))
            _chain_body(p, chain, existed)
        else:
            raise NftModelError(f"line {p.line}: {tok!r} is outside the modelled table syntax")
        p.statement_end()


def load(text: str, state: Ruleset | None = None) -> Ruleset:
    """The kernel state after `nft -f` of `text` on `state` (default: an empty ruleset). All or nothing:
    an error leaves `state` as it was (the transaction is aborted)."""
    tables = {key: _copy_table(t) for key, t in (state.tables if state else {}).items()}
    p = _Parser(text)
    while True:
        p.skip_separators()
        tok = p.peek()
        if tok is None:
            break
        p.next()
        if tok == "delete":
            p.expect("table")
            family, name = p.expect("inet", "ip", "ip6"), _name(p.next(), p.line, "table")
            if (family, name) not in tables:
                raise NftModelError(f"line {p.line}: delete table {family} {name}: No such file or directory")
            del tables[(family, name)]
        elif tok == "table":
            family, name = p.expect("inet", "ip", "ip6"), _name(p.next(), p.line, "table")
            table = tables.setdefault((family, name), Table(family=family, name=name))
            if p.peek() == "{":
                _table_body(p, table)
        else:
            raise NftModelError(f"line {p.line}: {tok!r} is outside the modelled command set")
        p.statement_end()
    for table in tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                for m in rule.matches:
                    if m.set_name is not None and m.set_name not in table.sets:
                        raise NftModelError(f"line {rule.line}: set @{m.set_name} is not defined in "
                                            f"table {table.family} {table.name}")
    return Ruleset(tables=tables)


def _copy_table(t: Table) -> Table:
    return Table(family=t.family, name=t.name,
                 sets={k: replace(s, elements=list(s.elements)) for k, s in t.sets.items()},
                 chains={k: replace(c, rules=list(c.rules)) for k, c in t.chains.items()})


# --- evaluation ------------------------------------------------------------------------------------------

def _in(addr: str, nets: Iterable[Interval]) -> bool:
    a = ipaddress.ip_address(addr)
    version, value = a.version, int(a)
    return any(v == version and first <= value <= last for v, first, last in nets)


def _matches(m: Match, pkt: Packet, table: Table) -> bool:
    key = m.key
    if key == "ct state":
        return pkt.ct_state in m.values
    if key in ("iif", "oif"):
        return (pkt.iif if key == "iif" else pkt.oif) in m.values
    if key.startswith(("ip ", "ip6 ")):
        if pkt.version != (4 if key.startswith("ip ") else 6):
            return False
        addr = pkt.saddr if key.endswith("saddr") else pkt.daddr
        nets = table.sets[m.set_name].elements if m.set_name else [interval(v) for v in m.values]
        return _in(addr, nets)
    if key.startswith(("tcp ", "udp ")):
        port = pkt.dport if key.endswith("dport") else pkt.sport
        return pkt.proto == key[:3] and port is not None and str(port) in m.values
    if key == "meta l4proto":
        return pkt.proto in m.values
    if key == "meta nfproto":
        return f"ipv{pkt.version}" in m.values
    if key == "icmp type":
        return pkt.version == 4 and pkt.proto == "icmp" and pkt.icmp_type in m.values
    if key == "icmpv6 type":
        return pkt.version == 6 and pkt.proto == "ipv6-icmp" and pkt.icmp_type in m.values
    raise NftModelError(f"unmodelled match {key!r}")  # pragma: no cover - the parser admits none


def chain_verdict(table: Table, chain: Chain, pkt: Packet) -> tuple[str, str]:
    """(verdict, what decided) of one base chain: the first rule whose expressions all match and that
    carries a verdict, else the chain's policy."""
    for rule in chain.rules:
        if rule.verdict is not None and all(_matches(m, pkt, table) for m in rule.matches):
            return rule.verdict, f"table {table.family} {table.name} chain {chain.name} line {rule.line}: {rule.text}"
    return chain.policy, f"table {table.family} {table.name} chain {chain.name}: policy {chain.policy}"


def decide(ruleset: Ruleset, pkt: Packet) -> Decision:
    """Every base chain of the packet's hook, in ascending priority over all tables of its family (and
    inet): a drop is final; an accept ends only that chain. Accepted if no chain dropped it."""
    family = "ip" if pkt.version == 4 else "ip6"
    chains = [(c.priority, t, c) for t in ruleset.tables.values() if t.family in ("inet", family)
              for c in t.chains.values() if c.hook == pkt.hook]
    last = "no base chain on this hook: accepted"
    for _prio, table, chain in sorted(chains, key=lambda x: x[0]):
        verdict, by = chain_verdict(table, chain, pkt)
        if verdict == "drop":
            return Decision(False, by)
        last = by
    return Decision(True, last)
