"""The fleet snapshot: stable, complete, and filtered by host and tenant."""

from __future__ import annotations

from activities.inventory import apply_inventory
from activities.snapshot import load_snapshot
from models.enums import IpStatus
from models.inventory import parse
from tests.conftest import REFERENCE_INVENTORY


def test_snapshot_of_reference_fleet(db_url: str) -> None:
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=db_url)
    snap = load_snapshot(db_url)
    assert snap == load_snapshot(db_url)
    assert [t.name for t in snap.tenants] == ["client-1", "client-2"]
    c2 = snap.tenant("client-2")
    assert (c2.pool, c2.feeder_ip, c2.mta_host) == ("client2-pool", "89.167.3.10", "pmta-1")
    assert len(c2.ips) == 50 and len(c2.sending_ips) == 47
    assert all(ip.status != IpStatus.STANDBY for ip in c2.sending_ips)
    assert c2.ips[40].domain == "client2-mail-41.com" and c2.ips[40].phase == "week_1"
    assert snap.for_host("pmta-1").tenants == snap.tenants
    assert snap.for_tenant("client-1").tenants[0].name == "client-1"
