"""A small inventory for MTA deploy tests (loopback range 127.0.11.0/24; only ever rendered or
deployed to the test's own sshd)."""

from __future__ import annotations

from pathlib import Path

from models.inventory import InventoryFile, parse


def small_inventory(host: str, *, enabled: bool, port: int = 22, user: str = "root", config_dir: str = "/etc/pmta",
                    address: str = "127.0.11.1", ips_per_tenant: int = 4, ip_base: int = 10,
                    feeder_base: int = 201, key_dir: Path | None = None,
                    mta_user: str | None = None) -> InventoryFile:
    """Two tenants on `host`; tenant t's IPs are 127.0.11.(ip_base + 50t + i), its feeder .(feeder_base + t).
    `key_dir`: where the engine keeps the tenants' DKIM keys (make them with `make_dkim_keys`)."""
    lines = [
        "[[mta_hosts]]", f'name = "{host}"', f'address = "{address}"', 'backend = "powermta"',
        f"ssh_port = {port}", f'ssh_user = "{user}"', f'config_dir = "{config_dir}"',
        f"enabled = {str(enabled).lower()}", *([f'mta_user = "{mta_user}"'] if mta_user else []),
    ]
    for t, tenant in enumerate(("dt-a", "dt-b")):
        lines += [
            "", "[[tenants]]", f'name = "{tenant}-{host}"', f'mta_host = "{host}"',
            *([f'dkim_key_dir = "{key_dir}"'] if key_dir else []),
            "", "[tenants.mailwizz]", 'base_url = "http://127.0.11.200/api"',
            f'source_ip = "127.0.11.{feeder_base + t}"',
        ]
        for i in range(ips_per_tenant):
            n = ip_base + t * 50 + i
            status, phase = ("warming", 'phase = "week_2"') if i == ips_per_tenant - 1 else ("active", "")
            lines += ["", "[[tenants.ips]]", f'address = "127.0.11.{n}"', f'hostname = "mail{n}.{tenant}.example"',
                      f'domain = "{tenant}-{n}.example"', f'status = "{status}"', phase]
    return parse("\n".join(lines) + "\n")


def make_dkim_keys(inv: InventoryFile, bits: int = 1024) -> dict[str, Path]:
    """Create every IP's DKIM key where the inventory says the engine keeps it; {domain: path}."""
    from activities.dkim_keys import ensure_key

    out = {}
    for t in inv.tenants:
        for ip in t.ips:
            path = Path(t.key_path(ip))
            ensure_key(path, bits)
            out[ip.domain] = path
    return out
