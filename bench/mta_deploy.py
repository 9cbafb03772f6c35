"""Benchmark: an SSH deploy (upload, switch, validate, reload, verify) of 100, 1,000 and 10,000 IPs.

Run: .venv/bin/python -m bench.mta_deploy

Against a real OpenSSH sshd on loopback (tests/servers/sshd.py) whose `pmta` is the recording fake
(PowerMTA cannot be installed here). Baseline, run side by side: the no-op deploy of the same render
(connect, read back, compare: what every unchanged deploy costs). Printed per size: render size,
best-of-3 full deploy, best-of-3 no-op, and their ratio; then the same full deploy shipping one DKIM
key per IP (0600, in the release; one key's bytes reused under every name: generating thousands of RSA
keys would dominate the run) and its ratio to the deploy without keys; the best of 3 is a steady
state (unchanged keys are hard-linked from the current release, the manifest spares reading them back).
The fake `pmta` hashes the whole config tree (keys included) on each call, which real PowerMTA does
not. Wall times are noisy on a loaded machine.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from activities.dkim_keys import ensure_key, public_fingerprint
from activities.mta.base import backend_for
from activities.mta.deploy import DkimKeys, deploy_release
from activities.mta.ssh import SshEndpoint, SshTarget
from bench.mta_render import fleet
from models.enums import MtaBackend
from tests.servers.sshd import start_sshd

SIZES = (100, 1_000, 10_000)


async def main() -> None:
    backend = backend_for(MtaBackend.POWERMTA)
    with tempfile.TemporaryDirectory() as tmp, start_sshd(Path(tmp) / "sshd", address="127.0.11.1") as server:
        ep = SshEndpoint(name="bench", address=server.address, port=server.port, user=server.user,
                         known_hosts=server.known_hosts, key_path=server.client_key)
        ensure_key(Path(tmp) / "bench.key", 2048)
        pem = (Path(tmp) / "bench.key").read_bytes()
        print(f"{'IPs':>7} {'files':>6} {'KiB':>7} {'deploy s':>9} {'no-op s':>8} {'ratio':>6} "
              f"{'+keys s':>8} {'ratio':>6}")
        for n in SIZES:
            snap = fleet(n)
            names = {f"{ip.domain}.{ip.dkim_selector}.key" for t in snap.tenants for ip in t.ips}
            keys = DkimKeys(files=dict.fromkeys(names, pem), fingerprints=dict.fromkeys(names, public_fingerprint(pem)))
            full, noop, with_keys = [], [], []
            for variant in range(3):
                # A different render each round (one IP's quota changes), so every deploy uploads.
                t0 = snap.tenants[0]
                ip0 = replace(t0.ips[0], daily_quota=1000 + variant + n)
                snap_v = replace(snap, tenants=(replace(t0, ips=(ip0, *t0.ips[1:])), *snap.tenants[1:]))
                rendered = backend.render(snap_v, config_dir=str(server.config_dir))
                start = time.perf_counter()
                async with SshTarget(ep) as target:
                    report = await deploy_release(target, backend, rendered)
                full.append(time.perf_counter() - start)
                assert report.ok and report.changed, report.message
                start = time.perf_counter()
                async with SshTarget(ep) as target:
                    again = await deploy_release(target, backend, rendered)
                noop.append(time.perf_counter() - start)
                assert again.ok and not again.changed
            for variant in range(3):
                t0 = snap.tenants[0]
                ip0 = replace(t0.ips[0], daily_quota=2000 + variant + n)
                snap_v = replace(snap, tenants=(replace(t0, ips=(ip0, *t0.ips[1:])), *snap.tenants[1:]))
                rendered = backend.render(snap_v, config_dir=str(server.config_dir))
                start = time.perf_counter()
                async with SshTarget(ep) as target:
                    report = await deploy_release(target, backend, rendered, keys=keys)
                with_keys.append(time.perf_counter() - start)
                assert report.ok and report.changed, report.message
            size = sum(len(t) for t in rendered.files.values()) / 1024
            print(f"{n:>7} {len(rendered.files):>6} {size:>7.0f} {min(full):>9.3f} {min(noop):>8.3f} "
                  f"{min(full) / min(noop):>6.1f} {min(with_keys):>8.3f} {min(with_keys) / min(full):>6.1f}")


if __name__ == "__main__":
    asyncio.run(main())
