"""Benchmark: MTA config render time for 100, 1,000 and 10,000 IPs, PowerMTA and Postfix.

Run: .venv/bin/python -m bench.mta_render

Fleets are synthetic, shaped like the reference one (tenants of 50 IPs: 40 active, 7 warming at
week_1..week_6, 3 standby). Baseline, run side by side: the 100-IP render of the same backend scaled
linearly (time x N/100). Printed per size: best-of-7 time, ratio to the previous size (10x IPs: ~10
means linear), ratio to the linear baseline (~1.0 means linear), and Python function calls per IP (a
load-independent work count: constant means linear). Wall times are noisy on a loaded machine.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable

from activities.mta.base import backend_for
from models.enums import IpStatus, MtaBackend, WarmupPhase
from models.schedule import default_quota, default_weight
from models.snapshot import FleetSnapshot, IpView, MtaHostView, TenantView

SIZES = (100, 1_000, 10_000)
PHASES = list(WarmupPhase)


def fleet(n_ips: int, per_tenant: int = 50) -> FleetSnapshot:
    tenants = []
    for ti in range(n_ips // per_tenant):
        name = f"t{ti}"
        ips = []
        for k in range(per_tenant):
            i = ti * per_tenant + k
            status = IpStatus.ACTIVE if k < 40 else IpStatus.WARMING if k < 47 else IpStatus.STANDBY
            phase = PHASES[k % 6] if status == IpStatus.WARMING else None
            quota = default_quota(status, phase)
            ips.append(IpView(
                address=f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}", version=4, hostname=f"mail.d{i}.example",
                tenant=name, status=status, phase=phase, daily_quota=quota, weight=default_weight(status, quota),
                vmta=f"vmta-{name}-{k + 1}", domain=f"d{i}.example", dkim_selector="default",
                dkim_key_path=f"/etc/pmta/dkim/d{i}.example.default.key"))
        tenants.append(TenantView(name=name, pool=f"{name}-pool", mta_host="mta-1",
                                  feeder_ip=f"192.168.{ti // 256}.{ti % 256}", mailwizz_url="http://127.0.0.1/api",
                                  ips=tuple(ips)))
    return FleetSnapshot(hosts=(MtaHostView("mta-1", "127.0.0.1", MtaBackend.POWERMTA),), tenants=tuple(tenants))


def best_of(fn: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def calls(fn: Callable[[], object]) -> int:
    """Python function calls of one run: a load-independent measure of work (linear = constant per IP)."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    return int(pstats.Stats(prof).total_calls)  # type: ignore[attr-defined]


def main() -> None:
    snaps = {n: fleet(n) for n in SIZES}
    print(f"{'backend':9} {'IPs':>7} {'time':>10} {'bytes':>11} {'x prev (10x IPs)':>17} {'vs linear baseline':>19}"
          f" {'calls/IP':>9}")
    for kind in MtaBackend:
        impl = backend_for(kind)
        base = prev = None
        for n in SIZES:
            snap = snaps[n]
            t = best_of(lambda snap=snap, impl=impl: impl.render(snap))  # type: ignore[misc]
            size = sum(len(v) for v in impl.render(snap).files.values())
            base = base if base is not None else t
            linear = base * n / SIZES[0]
            per10 = f"{t / prev:.2f}" if prev else "-"
            per_ip = calls(lambda snap=snap, impl=impl: impl.render(snap)) / n  # type: ignore[misc]
            print(f"{kind.value:9} {n:>7} {t * 1000:>8.1f}ms {size:>11,} {per10:>17} {t / linear:>19.2f}"
                  f" {per_ip:>9.1f}")
            prev = t


if __name__ == "__main__":
    main()
