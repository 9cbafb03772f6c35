"""Blocklist scans against a real rbldnsd on loopback (tests/servers/rbldnsd.py).

rbldnsd serves test copies of every shipped zone (RFC 5782 test entries seeded) plus four zones that
must fail their self-test: one without its test entry, one listing the world, one REFUSING and one
dropping every query. EMAIL_ENGINE_DNS_RESOLVERS points at it. Test IPs come from 127.0.30.0/24 (query
names only; the forwarder that drops packets listens on 127.0.30.1)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tomllib
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.blocklists import ScanReport, ScanRequest, ScanTarget, scan, scan_blocklists
from activities.dnsbl_resolver import DnspythonResolver, MuxResolver
from models.blocklist import Catalog, Kind, Rcode, load_catalog, parse_catalog
from models.settings import Settings, get_settings
from tests.servers.rbldnsd import Rbldnsd, ServedZone
from tests.support import free_port

SHIPPED = load_catalog()
EXTRA = [
    ("notest", "notest.bl.test", None),  # test entry missing
    ("world", "world.bl.test", None),  # lists 127.0.0.1 too (a list "listing the world")
    ("refused", "refused.bl.test", "refuse"),
    ("silent", "silent.bl.test", "ignore"),
]
DQS_KEY = "k26charsdqskeyforthetests1"


def _catalog() -> Catalog:
    data = tomllib.loads(resources.files("models").joinpath("blocklists.toml").read_text())
    for name, zone, _acl in EXTRA:
        data["zones"].append({"name": name, "zone": zone, "kind": "ip", "provider": "test",
                              "delist_url": "https://example.test/", "codes": {
                                  "127.0.0.2": {"effect": "listed", "meaning": f"{name} listing"}}})
    return parse_catalog(data, "test")


CATALOG = _catalog()


@pytest.fixture(scope="module")
def bl() -> Iterator[Rbldnsd]:
    extra = [ServedZone(zone, "ip", {"127.0.0.2": ["127.0.0.2"]}, acl=acl) for name, zone, acl in EXTRA]
    server = Rbldnsd.for_catalog(SHIPPED, extra=extra)
    server.aliases.update({name: zone for name, zone, _ in EXTRA})
    server.zones["notest.bl.test"].entries = {}
    server.zones["world.bl.test"].entries = {"127.0.0.2": ["127.0.0.2"], "127.0.0.1": ["127.0.0.2"]}
    with server:
        yield server


@pytest.fixture
def env(bl: Rbldnsd, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rbldnsd]:
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", bl.resolver)
    monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.7")
    monkeypatch.delenv("EMAIL_ENGINE_SPAMHAUS_DQS_KEY", raising=False)
    monkeypatch.delenv("EMAIL_ENGINE_BLOCKLIST_CATALOG", raising=False)
    get_settings.cache_clear()
    yield bl
    get_settings.cache_clear()


def by_value(report: ScanReport) -> dict[str, Any]:
    return {t.value: t for t in report.targets}


async def test_scan_classifies_real_answers_and_ignores_broken_zones(env: Rbldnsd) -> None:
    bl = env
    bl.list("spamhaus-zen", "127.0.30.5", ["127.0.0.2", "127.0.0.9"])  # SBL + DROP: two A records
    bl.list("barracuda", "127.0.30.5")
    bl.list("spamhaus-zen", "127.0.30.7", "127.255.255.254")  # Spamhaus error code
    bl.list("mailspike-rep", "127.0.30.7", "127.0.0.20")  # excellent reputation: not a listing
    bl.list("notest", "127.0.30.7")  # broken zone: must be ignored
    bl.list("world", "127.0.30.7")
    bl.list("spamhaus-zen", "2001:db8:30::5", "127.0.0.3")  # IPv6 nibble query
    bl.list("spamhaus-dbl", "bl30-listed.example", "127.0.1.4")
    bl.list("uribl-multi", "bl30-listed.example", "127.0.0.10")  # black + red bits
    targets = [ScanTarget("ip", "127.0.30.5", "t1"), ScanTarget("ip", "127.0.30.6", "t1"),
               ScanTarget("ip", "127.0.30.7", "t2"), ScanTarget("ip", "2001:db8:30::5", "t2"),
               ScanTarget("domain", "bl30-listed.example", "t1"), ScanTarget("domain", "bl30-clean.example", "t1")]
    try:
        report = await scan(targets, catalog=CATALOG)
    finally:
        for zone, value in (("spamhaus-zen", "127.0.30.5"), ("barracuda", "127.0.30.5"),
                            ("spamhaus-zen", "127.0.30.7"), ("mailspike-rep", "127.0.30.7"),
                            ("notest", "127.0.30.7"), ("spamhaus-zen", "2001:db8:30::5"),
                            ("spamhaus-dbl", "bl30-listed.example"), ("uribl-multi", "bl30-listed.example")):
            bl.unlist(zone, value)

    broken = {b.zone: b.reason for b in report.broken}
    assert set(broken) == {"notest", "world", "refused", "silent"}
    assert "127.0.0.2 is not listed" in broken["notest"]
    assert "listing the world" in broken["world"]
    assert "REFUSED" in broken["refused"]
    assert "timeout" in broken["silent"]
    assert set(report.zones) == {z.name for z in SHIPPED.active(None)}

    t = by_value(report)
    listed = {e.zone: e for e in t["127.0.30.5"].listed}
    assert set(listed) == {"spamhaus-zen", "barracuda"}
    assert listed["spamhaus-zen"].codes == ["127.0.0.2", "127.0.0.9"]
    assert "DROP" in listed["spamhaus-zen"].meaning and listed["spamhaus-zen"].delist_url
    assert t["127.0.30.5"].unknown == []

    ip_zones = {z.name for z in SHIPPED.zones if z.kind is Kind.IP and not z.dqs_only}
    assert t["127.0.30.6"].listed == [] and t["127.0.30.6"].unknown == []
    assert set(t["127.0.30.6"].not_listed) == ip_zones  # NXDOMAIN from every usable IP zone

    odd = t["127.0.30.7"]
    assert odd.listed == []  # neither the error code nor the broken zones' answers count
    assert [(u.zone, "public/open resolver" in u.reason) for u in odd.unknown] == [("spamhaus-zen", True)]
    assert [(r.zone, r.codes) for r in odd.reputation] == [("mailspike-rep", ["127.0.0.20"])]

    v6 = t["2001:db8:30::5"]
    assert [(e.zone, e.codes) for e in v6.listed] == [("spamhaus-zen", ["127.0.0.3"])]
    v6_zones = {z.name for z in SHIPPED.zones if z.kind is Kind.IP and z.ipv6}
    assert set(v6.not_listed) == v6_zones - {"spamhaus-zen"}  # IPv4-only lists are not asked

    dom = {e.zone: e for e in t["bl30-listed.example"].listed}
    assert dom["spamhaus-dbl"].meaning == "DBL: phishing domain"
    assert "URIBL black" in dom["uribl-multi"].meaning and "URIBL red" in dom["uribl-multi"].meaning
    assert t["bl30-clean.example"].listed == [] and len(t["bl30-clean.example"].not_listed) == 3

    assert report.listed == 5 and report.unknown == 1 and report.reputation == 1
    assert report.queries == 2 * len(CATALOG.active(None)) + sum(
        len(x.listed) + len(x.unknown) + len(x.not_listed) + len(x.reputation) for x in report.targets)
    assert report.self_test_seconds >= 0.7 * 0.9  # the silent zone's self-test waited for its deadline


async def test_list_unlist_reload_between_scans(env: Rbldnsd) -> None:
    target = [ScanTarget("ip", "127.0.30.9", "t1")]
    env.list("psbl", "127.0.30.9")
    try:
        first = await scan(target, zones=["psbl", "spamcop"])
    finally:
        env.unlist("psbl", "127.0.30.9")
    second = await scan(target, zones=["psbl", "spamcop"])
    assert [e.zone for e in first.targets[0].listed] == ["psbl"]
    assert second.targets[0].listed == [] and sorted(second.targets[0].not_listed) == ["psbl", "spamcop"]


class DroppingForwarder(asyncio.DatagramProtocol):
    """A UDP forwarder on 127.0.30.1 to rbldnsd that drops every query containing `drop` (timeouts)."""

    def __init__(self, upstream: tuple[str, int], drop: bytes):
        self.upstream, self.drop = upstream, drop
        self.clients: dict[int, tuple[bytes, Any]] = {}
        self.next_id = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.up: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.drop in data or self.up is None:
            return
        self.next_id = (self.next_id + 1) % 65536
        self.clients[self.next_id] = (data[:2], addr)
        self.up.sendto(self.next_id.to_bytes(2, "big") + data[2:])

    def reply(self, data: bytes) -> None:
        orig = self.clients.pop(int.from_bytes(data[:2], "big"), None)
        if orig is not None and self.transport is not None:
            self.transport.sendto(orig[0] + data[2:], orig[1])


async def test_timeouts_are_unknown_never_clean(env: Rbldnsd, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    fwd = DroppingForwarder(("127.0.0.1", env.port), b"\x0266\x0230\x010\x03127")  # 127.0.30.66 reversed
    port = free_port("127.0.30.1")
    transport, _ = await loop.create_datagram_endpoint(lambda: fwd, local_addr=("127.0.30.1", port))

    class Up(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            fwd.reply(data)

    up, _ = await loop.create_datagram_endpoint(Up, remote_addr=("127.0.0.1", env.port))
    fwd.up = up
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", f"127.0.30.1:{port}")
    get_settings.cache_clear()
    env.list("spamcop", "127.0.30.67")
    try:
        report = await scan([ScanTarget("ip", "127.0.30.66"), ScanTarget("ip", "127.0.30.67")],
                            zones=["spamcop", "psbl", "spamhaus-zen"])
    finally:
        env.unlist("spamcop", "127.0.30.67")
        transport.close()
        up.close()
    assert report.broken == []
    t = by_value(report)
    assert sorted(u.zone for u in t["127.0.30.66"].unknown) == ["psbl", "spamcop", "spamhaus-zen"]
    assert all(u.reason.startswith("timeout") for u in t["127.0.30.66"].unknown)
    assert t["127.0.30.66"].not_listed == [] and t["127.0.30.66"].listed == []
    assert [e.zone for e in t["127.0.30.67"].listed] == ["spamcop"]


async def test_dqs_zones_use_the_key_and_never_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with Rbldnsd.for_catalog(SHIPPED, dqs_key=DQS_KEY) as dqs:
        dqs.list("spamhaus-zen", "127.0.30.8")
        monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", dqs.resolver)
        monkeypatch.setenv("EMAIL_ENGINE_SPAMHAUS_DQS_KEY", DQS_KEY)
        get_settings.cache_clear()
        try:
            report = await scan([ScanTarget("ip", "127.0.30.8"), ScanTarget("domain", "bl30-clean.example")],
                                zones=["spamhaus-zen", "spamhaus-dbl", "spamhaus-zrd"])
        finally:
            get_settings.cache_clear()
    assert report.broken == [] and report.zones == ["spamhaus-zen", "spamhaus-dbl", "spamhaus-zrd"]
    entry = report.targets[0].listed[0]
    assert entry.zone_name == "<dqs-key>.zen.dq.spamhaus.net"
    assert DQS_KEY not in json.dumps(dataclasses.asdict(report))


async def test_activity_and_payloads(env: Rbldnsd) -> None:
    env.list("wpbl", "127.0.30.11")
    try:
        report = await ActivityEnvironment().run(
            scan_blocklists, ScanRequest([ScanTarget("ip", "127.0.30.11", "t1")], zones=["wpbl", "psbl"]))
    finally:
        env.unlist("wpbl", "127.0.30.11")
    assert [e.zone for e in report.targets[0].listed] == ["wpbl"]
    conv = DataConverter.default
    payloads = await conv.encode([report])
    back = (await conv.decode(payloads, [ScanReport]))[0]
    assert back == report and isinstance(back.targets[0].listed[0].codes, list)
    with pytest.raises(ApplicationError) as exc:
        await ActivityEnvironment().run(scan_blocklists, ScanRequest([ScanTarget("ip", "not-an-ip")]))
    assert exc.value.non_retryable and exc.value.type == "BadScanRequest" and "target 0" in str(exc.value)
    with pytest.raises(ApplicationError, match="unknown blocklist zone"):
        await ActivityEnvironment().run(scan_blocklists, ScanRequest([], zones=["sorbs"]))


async def test_resolvers_agree_and_report_failures(env: Rbldnsd) -> None:
    """The multiplexing resolver and dnspython's resolver give the same results on the same names."""
    servers = [("127.0.0.1", env.port)]
    names = ["2.0.0.127.zen.spamhaus.org", "1.0.0.127.zen.spamhaus.org", "zen.spamhaus.org",
             "2.0.0.127.refused.bl.test"]
    async with MuxResolver(servers, timeout=1.0) as mux:
        got = await mux.resolve_many(names)
    ref = await DnspythonResolver(servers, timeout=1.0).resolve_many(names)
    assert [r.rcode for r in got] == [Rcode.ANSWER, Rcode.NXDOMAIN, Rcode.NODATA, Rcode.REFUSED]
    assert [r.rcode for r in ref][:3] == [r.rcode for r in got][:3] and ref[0].addresses == got[0].addresses
    # nothing listens on this port: ICMP port unreachable is an error (unknown), not NXDOMAIN
    dead = [("127.0.30.2", free_port("127.0.30.2"))]
    async with MuxResolver(dead, timeout=1.0) as mux:
        assert (await mux.resolve("2.0.0.127.zen.spamhaus.org")).rcode in (Rcode.ERROR, Rcode.TIMEOUT)
    # the first resolver refuses: the next one is asked
    async with MuxResolver([*dead, *servers], timeout=1.0) as mux:
        results = await mux.resolve_many(["2.0.0.127.zen.spamhaus.org"] * 4)
    assert all(r.rcode is Rcode.ANSWER for r in results)


def test_bad_settings_are_refused_before_any_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", "8.8.8.8:99999")
    with pytest.raises(ValueError, match="port"):
        asyncio.run(scan([ScanTarget("ip", "127.0.30.1")], settings=Settings()))
    with pytest.raises(ValueError, match="target 0"):
        asyncio.run(scan([ScanTarget("domain", "not a domain")], settings=Settings(dns_resolvers="127.0.0.1:9")))


INVENTORY = """\
[[mta_hosts]]
name = "mta-bl"
address = "127.0.30.100"
backend = "postfix"

[[tenants]]
name = "bl-t1"
mta_host = "mta-bl"

[tenants.mailwizz]
base_url = "http://127.0.30.101:9/api"
source_ip = "127.0.30.101"

[[tenants.ips]]
address = "127.0.30.20"
hostname = "mail.bl30-a.example"
domain = "bl30-a.example"
status = "active"

[[tenants.ips]]
address = "127.0.30.21"
hostname = "mail.bl30-b.example"
domain = "bl30-b.example"
status = "warming"
phase = "week_1"

[[tenants.ips]]
address = "127.0.30.22"
hostname = "mail.bl30-c.example"
domain = "bl30-c.example"
status = "standby"

[[tenants.ips]]
address = "127.0.30.23"
hostname = "mail.bl30-d.example"
domain = "bl30-d.example"
status = "quarantine"

[[tenants]]
name = "bl-t2"
mta_host = "mta-bl"

[tenants.mailwizz]
base_url = "http://127.0.30.102:9/api"
source_ip = "127.0.30.102"

[[tenants.ips]]
address = "127.0.30.30"
hostname = "mail.bl30-e.example"
domain = "bl30-e.example"
status = "active"
"""


def test_cli_scan_blocklists(env: Rbldnsd, sqlite_url: str, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.inventory import apply_inventory
    from cli.scan import app
    from models.inventory import parse

    apply_inventory(parse(INVENTORY), actor="test")
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", env.resolver)  # sqlite_url reset the settings cache
    monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.7")
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: no folding in the assertions below
    get_settings.cache_clear()
    env.list("spamhaus-zen", "127.0.30.20", "127.0.0.4")
    env.list("spamhaus-zen", "127.0.30.22")  # standby: not scanned
    env.list("spamhaus-dbl", "bl30-d.example", "127.0.1.2")  # the quarantined IP's domain
    env.list("barracuda", "127.0.30.30", "127.255.255.254")
    try:
        res = cli.invoke(app, ["blocklists", "--json", "--zone", "spamhaus-zen", "--zone", "spamhaus-dbl",
                               "--zone", "barracuda"])
        assert res.exit_code == 1, res.output  # listed (exit status for cron and monitoring)
        data = json.loads(res.output)
        targets = {t["value"]: t for t in data["targets"]}
        assert set(targets) == {"127.0.30.20", "127.0.30.21", "127.0.30.23", "127.0.30.30", "bl30-a.example",
                                "bl30-b.example", "bl30-d.example", "bl30-e.example"}
        assert [(e["zone"], e["codes"]) for e in targets["127.0.30.20"]["listed"]] == [("spamhaus-zen", ["127.0.0.4"])]
        assert targets["127.0.30.20"]["tenant"] == "bl-t1"
        assert [e["zone"] for e in targets["bl30-d.example"]["listed"]] == ["spamhaus-dbl"]
        assert [u["zone"] for u in targets["127.0.30.30"]["unknown"]] == ["barracuda"]

        res = cli.invoke(app, ["blocklists", "--tenant", "bl-t1", "--zone", "spamhaus-zen",
                               "--zone", "spamhaus-dbl", "--zone", "barracuda"])
        assert res.exit_code == 1, res.output
        out = " ".join(res.output.split())
        assert "127.0.30.20" in out and "XBL" in out and "bl30-d.example" in out
        assert "127.0.30.22" not in out and "127.0.30.30" not in out
        assert "2 IPs and 2 domains" not in out and "3 IPs and 3 domains against 3 zones" in out
    finally:
        for zone, value in (("spamhaus-zen", "127.0.30.20"), ("spamhaus-zen", "127.0.30.22"),
                            ("spamhaus-dbl", "bl30-d.example"), ("barracuda", "127.0.30.30")):
            env.unlist(zone, value)

    for args, message in ((["--tenant", "nobody"], "no tenant named 'nobody'"),
                          (["--tenant", "Bad Name"], "not a valid tenant"),
                          (["--zone", "sorbs"], "unknown blocklist zone(s): sorbs")):
        res = cli.invoke(app, ["blocklists", *args])
        assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    monkeypatch.setenv("EMAIL_ENGINE_BLOCKLIST_CATALOG", "/nonexistent/catalogue.toml")
    get_settings.cache_clear()
    res = cli.invoke(app, ["blocklists"])
    assert res.exit_code == 2 and "cannot read the file" in res.output


async def test_fleet_scale_scan_matches_every_reply_to_its_query(env: Rbldnsd) -> None:
    """1,500 targets x 12 IP zones through one resolver: every listing found, nothing else, no cross-talk."""
    ips = [f"10.30.{i // 250}.{i % 250 + 1}" for i in range(1500)]  # query names only, never contacted
    listed = {ips[i]: ("spamcop" if i % 2 else "psbl") for i in range(0, 1500, 37)}
    env.set_entries("spamcop", {"127.0.0.2": ["127.0.0.2"], **{ip: ["127.0.0.2"] for ip, z in listed.items()
                                                                if z == "spamcop"}})
    env.set_entries("psbl", {"127.0.0.2": ["127.0.0.2"], **{ip: ["127.0.0.2"] for ip, z in listed.items()
                                                             if z == "psbl"}})
    try:
        report = await scan([ScanTarget("ip", ip) for ip in ips], zones=[z.name for z in SHIPPED.zones
                                                                          if z.kind is Kind.IP])
    finally:
        env.set_entries("spamcop", {"127.0.0.2": ["127.0.0.2"]})
        env.set_entries("psbl", {"127.0.0.2": ["127.0.0.2"]})
    found = {t.value: [e.zone for e in t.listed] for t in report.targets if t.listed}
    assert found == {ip: [z] for ip, z in listed.items()}
    assert report.unknown == 0 and report.broken == []
    assert report.not_listed == 1500 * 12 - len(listed)


class Scripted(asyncio.DatagramProtocol):
    """A UDP responder on 127.0.30.3 whose replies a test scripts (forged, truncated): cases rbldnsd cannot
    produce. It is a real socket; only the content of its answers is made up."""

    def __init__(self, mode: str):
        self.mode = mode
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        import dns.flags
        import dns.message
        import dns.rrset

        assert self.transport is not None
        query = dns.message.from_wire(data)
        name = query.question[0].name
        if self.mode == "forged-first":
            # same id, another question: must be ignored; then the real answer
            other = dns.message.make_query("9.9.9.9.zen.spamhaus.org", "A")
            other.id = query.id
            forged = dns.message.make_response(other)
            forged.answer.append(dns.rrset.from_text(other.question[0].name, 60, "IN", "A", "127.0.0.4"))
            self.transport.sendto(forged.to_wire(), addr)
            real = dns.message.make_response(query)
            real.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "127.0.0.2"))
            self.transport.sendto(real.to_wire(), addr)
        elif self.mode == "truncated":
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            self.transport.sendto(reply.to_wire(), addr)


@pytest.mark.parametrize("mode", ["forged-first", "truncated"])
async def test_forged_and_truncated_replies(mode: str) -> None:
    loop = asyncio.get_running_loop()
    port = free_port("127.0.30.3")
    transport, _ = await loop.create_datagram_endpoint(lambda: Scripted(mode), local_addr=("127.0.30.3", port))
    try:
        async with MuxResolver([("127.0.30.3", port)], timeout=1.0) as mux:
            result = await mux.resolve("2.0.0.127.zen.spamhaus.org")
    finally:
        transport.close()
    if mode == "forged-first":
        assert result.rcode is Rcode.ANSWER and result.addresses == ("127.0.0.2",)
    else:  # retried over TCP, where nothing listens: an error (unknown), never "not listed"
        assert result.rcode is Rcode.ERROR and "TCP after truncation" in result.detail


def test_targets_activity(sqlite_url: str) -> None:
    from activities.blocklists import blocklist_scan_targets
    from activities.inventory import apply_inventory
    from models.inventory import parse

    apply_inventory(parse(INVENTORY), actor="test")
    got = ActivityEnvironment().run(blocklist_scan_targets, "bl-t1")
    assert [(t.kind, t.value) for t in got] == [
        ("ip", "127.0.30.20"), ("domain", "bl30-a.example"), ("ip", "127.0.30.21"), ("domain", "bl30-b.example"),
        ("ip", "127.0.30.23"), ("domain", "bl30-d.example")]
    assert len(ActivityEnvironment().run(blocklist_scan_targets, None)) == 8
    with pytest.raises(ApplicationError) as exc:
        ActivityEnvironment().run(blocklist_scan_targets, "nobody")
    assert exc.value.non_retryable


async def test_overlong_query_name_is_unknown_not_a_crash(env: Rbldnsd) -> None:
    long_domain = ".".join(["a" * 60] * 4) + ".example"  # 251 characters: valid, but not with a zone appended
    report = await scan([ScanTarget("domain", long_domain), ScanTarget("domain", "bl30-clean.example")],
                        zones=["spamhaus-dbl"])
    first, second = report.targets
    assert [(u.zone, u.reason) for u in first.unknown] == [
        ("spamhaus-dbl", "DNS error: invalid query name (too long?)")]
    assert second.not_listed == ["spamhaus-dbl"]


async def test_ipv6_self_test_entries(env: Rbldnsd) -> None:
    """A zone with test_ipv6 = true must also list ::ffff:7f00:2 (nibble query) and not ::ffff:7f00:1."""
    data = tomllib.loads(resources.files("models").joinpath("blocklists.toml").read_text())
    zen = next(z for z in data["zones"] if z["name"] == "spamhaus-zen")
    cat = parse_catalog({"zones": [{**zen, "test_ipv6": True}]}, "v6")
    assert cat.zones[0].test_ipv6
    # rbldnsd answers the nibble query of ::ffff:7f00:2 from its IPv4 data (127.0.0.2 is seeded)
    ok = await scan([], catalog=cat)
    assert ok.broken == [] and ok.queries == 4
    env.set_entries("spamhaus-zen", {"127.0.0.3": ["127.0.0.2"]})
    try:
        missing = await scan([], catalog=cat)
    finally:
        env.set_entries("spamhaus-zen", {"127.0.0.2": ["127.0.0.2"]})
    assert [b.zone for b in missing.broken] == ["spamhaus-zen"]
    assert "test entry 127.0.0.2 is not listed" in missing.broken[0].reason
    assert "test entry ::ffff:7f00:2 is not listed (NXDOMAIN)" in missing.broken[0].reason


def test_cli_exit_status_for_cron_and_monitoring(env: Rbldnsd, sqlite_url: str, cli: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """0 clean, 1 listed, 3 incomplete (unknown answers or broken zones, nothing listed); --help says so."""
    from activities.inventory import apply_inventory
    from cli.scan import app
    from models.exit_status import scan_status
    from models.inventory import parse

    assert (scan_status(0, 0, 0), scan_status(1, 5, 2), scan_status(0, 1, 0), scan_status(0, 0, 1)) == (0, 1, 3, 3)
    apply_inventory(parse(INVENTORY), actor="test")
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", env.resolver)
    monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.7")
    get_settings.cache_clear()
    zones = ["--zone", "spamhaus-zen", "--zone", "barracuda"]
    assert cli.invoke(app, ["blocklists", *zones]).exit_code == 0
    env.list("barracuda", "127.0.30.30", "127.255.255.254")  # the list's error code: unknown, not listed
    try:
        assert cli.invoke(app, ["blocklists", *zones]).exit_code == 3
        assert cli.invoke(app, ["blocklists", "--json", *zones]).exit_code == 3
        env.list("spamhaus-zen", "127.0.30.20", "127.0.0.4")
        try:
            assert cli.invoke(app, ["blocklists", "--json", *zones]).exit_code == 1
        finally:
            env.unlist("spamhaus-zen", "127.0.30.20")
    finally:
        env.unlist("barracuda", "127.0.30.30")
    help_text = " ".join(cli.invoke(app, ["blocklists", "--help"]).output.split())
    assert "Exit status" in help_text and "1 at least one IP or domain listed" in help_text
