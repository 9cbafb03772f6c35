"""Benchmark: host firewall rulesets for the 10,000-IP fleet of scripts/make_fleet.py.

Run: .venv/bin/python -m bench.firewall_render [--repeat 5] [--no-nft]

Fleets: `make_fleet --tenants 2 --ips 5000` (two MTA hosts of 5,000 contiguous IPs), one host of 10,000
contiguous IPs, and one host of 10,000 scattered IPs (every other address: nothing collapses into a
prefix, the worst case for the set). Per fleet, side by side with the baseline (the PowerMTA render of the
same hosts, which a deploy does anyway): best-of-N render time of every host's ruleset and its ratio to the
baseline; ruleset size (bytes, lines, set elements); the deployer's session check (the nftables model:
parse + verdicts); and `nft -c -f` of the largest ruleset in a throwaway network namespace
(activities.firewall.nft_check: `unshare --net` as root; a user namespace otherwise, where nft cannot
load more than about 5,000 set intervals: "Message too long").
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from activities.firewall import nft_check
from activities.mta.base import backend_for
from models import firewall as fw
from models.enums import MtaBackend
from models.inventory import parse
from scripts.make_fleet import fleet_toml
from tests.firewall_support import FIREWALL_SECTION, fleet_of


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def fleets() -> list[tuple[str, fw.FirewallFleet]]:
    two = parse(fleet_toml(2, 5000) + FIREWALL_SECTION)
    one = parse(fleet_toml(1, 10000) + FIREWALL_SECTION)
    wide = parse(fleet_toml(1, 20000) + FIREWALL_SECTION)
    tenant = wide.tenants[0]
    scattered = wide.model_copy(update={"tenants": [tenant.model_copy(update={"ips": tenant.ips[::2]})]})
    return [("make_fleet 2 x 5,000", fleet_of(two)), ("1 host x 10,000", fleet_of(one)),
            ("1 host x 10,000 scattered", fleet_of(scattered))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-nft", action="store_true", help="skip the nft -c timing")
    args = ap.parse_args()
    pmta = backend_for(MtaBackend.POWERMTA)
    print(f"{'fleet':28} {'rulesets':>9} {'baseline':>9} {'ratio':>6} {'bytes':>8} {'lines':>6} {'elements':>8} "
          f"{'check':>7} {'nft -c':>7}")
    for label, fleet in fleets():
        hosts = [h.name for h in fleet.snapshot.hosts]
        firewall_s = best(lambda f=fleet: fw.render_all(f), args.repeat)  # type: ignore[misc]
        baseline_s = best(lambda f=fleet, hs=hosts: [pmta.render(f.snapshot.for_host(h)) for h in hs],  # type: ignore[misc]
                          args.repeat)
        texts = fw.render_all(fleet)
        big = max((t for h, t in texts.items() if h != fw.ENGINE), key=len)
        elements = sum(1 for line in big.splitlines() if line.startswith("\t\t\t"))
        session = fw.SshSession.parse(f"89.167.1.10 50000 {fleet.snapshot.hosts[0].address} 22")
        check_s = best(lambda t=big, s=session: fw.session_problems(t, s), args.repeat)  # type: ignore[misc]
        nft_s = "-"
        if not args.no_nft and shutil.which("unshare"):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "big.nft"
                path.write_text(big)
                t = time.perf_counter()
                ok, out = nft_check(str(path))
                nft_s = f"{time.perf_counter() - t:.2f}s" if ok else f"FAILED: {out[:60]}"
        print(f"{label:28} {firewall_s * 1000:7.1f}ms {baseline_s * 1000:7.1f}ms {firewall_s / baseline_s:6.2f} "
              f"{len(big.encode()):8d} {big.count(chr(10)):6d} {elements:8d} {check_s * 1000:5.0f}ms {nft_s:>7}")
    print("rulesets: best time to render every host's ruleset (engine + MTA hosts); baseline: the PowerMTA "
          "render of the same MTA hosts; bytes/lines/elements: the largest MTA host ruleset; check: the "
          "deployer's session check on it (nftables model); nft -c: `nft -c -f` of it in a throwaway network "
          "namespace (activities.firewall.nft_check).")


if __name__ == "__main__":
    main()
