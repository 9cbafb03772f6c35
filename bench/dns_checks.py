"""DNS authentication checks per second against NSD on loopback, bounded-parallel vs sequential.

    .venv/bin/python -m bench.dns_checks [--domains 100] [--concurrency 8]

Fleet: N synthetic sending domains in 127.0.20.0/24 (SPF with a two-level include chain, a 2048-bit
DKIM key, DMARC with rua, forward-confirmed PTR), served by a real NSD on a loopback port. Both runs
use the same checker (checkdmarc + dnspython on that server, the real private keys read from disk).
Baseline: the same checks one domain at a time (concurrency 1), in the same run. Every result must
be valid on both sides, or the run fails. Timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from activities.dns_checks import Checker, DnsTarget
from tests.servers.nsd import NsdServer, txt, zone_text


def build(root: Path, n: int) -> tuple[dict[str, str], list[DnsTarget]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    dkim = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    zones: dict[str, str] = {"bench-test": zone_text("bench-test", [])}
    targets, reverse = [], []
    for i in range(1, n + 1):
        d, ip = f"d{i}.bench-test", f"127.0.20.{i}"
        key_path = root / f"{d}.key"
        key_path.write_bytes(pem)
        zones[d] = zone_text(d, [
            f"@ IN TXT {txt(f'v=spf1 include:_spf.{d} -all')}",
            f"_spf IN TXT {txt(f'v=spf1 include:_spf2.{d} ~all')}",
            f"_spf2 IN TXT {txt(f'v=spf1 ip4:{ip} -all')}",
            "@ IN MX 10 mail", f"mail IN A {ip}",
            f"default._domainkey IN TXT {txt(dkim)}",
            f"_dmarc IN TXT {txt(f'v=DMARC1; p=reject; rua=mailto:dmarc@{d}')}",
        ])
        reverse.append(f"{i} IN PTR mail.{d}.")
        targets.append(DnsTarget(i, d, "bench", ip, f"mail.{d}", "default", str(key_path)))
    zones["20.0.127.in-addr.arpa"] = zone_text("20.0.127.in-addr.arpa", reverse)
    return zones, targets


def run(checker: Checker, targets: list[DnsTarget], concurrency: int) -> float:
    start = time.perf_counter()
    results = checker.check_many(targets, concurrency)
    elapsed = time.perf_counter() - start
    bad = [r.target.domain for r in results if r.overall != "valid"]
    if bad:
        raise SystemExit(f"unexpected non-valid results: {bad[:5]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    if not 1 <= args.domains <= 250:
        raise SystemExit("--domains must be 1..250 (one loopback /24)")
    with tempfile.TemporaryDirectory() as tmp:
        zones, targets = build(Path(tmp), args.domains)
        server = NsdServer(Path(tmp) / "nsd", zones).start()
        try:
            checker = Checker([(server.host, server.port)], 2.0)
            run(checker, targets[:3], 1)  # warm-up (imports, public suffix list)
            seq = run(checker, targets, 1)
            par = run(checker, targets, args.concurrency)
        finally:
            server.stop()
    n = len(targets)
    print(f"{n} domains x 4 checks against NSD on loopback")
    print(f"baseline, sequential:       {seq:7.2f} s  {n / seq:7.1f} domains/s")
    print(f"engine, concurrency {args.concurrency:<3}:    {par:7.2f} s  {n / par:7.1f} domains/s")
    print(f"ratio (parallel / sequential throughput): {seq / par:.2f}x")


if __name__ == "__main__":
    main()
