"""Benchmark: MTA config render time for 100, 1,000 and 10,000 IPs, PowerMTA and Postfix.

Run: .venv/bin/python -m bench.mta_render [--before REV]

Fleets are synthetic, shaped like the reference one (tenants of 50 IPs: 40 active, 7 warming at
week_1..week_6, 3 standby). Baseline, run side by side: the 100-IP render of the same backend scaled
linearly (time x N/100). Printed per size: best-of-7 time, ratio to the previous size (10x IPs: ~10
means linear), ratio to the linear baseline (~1.0 means linear), and Python function calls per IP (a
load-independent work count: constant means linear). Wall times are noisy on a loaded machine.

Before/after: with `--before REV` (default: the commit that added tests/test_mta_render_golden.py, whose
renderers are those before the issue-14 speed-ups) the same fleets are rendered by that revision's code
(`git archive REV` into a temporary directory, run in a subprocess, interleaved with this tree's runs so
both see the same load): its best time, the speed-up (before / after), and whether the output is
byte-identical (SHA-256 of every file and note).
Target (issue 14): 10,000 IPs <= 0.2 s for each backend.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from activities.mta.base import backend_for
from models.enums import IpStatus, MtaBackend, WarmupPhase
from models.schedule import default_quota, default_weight
from models.snapshot import FleetSnapshot, IpView, MtaHostView, TenantView

SIZES = (100, 1_000, 10_000)
PHASES = list(WarmupPhase)
TARGET_10K_S = 0.2
#: the commit that added the golden test sits just before the speed-ups (found by git, so rebases keep it)
GOLDEN_TEST = "tests/test_mta_render_golden.py"
REPO = Path(__file__).resolve().parent.parent


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


def output_digest(kind: MtaBackend, snap: FleetSnapshot) -> str:
    r = backend_for(kind).render(snap)
    h = hashlib.sha256()
    for name in sorted(r.files):
        h.update(name.encode() + b"\0" + r.files[name].encode() + b"\0")
    h.update("\n".join(r.notes).encode())
    return h.hexdigest()


def measure(kind: MtaBackend, n: int, repeat: int = 7) -> tuple[float, str]:
    """(best time, output digest) of rendering the n-IP fleet with this tree's code."""
    snap = fleet(n)
    impl = backend_for(kind)
    return best_of(lambda: impl.render(snap), repeat), output_digest(kind, snap)


def default_before() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--diff-filter=A", "--format=%H", "--", GOLDEN_TEST],
                         capture_output=True, text=True, check=False).stdout.strip()
    return out


class Before:
    """The same measure() run by an earlier revision's code, in a subprocess fed one request a line."""

    def __init__(self, rev: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-render-before-")
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(self.tmp.name, filter="data")
        # this file's measure(), run against the old tree's modules (fleet() is the same in both)
        me = Path(__file__).read_text()
        (Path(self.tmp.name) / "bench" / "_render_now.py").write_text(me)
        code = ("import json,sys\nfrom bench._render_now import measure\nfrom models.enums import MtaBackend\n"
                "for line in sys.stdin:\n k,n=json.loads(line)\n print(json.dumps(measure(MtaBackend(k),n)),"
                "flush=True)\n")
        env = {**os.environ, "PYTHONPATH": self.tmp.name}
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=self.tmp.name, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def measure(self, kind: MtaBackend, n: int) -> tuple[float, str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([kind.value, n]) + "\n")
        self.proc.stdin.flush()
        t, d = json.loads(self.proc.stdout.readline())
        return float(t), str(d)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default=None, help="git revision to compare with ('' to skip; default: the "
                    "renderers before the issue-14 speed-ups)")
    args = ap.parse_args()
    rev = default_before() if args.before is None else args.before
    before = Before(rev) if rev else None
    if before:
        print(f"before = {rev[:12]}; output compared by SHA-256 (a renderer change since then shows as DIFFERS)")
    snaps = {n: fleet(n) for n in SIZES}
    print(f"{'backend':9} {'IPs':>7} {'time':>10} {'bytes':>11} {'x prev (10x IPs)':>17} {'vs linear baseline':>19}"
          f" {'calls/IP':>9}" + (f" {'before':>10} {'speed-up':>9} {'output':>10}" if before else ""))
    try:
        for kind in MtaBackend:
            impl = backend_for(kind)
            base = prev = None
            for n in SIZES:
                snap = snaps[n]
                t, digest = measure(kind, n)
                size = sum(len(v) for v in impl.render(snap).files.values())
                base = base if base is not None else t
                linear = base * n / SIZES[0]
                per10 = f"{t / prev:.2f}" if prev else "-"
                per_ip = calls(lambda snap=snap, impl=impl: impl.render(snap)) / n  # type: ignore[misc]
                line = (f"{kind.value:9} {n:>7} {t * 1000:>8.1f}ms {size:>11,} {per10:>17} {t / linear:>19.2f}"
                        f" {per_ip:>9.1f}")
                if before:
                    tb, db = before.measure(kind, n)
                    same = "identical" if db == digest else "DIFFERS"
                    line += f" {tb * 1000:>8.1f}ms {tb / t:>8.2f}x {same:>10}"
                print(line, flush=True)
                prev = t
            verdict = "meets" if prev is not None and prev <= TARGET_10K_S else "MISSES"
            print(f"{kind.value:9} 10,000 IPs in {prev or 0:.3f} s: {verdict} the {TARGET_10K_S} s target")
    finally:
        if before:
            before.close()


if __name__ == "__main__":
    main()
