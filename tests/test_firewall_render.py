"""Host firewall rulesets (issue 15): rendered from the inventory, judged with the nftables model
(models/nft_model.py) and checked by the real `nft -c -f` (Debian nftables) inside a throwaway network
namespace (activities.firewall.nft_check: `unshare --net` as root, `unshare -rn` otherwise; nothing reaches
this machine's own namespace)."""

from __future__ import annotations

import ipaddress
import os
import random
from pathlib import Path

import pytest

from activities.firewall import nft_check
from models import firewall as fw
from models import nft_model as nft
from models.inventory import InventoryError, parse
from scripts.make_fleet import fleet_toml
from tests.firewall_support import (
    ADMIN_V4,
    ADMIN_V6,
    ENGINE_ADDR,
    FIREWALL_SECTION,
    STRANGER_V4,
    STRANGER_V6,
    accepts,
    fleet_of,
    reference_text,
    tcp_in,
    tcp_out,
)
from tests.support import require_tool, unavailable

HOST, FEEDERS, SENDING = "100.1.1.1", ("89.167.2.10", "89.167.3.10"), ("45.123.10.1", "45.124.20.50")


@pytest.fixture(scope="module")
def reference() -> dict[str, str]:
    return fw.render_all(fleet_of(parse(reference_text())))


def nft_c(tmp_path: Path, name: str, text: str) -> None:
    require_tool("nft", "/usr/sbin/nft")
    require_tool("unshare")
    path = tmp_path / f"{name}.nft"
    path.write_text(text)
    ok, out = nft_check(str(path))
    if not ok and "Operation not permitted" in out and "unshare" in out:
        unavailable(f"user namespaces are not available here: {out}")
    assert ok, f"nft -c -f refused {name}:\n{out}"


def test_every_reference_ruleset_passes_nft_check(reference: dict[str, str], tmp_path: Path) -> None:
    assert set(reference) == {fw.ENGINE, "pmta-1"}
    for name, text in reference.items():
        nft_c(tmp_path, name, text)


def test_mta_host_accepts_admin_and_engine_ssh_and_drops_smtp_from_strangers(reference: dict[str, str]) -> None:
    text = reference["pmta-1"]
    for src in (ADMIN_V4, ENGINE_ADDR):
        assert accepts(text, tcp_in(src, HOST, 22)), src
        assert accepts(text, tcp_in(src, HOST, 22, "established"))
    assert accepts(text, nft.Packet("input", ADMIN_V6, "2001:db8:100::1", "tcp", dport=22))
    assert not accepts(text, tcp_in(STRANGER_V4, HOST, 22))
    assert not accepts(text, nft.Packet("input", STRANGER_V6, "2001:db8:100::1", "tcp", dport=22))
    for feeder in FEEDERS:
        assert accepts(text, tcp_in(feeder, SENDING[0], 25))
    # 25 from a non-feeder: dropped on the sending IPs; accepted on the host's own address only, because
    # the reference tenants' bounce/FBL domains have it as their MX (reports come from any mail server)
    for ip in SENDING:
        assert not accepts(text, tcp_in(STRANGER_V4, ip, 25)), ip
    assert accepts(text, tcp_in(STRANGER_V4, HOST, 25))
    assert not accepts(text, tcp_in(ENGINE_ADDR, HOST, 443))
    # out: SMTP only from the sending IPs; DNS only to the listed resolver
    assert accepts(text, tcp_out(SENDING[1], "192.0.2.25", 25))
    assert not accepts(text, tcp_out(HOST, "192.0.2.25", 25))
    assert not accepts(text, tcp_out(SENDING[0], "192.0.2.25", 443))
    assert accepts(text, nft.Packet("output", HOST, "89.167.1.53", "udp", dport=53))
    assert not accepts(text, nft.Packet("output", HOST, "9.9.9.9", "udp", dport=53))
    # replies of accepted connections and loopback
    assert accepts(text, tcp_out(HOST, STRANGER_V4, 40000, "established"))
    assert accepts(text, tcp_in("127.0.0.1", "127.0.0.1", 8080, iif="lo"))
    # IPv6 neighbour discovery in, ICMPv6 out (without them IPv6 stops working)
    assert accepts(text, nft.Packet("input", "fe80::1", "fe80::2", "ipv6-icmp", icmp_type="nd-neighbor-solicit"))
    assert accepts(text, nft.Packet("output", "fe80::2", "fe80::1", "ipv6-icmp", icmp_type="nd-neighbor-advert"))


def test_engine_host_ruleset(reference: dict[str, str]) -> None:
    text, me = reference[fw.ENGINE], ENGINE_ADDR
    assert accepts(text, tcp_in(STRANGER_V4, me, 443))
    assert accepts(text, tcp_in(ADMIN_V4, me, 22))
    assert not accepts(text, tcp_in(STRANGER_V4, me, 22))
    assert not accepts(text, tcp_in(STRANGER_V4, me, 5432))
    for feeder in FEEDERS:  # the MailWizz APIs (base_url names a host: the tenant's MailWizz server)
        assert accepts(text, tcp_out(me, feeder, 443))
    assert accepts(text, tcp_out(me, HOST, 22)) and accepts(text, tcp_out(me, HOST, 25))
    assert not accepts(text, tcp_out(me, HOST, 8080))
    assert accepts(text, tcp_out(me, "149.154.167.220", 443))  # the operator's telegram rule
    assert not accepts(text, tcp_out(me, "198.51.100.20", 443))
    assert accepts(text, nft.Packet("output", me, "89.167.1.53", "tcp", dport=53))


def test_without_report_domains_smtp_is_feeders_only() -> None:
    text = reference_text().replace('bounce_domain = "bounce.', '# bounce_domain = "bounce.').replace(
        'fbl_domain = "fbl.', '# fbl_domain = "fbl.')
    ruleset = fw.render(fleet_of(parse(text)), "pmta-1")
    assert not accepts(ruleset, tcp_in(STRANGER_V4, HOST, 25))
    assert accepts(ruleset, tcp_in(FEEDERS[1], HOST, 25))


IPV6_INVENTORY = """
[[mta_hosts]]
name = "mta-v6"
address = "2001:db8:100::1"

[[tenants]]
name = "six"
mta_host = "mta-v6"

[tenants.mailwizz]
base_url = "https://[2001:db8:200::10]:8443/api"
source_ip = "2001:db8:200::10"

[[tenants.ips]]
address = "2001:db8:300::1"
hostname = "mail.six-1.example"
domain = "six-1.example"
status = "active"

[[tenants.ips]]
address = "2001:db8:300::2"
hostname = "mail.six-2.example"
domain = "six-2.example"
status = "standby"

[[webhooks]]
name = "scraper-pro"
url = "https://scraper-pro.example/hooks"
events = ["ip.quarantined"]

[firewall]
admin_addresses = ["2001:db8:ad::/48"]
engine_addresses = ["2001:db8:e::10", "192.0.2.10"]

[firewall.webhook_addresses]
scraper-pro = ["2001:db8:500::20"]
"""


def test_ipv6_fleet(tmp_path: Path) -> None:
    fleet = fleet_of(parse(IPV6_INVENTORY))
    mta, engine = fw.render(fleet, "mta-v6"), fw.render(fleet, fw.ENGINE)
    assert "ip6 saddr @engine_v6 tcp dport 22 accept" in mta and "ip saddr @engine_v4" in mta
    assert accepts(mta, nft.Packet("input", "2001:db8:e::10", "2001:db8:100::1", "tcp", dport=22))
    assert accepts(mta, nft.Packet("input", "2001:db8:200::10", "2001:db8:300::1", "tcp", dport=25))
    assert not accepts(mta, nft.Packet("input", STRANGER_V6, "2001:db8:300::1", "tcp", dport=25))
    assert accepts(mta, nft.Packet("output", "2001:db8:300::2", "2001:db8:999::1", "tcp", dport=25))
    assert not accepts(mta, nft.Packet("output", "2001:db8:100::1", "2001:db8:999::1", "tcp", dport=25))
    assert accepts(mta, nft.Packet("output", "2001:db8:100::1", "2001:db8:999::1", "udp", dport=53))  # no resolvers
    assert accepts(engine, nft.Packet("output", "2001:db8:e::10", "2001:db8:200::10", "tcp", dport=8443))
    assert accepts(engine, nft.Packet("output", "2001:db8:e::10", "2001:db8:500::20", "tcp", dport=443))
    assert not accepts(engine, nft.Packet("output", "2001:db8:e::10", "2001:db8:500::20", "tcp", dport=8443))
    for name, text in (("mta-v6", mta), ("engine", engine)):
        nft_c(tmp_path, name, text)


def test_render_is_deterministic_and_order_free() -> None:
    a = fw.render_all(fleet_of(parse(reference_text())))
    shuffled = FIREWALL_SECTION.replace('["203.0.113.0/28", "2001:db8:ad::/48"]',
                                        '["2001:db8:ad::/48", "203.0.113.8/29", "203.0.113.0/29", "203.0.113.3"]')
    b = fw.render_all(fleet_of(parse(reference_text(shuffled))))
    assert a == fw.render_all(fleet_of(parse(reference_text())))
    assert a == b  # the same addresses, written in another order and split: one collapsed canonical set


def test_10k_fleet_passes_nft_check(tmp_path: Path) -> None:
    inv = parse(fleet_toml(2, 5000) + FIREWALL_SECTION)
    fleet = fleet_of(inv)
    text = fw.render(fleet, "mta-1")
    sending = {ip.address for ip in inv.tenants[0].ips}
    assert len(sending) == 5000
    assert accepts(text, tcp_out(sorted(sending)[1234], "192.0.2.200", 25))
    assert not accepts(text, tcp_out(inv.tenants[1].ips[0].address, "192.0.2.200", 25))  # other host's tenant
    nft_c(tmp_path, "mta-1", text)
    # scattered addresses (every other one) cannot be collapsed: one set element per IP. As root the
    # check runs in a plain new network namespace, as nft runs on a host: 10,000 elements load. In a user
    # namespace (not root) the kernel caps nft's netlink buffer near 5,000 intervals ("Message too long").
    n = 10_000 if os.geteuid() == 0 else 5_000
    inv2 = parse(fleet_toml(1, 2 * n) + FIREWALL_SECTION)
    inv2 = inv2.model_copy(update={"tenants": [inv2.tenants[0].model_copy(update={"ips": inv2.tenants[0].ips[::2]})]})
    text2 = fw.render(fleet_of(inv2), "mta-1")
    assert text2.count("\t\t\t198.1") == n
    nft_c(tmp_path, "scattered", text2)


@pytest.mark.parametrize("bad, message", [
    ('"fe80::1%eth0"', "zone ids"),
    ('"203.0.113.7\\n  tcp dport 25 accept"', "not an IP address"),
    ('"admin.example.com"', "not an IP address"),
    ('"203.0.113.5/24"', "host bits set (the network is 203.0.113.0/24)"),
    ('"203.0.113.0/ 24"', "prefix length"),
    ('"0.0.0.0/0"', "not a unicast address"),
    ('" 203.0.113.7"', "surrounding whitespace"),
])
def test_bad_admin_addresses_are_refused_with_the_entry_named(bad: str, message: str) -> None:
    section = FIREWALL_SECTION.replace('admin_addresses = ["203.0.113.0/28", "2001:db8:ad::/48"]',
                                       f'admin_addresses = ["203.0.113.0/28", {bad}]')
    with pytest.raises(InventoryError) as err:
        parse(reference_text(section))
    assert any(e.startswith("firewall.admin_addresses[1]") and message in e for e in err.value.errors), err.value.errors


@pytest.mark.parametrize("section, message", [
    (FIREWALL_SECTION.replace('engine_addresses = ["89.167.1.10"]', 'engine_addresses = ["2001:db8:e::1"]'),
     "no IPv4 address, but the engine reaches MTA host 'pmta-1'"),
    (FIREWALL_SECTION.replace('hosts = ["engine"]', 'hosts = ["pmta-9"]'), "unknown host 'pmta-9'"),
    (FIREWALL_SECTION.replace('name = "telegram"', 'name = "tele gram"'), "not a valid rule name"),
    (FIREWALL_SECTION.replace("ports = [443]", "ports = [0]"), "greater than or equal to 1"),
    (FIREWALL_SECTION.replace("ports = [443]", 'ports = ["443"]'), "valid integer"),
    (FIREWALL_SECTION + '\n[firewall.mailwizz_addresses]\nclient-9 = ["192.0.2.1"]\n', "unknown tenant"),
    (FIREWALL_SECTION.replace("deploy = false", "deploy = false\nflush_ruleset = true"), "unknown key"),
])
def test_bad_firewall_sections_are_refused(section: str, message: str) -> None:
    with pytest.raises(InventoryError) as err:
        parse(reference_text(section))
    assert any(message in e for e in err.value.errors), err.value.errors


def test_webhook_receiver_named_by_host_needs_addresses() -> None:
    text = IPV6_INVENTORY.replace('[firewall.webhook_addresses]\nscraper-pro = ["2001:db8:500::20"]\n', "")
    with pytest.raises(InventoryError) as err:
        parse(text)
    assert any("add firewall.webhook_addresses.scraper-pro" in e for e in err.value.errors), err.value.errors


def test_renderer_revalidates_what_it_renders() -> None:
    """A value that reached the renderer around the loader (a row written by hand) is refused, not rendered."""
    fleet = fleet_of(parse(reference_text()))
    policy = fleet.policy.model_construct(**{**dict(fleet.policy), "admin_addresses": ["203.0.113.1\n}"]})
    with pytest.raises(fw.FirewallError, match=r"firewall\.admin_addresses"):
        fw.render(fw.FirewallFleet(policy, fleet.snapshot), "pmta-1")
    host = fleet.snapshot.hosts[0]
    bad_host = type(host)(**{**host.__dict__, "address": "100.001.1.1"})
    snapshot = type(fleet.snapshot)(hosts=(bad_host,), tenants=fleet.snapshot.tenants)
    with pytest.raises(ValueError, match=r"not an IP address|canonical"):
        fw.render(fw.FirewallFleet(fleet.policy, snapshot), "pmta-1")


# --- the deployer's session check (pure) ------------------------------------------------------------------

def test_session_check(reference: dict[str, str]) -> None:
    text = reference["pmta-1"]
    assert fw.session_problems(text, fw.SshSession.parse(f"{ENGINE_ADDR} 50000 {HOST} 22\n")) == []
    assert fw.session_problems(text, fw.SshSession.parse(f"{ADMIN_V4} 50000 {HOST} 22")) == []
    assert fw.session_problems(text, fw.SshSession.parse("127.0.0.1 50000 127.0.0.1 22")) == []
    mapped = fw.SshSession.parse(f"::ffff:{ENGINE_ADDR} 50000 ::ffff:{HOST} 22")
    assert (mapped.client, mapped.server) == (ENGINE_ADDR, HOST) and fw.session_problems(text, mapped) == []
    # the engine behind a NAT address nobody listed: the session survives only while conntrack tracks it
    # (established), the next deploy would not get in: refused
    problems = fw.session_problems(text, fw.SshSession.parse(f"{STRANGER_V4} 50000 {HOST} 22"))
    assert [p.split(" (")[0] for p in problems] == ["the open session's packets to the host",
                                                   "the open session's packets from the host"]
    assert all("picked up mid-stream" in p and "policy drop" in p for p in problems), problems
    assert "the next deploy's connection" in problems[0]
    # the session on another port than the inventory's ssh_port
    assert fw.session_problems(text, fw.SshSession.parse(f"{ENGINE_ADDR} 50000 {HOST} 2222"))
    for bad in ("", "fe80::1%eth0 1 fe80::2 22", "1.2.3.4 x 5.6.7.8 22", "1.2.3.4 1 5.6.7.8"):
        with pytest.raises(fw.FirewallError):
            fw.SshSession.parse(bad)


LOCKOUT = """table inet email_engine
delete table inet email_engine
table inet email_engine {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tip saddr 192.0.2.1 tcp dport 22 accept
\t}
}
"""


def test_session_check_refuses_a_ruleset_without_established_or_loopback() -> None:
    problems = fw.session_problems(LOCKOUT, fw.SshSession.parse("127.0.0.1 50000 127.0.11.1 2222"))
    assert [p.split(" (")[1].split(")")[0] for p in problems] == [
        "tracked", "picked up mid-stream; also the next deploy's connection"]
    assert all(p.startswith("the open session's packets to the host") for p in problems)
    assert fw.session_problems("table inet x { chain c { jump y } }", fw.SshSession.parse("1.2.3.4 1 5.6.7.8 22"))


# --- the model itself --------------------------------------------------------------------------------------

def test_model_replaces_only_its_table_and_other_tables_still_drop(reference: dict[str, str]) -> None:
    text = reference["pmta-1"]
    operator = ("table inet operator {\n chain input {\n  type filter hook input priority 10; policy accept;\n"
                "  tcp dport 22 ip saddr 203.0.113.5 drop\n }\n}\n")
    state = nft.load(operator)
    once = nft.load(text, state)
    twice = nft.load(text, once)
    assert set(twice.tables) == {("inet", "operator"), ("inet", "email_engine")}
    ours = twice.tables[("inet", "email_engine")].chains["input"].rules
    assert len(ours) == len(once.tables[("inet", "email_engine")].chains["input"].rules)  # replaced, not doubled
    # our accept does not override the operator's drop (accept ends one chain; drop is final)
    d = nft.decide(twice, tcp_in(ADMIN_V4, HOST, 22))
    assert not d.accepted and "table inet operator" in d.by
    assert nft.decide(twice, tcp_in(ENGINE_ADDR, HOST, 22)).accepted
    # without the `delete table` line a second load appends a second copy of every rule (add semantics)
    body = text.replace("delete table inet email_engine\n", "")
    doubled = nft.load(body, nft.load(body))
    assert len(doubled.tables[("inet", "email_engine")].chains["input"].rules) == 2 * len(ours)
    with pytest.raises(nft.NftModelError, match="No such file"):
        nft.load("delete table inet email_engine\n")
    with pytest.raises(nft.NftModelError, match="outside the modelled"):
        nft.load("table inet t {\n chain c {\n  type filter hook input priority 0;\n  tcp dport 22 jump x\n }\n}\n")
    with pytest.raises(nft.NftModelError, match="overlapping"):
        nft.load("table inet t {\n set s {\n  type ipv4_addr\n  flags interval\n"
                 "  elements = { 10.0.0.0/8, 10.1.0.0/16 }\n }\n}\n")


def test_collapse_writes_canonical_text() -> None:
    v4, v6 = fw._collapse(["203.0.113.1", "203.0.113.0", "2001:db8::1", "2001:db8::", "198.51.100.0/24"], "test")
    assert v4 == ["198.51.100.0/24", "203.0.113.0/31"] and v6 == ["2001:db8::/127"]
    with pytest.raises(fw.FirewallError, match="canonical"):
        fw._collapse(["2001:DB8::1"], "test")


def test_integer_collapse_equals_ipaddress_collapse() -> None:
    """The renderer collapses with integers (fast at 10,000 addresses); ipaddress is the reference."""
    rng = random.Random(15)
    for version, bits, base in ((4, 32, int(ipaddress.IPv4Address("198.18.0.0"))),
                                (6, 128, int(ipaddress.IPv6Address("2001:db8::")))):
        for _ in range(200):
            nets = []
            for _ in range(rng.randint(1, 40)):
                prefix = bits - rng.choice([0, 0, 0, 1, 2, 3, 8])
                first = (base + rng.randrange(0, 512)) >> (bits - prefix) << (bits - prefix)
                nets.append(ipaddress.ip_network((first, prefix)))
            expected = [str(n.network_address) if n.prefixlen == bits else n.compressed
                        for n in ipaddress.collapse_addresses(nets)]  # type: ignore[type-var]
            got = nft.collapse([(version, int(n.network_address), int(n.broadcast_address)) for n in nets])
            assert got == expected, nets
