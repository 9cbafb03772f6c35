"""Renders stay byte-identical across performance work: SHA-256 of every file the PowerMTA and Postfix
backends render, for the reference fleet and for a 10,000-IP fleet with every shape the renderers
branch on (IPv4 and IPv6, each status and phase, more warming than active IPs, a tenant with warming
IPs only, one with no sending IP, report domains or none, upper-case selector).

The digests were recorded from the renderers before the issue-14 speed-ups (PowerMTA's again after the
accounting record-fields gained `rcpt`/`bounceCat` for the contact webhooks, from main's unoptimised
renderer); a change of output must be deliberate: update GOLDEN with the reason in the commit message.
"""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

from activities.mta.base import backend_for
from models.enums import IpStatus, MtaBackend, WarmupPhase
from models.inventory import parse
from models.mta_render.from_inventory import snapshot_from_inventory
from models.schedule import default_quota, default_weight
from models.snapshot import FleetSnapshot, IpView, MtaHostView, TenantView
from tests.conftest import REFERENCE_INVENTORY

PHASES = list(WarmupPhase)
#: per tenant shape: (active, warming, other) counts; cycled over the tenants
SHAPES = ((40, 7, 3), (2, 9, 1), (0, 5, 2), (0, 0, 4), (45, 3, 2))
OTHER = (IpStatus.STANDBY, IpStatus.QUARANTINE, IpStatus.RESTING, IpStatus.RETIRING)


def varied_fleet(n_ips: int, per_tenant: int = 50) -> FleetSnapshot:
    tenants = []
    i = 0
    for ti in range(n_ips // per_tenant):
        name = f"t{ti}"
        active, warming, _ = SHAPES[ti % len(SHAPES)]
        ips = []
        for k in range(per_tenant):
            status = (IpStatus.ACTIVE if k < active else IpStatus.WARMING if k < active + warming
                      else OTHER[k % len(OTHER)])
            phase = PHASES[(k + ti) % 6] if status == IpStatus.WARMING else None
            quota = default_quota(status, phase) if status in (IpStatus.ACTIVE, IpStatus.WARMING) else 0
            v6 = i % 7 == 3
            address = str(ipaddress.IPv6Address(0x20010DB8 << 96 | i) if v6 else ipaddress.IPv4Address(0x0A000000 | i))
            ips.append(IpView(
                address=address, version=6 if v6 else 4, hostname=f"mail.d{i}.example", tenant=name,
                status=status, phase=phase, daily_quota=quota, weight=default_weight(status, quota),
                vmta=f"vmta-{name}-{k + 1}", domain=f"d{i}.example", dkim_selector="Sel1" if i % 11 == 0 else "s1",
                dkim_key_path=f"/var/lib/ee/dkim/d{i}.example.key"))
            i += 1
        reports = ti % 3 != 1
        tenants.append(TenantView(
            name=name, pool=f"{name}-pool", mta_host="mta-1", feeder_ip=f"192.168.{ti // 256}.{ti % 256}",
            mailwizz_url="http://127.0.0.1/api", ips=tuple(ips),
            bounce_domain=f"bounce.{name}.example" if reports else None,
            fbl_domain=f"fbl.{name}.example" if reports and ti % 2 else None))
    return FleetSnapshot(hosts=(MtaHostView("mta-1", "127.0.0.1", MtaBackend.POWERMTA),), tenants=tuple(tenants))


def digest(files: dict[str, str], notes: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    h.update("\n".join(notes).encode())
    return h.hexdigest()


def fleets() -> dict[str, FleetSnapshot]:
    return {"ref": snapshot_from_inventory(parse(REFERENCE_INVENTORY.read_text())), "10k": varied_fleet(10_000)}


CONFIG_DIRS = {"default": None, "custom": "/opt/mta/conf"}


GOLDEN: dict[tuple[str, MtaBackend, str], str] = {
    ("ref", MtaBackend.POWERMTA, "default"): "7f95b118e1b5b3051bb5094fa389473b597b139dbc797062eeb74aed58d5fbe2",
    ("ref", MtaBackend.POWERMTA, "custom"): "9dc62cd5f3d0288a4eed003d7c7c5345cc3bf7f31f9de9fb78ad6191b54227b4",
    ("ref", MtaBackend.POSTFIX, "default"): "1e0cddc4ef2b162f22396f69a1f2d2d20a94df8b12fed68e3364e3205aa1c628",
    ("ref", MtaBackend.POSTFIX, "custom"): "7a727fd11607dd643db87275d3c3f1e83e5f9328ea4a4d2519b33486c85d9a13",
    ("10k", MtaBackend.POWERMTA, "default"): "38024361ac86dc3552674de90a35234d47fe20d3b3b4fe6a72e28ce174e9523f",
    ("10k", MtaBackend.POWERMTA, "custom"): "264cfb6a30427122087044b1a51422f1d70df2cf4dff802bc1da9d34b666014a",
    ("10k", MtaBackend.POSTFIX, "default"): "801e7a74722dd745aa0b9860475569b8149cd2920202844cf4daec4ff34ea065",
    ("10k", MtaBackend.POSTFIX, "custom"): "ec0fbbd4786e09d218657c53c99db0b115af76dcc5b5b80de4fd6ad625b42603",
}


@pytest.fixture(scope="module")
def all_fleets() -> dict[str, FleetSnapshot]:
    return fleets()


@pytest.mark.parametrize("fleet_name", ["ref", "10k"])
@pytest.mark.parametrize("kind", list(MtaBackend))
@pytest.mark.parametrize("config_dir", list(CONFIG_DIRS))
def test_render_output_is_unchanged(all_fleets: dict[str, FleetSnapshot], fleet_name: str, kind: MtaBackend,
                                    config_dir: str) -> None:
    r = backend_for(kind).render(all_fleets[fleet_name], CONFIG_DIRS[config_dir])
    assert len(r.files) >= 2 and all(r.files.values())
    assert digest(dict(r.files), r.notes) == GOLDEN[(fleet_name, kind, config_dir)]
