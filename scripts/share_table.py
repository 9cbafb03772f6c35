"""Print the warming-IP share tables of the reference fleet for both backends (issue 10).

Renders deploy/reference-inventory.toml for PowerMTA and Postfix, parses what was rendered, and runs
the pure share model (models/mta_share.py: PowerMTA's pool round-robin, cold VirtualMTA re-routing and
rate caps; Postfix's randmap) for tenant volumes of 10 %, 100 % and 300 % of capacity (the sum of the
tenant's active and warming daily quotas) with the assumed recipient mix REFERENCE_MIX.
Run from the repository root: python scripts/share_table.py [--tenant client-1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.enums import IpStatus
from models.inventory import parse
from models.mta_render import postfix, powermta
from models.mta_render.from_inventory import snapshot_from_inventory
from models.mta_share import REFERENCE_MIX, parse_pmta, parse_postfix, pmta_day, postfix_day

FRACTIONS = (0.1, 1.0, 3.0)


def tables(tenant: str, inventory: Path = Path("deploy/reference-inventory.toml")) -> str:
    snap = snapshot_from_inventory(parse(inventory.read_text()))
    t = snap.tenant(tenant)
    host = snap.for_host(t.mta_host)
    cfg = parse_pmta(powermta.render(host, "/etc/pmta"))
    pf = postfix.render(host, "/etc/postfix")
    slots, bind = parse_postfix(pf["email-engine/main.cf"], pf["email-engine/master.cf"])
    entries = slots[postfix.restriction_class(t.name)]
    capacity = sum(ip.daily_quota for ip in t.sending_ips)
    warming = [ip for ip in t.ips if ip.status == IpStatus.WARMING]
    active = [ip for ip in t.ips if ip.status == IpStatus.ACTIVE]
    out = [f"tenant {t.name}: capacity {capacity:,} messages/day ({len(active)} active, {len(warming)} warming); "
           "offered messages/day (share of quota)", ""]
    for label, day_of in (
        ("PowerMTA (cold VirtualMTAs, max-smtp-msg-rate caps)",
         lambda v: {o.ip: o for o in pmta_day(cfg, t.feeder_ip, v, REFERENCE_MIX).values()}),
        ("Postfix (randmap weighted by quota, no daily cap)",
         lambda v: {o.ip: o for o in postfix_day(entries, bind, v).values()}),
    ):
        days = {f: day_of(round(capacity * f)) for f in FRACTIONS}
        out.append(label)
        out.append(f"  {'IP':<14} {'phase':<7} {'quota':>6} | " + " | ".join(
            f"{f'{f:.0%} of capacity':>22}" for f in FRACTIONS))
        for ip in warming:
            cells = []
            for f in FRACTIONS:
                o = days[f][ip.address]
                q = f" q{o.queued}" if o.queued else ""
                cells.append(f"{o.offered:>7,} ({o.offered / ip.daily_quota:6.0%}){q:>6}")
            phase = ip.phase.value if ip.phase else ""
            out.append(f"  {ip.address:<14} {phase:<7} {ip.daily_quota:>6,} | " + " | ".join(
                f"{c:>22}" for c in cells))
        cells = []
        for f in FRACTIONS:
            offered = [days[f][ip.address].offered for ip in active]
            queued = sum(days[f][ip.address].queued for ip in active)
            cells.append(f"{min(offered):,}-{max(offered):,} q{queued:,}")
        out.append(f"  {'40 active':<14} {'':<7} {10_000:>6,} | " + " | ".join(f"{c:>22}" for c in cells))
        out.append("")
    out.append("qN: messages left queued at the end of the day (offered beyond the VirtualMTA's daily rate).")
    out.append("Postfix has no daily cap: everything offered is sent, including the excess over the quota.")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--tenant", default="client-1")
    print(tables(ap.parse_args().tenant))


if __name__ == "__main__":
    main()
