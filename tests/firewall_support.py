"""Helpers for the host firewall tests: the reference inventory with a [firewall] section, a pure
inventory -> FirewallFleet (no database) for large fleets, and packets for the nftables model."""

from __future__ import annotations

from models import firewall as fw
from models import nft_model as nft
from models.inventory import InventoryFile
from models.names import ip_version
from models.snapshot import FleetSnapshot, IpView, MtaHostView, TenantView
from tests.conftest import REFERENCE_INVENTORY

#: What the README shows: admin networks in both families, the seed's engine host (89.167.1.10, §2.1),
#: and the extra rule an operator adds for Telegram alerts.
FIREWALL_SECTION = """
[firewall]
deploy = false
admin_addresses = ["203.0.113.0/28", "2001:db8:ad::/48"]
engine_addresses = ["89.167.1.10"]
dns_resolvers = ["89.167.1.53"]

[[firewall.allow]]
name = "telegram"
hosts = ["engine"]
direction = "out"
ports = [443]
addresses = ["149.154.160.0/20", "91.108.4.0/22"]
"""

ADMIN_V4, ADMIN_V6, ENGINE_ADDR = "203.0.113.5", "2001:db8:ad::7", "89.167.1.10"
STRANGER_V4, STRANGER_V6 = "198.51.100.99", "2001:db8:bad::1"


def reference_text(section: str = FIREWALL_SECTION) -> str:
    return REFERENCE_INVENTORY.read_text() + section


def fleet_of(inv: InventoryFile) -> fw.FirewallFleet:
    """What activities.firewall.load_firewall returns after `inventory load`, without a database (the
    fields the firewall reads; tests/test_firewall_cli.py checks the database path gives the same text)."""
    assert inv.firewall is not None
    hosts = tuple(MtaHostView(name=h.name, address=h.address, backend=h.backend, ssh_port=h.ssh_port,
                              ssh_user=h.ssh_user, config_dir=h.config_dir, enabled=h.enabled)
                  for h in sorted(inv.mta_hosts, key=lambda h: h.name))
    tenants = tuple(TenantView(
        name=t.name, pool=t.pool_name, mta_host=t.mta_host, feeder_ip=t.mailwizz.source_ip,
        mailwizz_url=t.mailwizz.base_url, bounce_domain=t.bounce_domain, fbl_domain=t.fbl_domain,
        ips=tuple(IpView(address=ip.address, version=ip_version(ip.address), hostname=ip.hostname, tenant=t.name,
                         status=ip.status, phase=ip.phase, daily_quota=0, weight=0, vmta=t.vmta_name(ip, i),
                         domain=ip.domain, dkim_selector=ip.dkim_selector, dkim_key_path=t.key_path(ip))
                  for i, ip in enumerate(t.ips)))
        for t in sorted(inv.tenants, key=lambda t: t.name))
    receivers = tuple(fw.ReceiverView(w.name, w.url, w.enabled) for w in sorted(inv.webhooks, key=lambda w: w.name))
    return fw.FirewallFleet(policy=inv.firewall, snapshot=FleetSnapshot(hosts=hosts, tenants=tenants),
                            receivers=receivers)


def tcp_in(src: str, dst: str, port: int, state: str = "new", iif: str = "eth0") -> nft.Packet:
    return nft.Packet("input", src, dst, "tcp", dport=port, sport=40000, ct_state=state, iif=iif)


def tcp_out(src: str, dst: str, port: int, state: str = "new") -> nft.Packet:
    return nft.Packet("output", src, dst, "tcp", dport=port, sport=40000, ct_state=state)


def accepts(text: str, pkt: nft.Packet) -> bool:
    return nft.decide(nft.load(text), pkt).accepted
