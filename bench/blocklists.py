"""Blocklist scan throughput: Email Engine's scanner vs pydnsbl, same rbldnsd, same zones, same run.

    .venv/bin/python -m bench.blocklists [--ips 1000] [--zones 10] [--rounds 3] [--concurrency 100]

A real rbldnsd on 127.0.0.1 serves test copies of the first N IP zones of the shipped catalogue; 5% of
the IPs (from 198.18.0.0/15, the benchmarking range: only query names, never contacted) are listed in
some zones and 1% answer an error code. Both checkers query every IP against every zone with the
same concurrency; the scanner also self-tests every zone and classifies each answer (listed /
not_listed / unknown), pydnsbl counts any answer as listed. Each round runs both, alternating;
the best round and the median of each are reported. dnspython's own async resolver (one socket per query) is shown
on a sample for reference. Bounded in time: every query has a 2 s deadline.

The same scan of a whole fleet through Temporal (database, decisions, payload sizes): bench/fleet_scan.py.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import time
from collections.abc import Sequence

import aiodns
from pydnsbl import DNSBLIpChecker
from pydnsbl.providers import Provider

from activities.blocklists import ScanTarget, scan
from activities.dnsbl_resolver import DnspythonResolver, MuxResolver
from models.blocklist import Catalog, Kind, Zone, load_catalog
from models.settings import Settings
from tests.servers.rbldnsd import Rbldnsd


def _ips(n: int) -> list[str]:
    base = int(ipaddress.IPv4Address("198.18.0.1"))
    return [str(ipaddress.IPv4Address(base + i)) for i in range(n)]


async def _ours(ips: list[str], catalog: Catalog, settings: Settings, concurrency: int) -> tuple[float, int, int, int]:
    targets = [ScanTarget("ip", ip, "bench") for ip in ips]
    res = MuxResolver(settings.resolvers(), timeout=settings.dns_timeout, concurrency=concurrency)
    async with res:
        t = time.perf_counter()
        report = await scan(targets, catalog=catalog, resolver=res, settings=settings)
        dt = time.perf_counter() - t
    assert not report.broken, report.broken
    return dt, report.queries, report.listed, report.unknown


async def _pydnsbl(ips: list[str], zones: list[str], port: int, concurrency: int) -> tuple[float, int, int, int]:
    checker = DNSBLIpChecker(providers=[Provider(z) for z in zones], timeout=2, tries=2,
                             concurrency=concurrency, loop=asyncio.get_running_loop())
    checker._resolver = aiodns.DNSResolver(nameservers=["127.0.0.1"], udp_port=port, tcp_port=port,
                                           timeout=1, tries=2)
    t = time.perf_counter()
    results = await asyncio.gather(*(checker.check_async(ip) for ip in ips))
    dt = time.perf_counter() - t
    listed = sum(len(r.detected_by) for r in results)
    failed = sum(len(r.failed_providers) for r in results)
    return dt, len(ips) * len(zones), listed, failed


async def _dnspython(ips: list[str], zones: list[str], settings: Settings, concurrency: int) -> tuple[float, int]:
    res = DnspythonResolver(settings.resolvers(), timeout=settings.dns_timeout, concurrency=concurrency)
    names = [f"{'.'.join(reversed(ip.split('.')))}.{z}" for ip in ips for z in zones]
    t = time.perf_counter()
    await res.resolve_many(names)
    return time.perf_counter() - t, len(names)


def seed_listings(bl: Rbldnsd, ip_zones: Sequence[Zone], ips: Sequence[str], every: int = 20) -> None:
    """One IP in `every` listed in two zones (5% by default), 1% of the others answering an error code
    (unknown for the scanner, "listed" for pydnsbl); every other query is NXDOMAIN."""
    entries_by_zone: dict[str, dict[str, list[str]]] = {z.name: {} for z in ip_zones}
    for i, ip in enumerate(ips):
        if i % every == 0:
            for z in (ip_zones[i % len(ip_zones)], ip_zones[(i + 3) % len(ip_zones)]):
                entries_by_zone[z.name][ip] = bl.defaults[z.zone]
        elif i % 100 == 1:
            entries_by_zone[ip_zones[0].name][ip] = ["127.255.255.254"]
    for z in ip_zones:
        served = bl.zone_of(z.name)
        bl.set_entries(z.name, {**served.entries, **entries_by_zone[z.name]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ips", type=int, default=1000)
    ap.add_argument("--zones", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=100)
    args = ap.parse_args()

    full = load_catalog()
    ip_zones = [z for z in full.zones if z.kind is Kind.IP][: args.zones]
    catalog = Catalog(tuple(ip_zones), "bench")
    ips = _ips(args.ips)
    with Rbldnsd.for_catalog(catalog) as bl:
        seed_listings(bl, ip_zones, ips)
        settings = Settings(dns_resolvers=bl.resolver, dns_timeout=2.0)
        zones = [z.zone for z in ip_zones]

        async def run() -> None:
            times_ours: list[float] = []
            times_py: list[float] = []
            q_ours = q_py = 0
            for r in range(args.rounds):
                dt, q_ours, listed, unknown = await _ours(ips, catalog, settings, args.concurrency)
                times_ours.append(dt)
                dt2, q_py, py_listed, py_failed = await _pydnsbl(ips, zones, bl.port, args.concurrency)
                times_py.append(dt2)
                print(f"round {r + 1}: email-engine {q_ours / dt:8.0f} q/s ({listed} listed, {unknown} unknown)   "
                      f"pydnsbl {q_py / dt2:8.0f} q/s ({py_listed} 'listed', {py_failed} failed)")
            sample = ips[: max(1, len(ips) // 5)]
            dt3, q3 = await _dnspython(sample, zones, settings, args.concurrency)
            best_ours, best_py = min(times_ours), min(times_py)
            ours_qps, py_qps = q_ours / best_ours, q_py / best_py
            med_ours, med_py = q_ours / statistics.median(times_ours), q_py / statistics.median(times_py)
            print()
            print(f"{args.ips} IPs x {len(zones)} zones, concurrency {args.concurrency}, rbldnsd on loopback")
            print(f"  email-engine scan (self-test + classification): {ours_qps:9.0f} queries/s "
                  f"({q_ours} queries in {best_ours:.3f} s)")
            print(f"  pydnsbl 1.1.7 (aiodns/c-ares, any answer = listed): {py_qps:9.0f} queries/s "
                  f"({q_py} queries in {best_py:.3f} s)")
            print(f"  dnspython asyncresolver (reference, {len(sample)} IPs): {q3 / dt3:9.0f} queries/s")
            print(f"  ratio email-engine / pydnsbl: {ours_qps / py_qps:.2f}x best rounds, "
                  f"{med_ours / med_py:.2f}x medians ({med_ours:.0f} vs {med_py:.0f} q/s) (target >= 1.5x)")

        asyncio.run(asyncio.wait_for(run(), timeout=300))


if __name__ == "__main__":
    main()
