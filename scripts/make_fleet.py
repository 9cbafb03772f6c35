"""Write a valid inventory of N tenants x M IPs: the scale fixture for benches and tests (issue 14).

    python scripts/make_fleet.py --tenants 2 --ips 5000 > fleet.toml
    email-engine inventory load fleet.toml

Same shape as the reference fleet (scripts/make_reference_inventory.py): per tenant 80% active, 14%
warming (weeks 1-5 spread), 6% standby, one sending domain per IP, a MailWizz feeder and bounce/FBL
domains of its own, one disabled MTA host per tenant. Addresses come from 198.18.0.0/15 (RFC 2544,
the benchmarking range: 131,072 addresses, never contacted), feeders from 100.64.0.0/10; domains are
under .example (RFC 2606). Deterministic: the same arguments write the same file.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

#: Benchmarking range (RFC 2544): 2^17 sending addresses at most.
SENDING_NET = ipaddress.IPv4Network("198.18.0.0/15")
FEEDER_NET = ipaddress.IPv4Network("100.64.0.0/10")
HOST_NET = ipaddress.IPv4Network("192.0.2.0/24")
WARMING_PHASES = ["week_1", "week_2", "week_3", "week_4", "week_5"]


def status_of(n: int, per_tenant: int) -> str:
    """The n-th IP (0-based) of a tenant: the first 80% active, then 14% warming, the rest standby."""
    if n < per_tenant * 80 // 100:
        return "active"
    if n < per_tenant * 94 // 100:
        return "warming"
    return "standby"


def fleet_toml(tenants: int, ips: int) -> str:
    """The inventory text; ValueError when the fleet does not fit its address ranges."""
    if tenants < 1 or ips < 1:
        raise ValueError("a fleet needs at least one tenant and one IP per tenant")
    if tenants * ips > SENDING_NET.num_addresses - 2:
        raise ValueError(f"{tenants} x {ips} IPs do not fit {SENDING_NET} ({SENDING_NET.num_addresses - 2} usable)")
    if tenants > HOST_NET.num_addresses - 2:
        raise ValueError(f"at most {HOST_NET.num_addresses - 2} tenants (one MTA host each)")
    first = int(SENDING_NET.network_address) + 1
    out = [f"# Scale fixture: {tenants} tenants x {ips} IPs, written by scripts/make_fleet.py (issue 14).", ""]
    for t in range(tenants):
        out += ["[[mta_hosts]]", f'name = "mta-{t + 1}"', f'address = "{HOST_NET.network_address + t + 1}"',
                'backend = "powermta"', 'config_dir = "/etc/pmta"', "enabled = false", ""]
    for t in range(tenants):
        name = f"fleet-{t + 1}"
        out += ["[[tenants]]", f'name = "{name}"', f'mta_host = "mta-{t + 1}"', f'pool = "{name}-pool"',
                f'bounce_domain = "bounce.{name}.example"', f'fbl_domain = "fbl.{name}.example"', "",
                "[tenants.mailwizz]", f'base_url = "https://mailwizz.{name}.example/api"',
                f'source_ip = "{FEEDER_NET.network_address + t + 1}"']
        for n in range(ips):
            address = ipaddress.IPv4Address(first + t * ips + n)
            domain = f"s{n + 1}.{name}.example"
            status = status_of(n, ips)
            out += ["", "[[tenants.ips]]", f'address = "{address}"', f'hostname = "mail.{domain}"',
                    f'domain = "{domain}"', f'vmta = "vmta-{name}-{n + 1}"', f'status = "{status}"']
            if status == "warming":
                out.append(f'phase = "{WARMING_PHASES[n % len(WARMING_PHASES)]}"')
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=2)
    ap.add_argument("--ips", type=int, default=5000, help="IPs per tenant")
    args = ap.parse_args(argv)
    try:
        sys.stdout.write(fleet_toml(args.tenants, args.ips))
    except ValueError as exc:
        ap.error(str(exc))


if __name__ == "__main__":
    main()
