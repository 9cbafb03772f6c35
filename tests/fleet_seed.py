"""A reference fleet with evidence for every fleet gauge (tests of the gauges and of the Grafana dashboards).

The reference inventory, then a real accounting file ingested through the engine's own ingest
(deliveries, synchronous bounces and complaints on known days), open blocklist listings, a finished
blocklist scan and one deploy record: the rows the features themselves persist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from activities.accounting import ingest_local
from activities.db import session_scope
from activities.inventory import apply_inventory
from models.deploy_history import MtaDeployRecord
from models.failover_tables import BlocklistScanRun
from models.inventory import parse
from models.tables import BlocklistEvent, SendingIp, utcnow
from tests.accounting_records import csv_text, delivery, stamp
from tests.conftest import REFERENCE_INVENTORY

#: client-1, active: 100 delivered + 10 bounced + 1 complaint yesterday -> sent 110
BUSY = "45.123.10.1"
#: client-1, active: 300 delivered + 30 bounced + 3 complaints spread over the window, plus today's
#: and 8 days ago's mail, which the 7-day window must leave out
SPREAD = "45.123.10.2"
#: client-1, active: nothing sent -> no rate series
IDLE = "45.123.10.3"
LISTED = ("45.123.10.4", "45.123.10.5")


@dataclass(frozen=True)
class Day:
    ip: str
    day: dt.date
    delivered: int
    bounced: int
    complaints: int


def accounting_rows(days: list[Day], vmtas: dict[str, str]) -> list[dict[str, str]]:
    rows = []
    for n, d in enumerate(days):
        at = dt.datetime.combine(d.day, dt.time(12), tzinfo=dt.UTC)
        for i in range(d.delivered):
            rows.append(delivery(at, d.ip, f"u{n}-{i}@example.net", env=f"e{n}-{i}"))
        for i in range(d.bounced):
            rows.append({"type": "b", "timeLogged": stamp(at), "vmta": vmtas[d.ip], "rcpt": f"b{n}-{i}@example.net",
                         "bounceCat": "bad-mailbox"})
        for i in range(d.complaints):
            rows.append({"type": "f", "timeLogged": stamp(at), "rcpt": f"u{n}-{i}@example.net",
                         "arf_Source-IP": d.ip})
    return rows


async def seed_fleet(url: str, tmp: Path, today: dt.date | None = None) -> list[Day]:
    """Load and fill the fleet (see the module docstring); the days of mail written, per IP."""
    today = today or utcnow().date()
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=url)
    with session_scope(url) as s:
        ips = {ip.address: ip for ip in s.exec(select(SendingIp))}
        vmtas = {a: ip.vmta_name for a, ip in ips.items()}
        for n, address in enumerate(LISTED):
            s.add(BlocklistEvent(ip_id=ips[address].id, zone="zen.spamhaus.org", code="127.0.0.2"))
            if n == 0:
                s.add(BlocklistEvent(ip_id=ips[address].id, zone="b.barracudacentral.org", code="127.0.0.2"))
        s.add(BlocklistEvent(ip_id=ips["45.123.10.6"].id, zone="zen.spamhaus.org", cleared_at=utcnow()))
        s.add(BlocklistScanRun(workflow_id="scan-1", started_at=utcnow() - dt.timedelta(hours=2),
                               finished_at=utcnow() - dt.timedelta(hours=1), ips_scanned=100, listed=2,
                               broken_zones=["dnsbl.example"]))
        s.add(MtaDeployRecord(host="pmta-1", generation=1, digest="0" * 64, ok=False, changed=False,
                              rolled_back=True, message="validation failed", at=utcnow() - dt.timedelta(days=1)))
    yesterday = today - dt.timedelta(days=1)
    days = [Day(BUSY, yesterday, 100, 10, 1)]
    days += [Day(SPREAD, today - dt.timedelta(days=k), 100, 10, 1) for k in (2, 4, 7)]
    days += [Day(SPREAD, today, 1000, 1000, 0), Day(SPREAD, today - dt.timedelta(days=8), 1000, 1000, 0)]
    path = tmp / "email-engine-acct-test.csv"
    path.write_text(csv_text(accounting_rows(days, vmtas)))
    report = await ingest_local(path, url)
    assert report.unattributed == 0, report
    return days
