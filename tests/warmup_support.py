"""Shared helpers of the warmup and accounting tests: a small inventory on 127.0.12.0/24 (this feature's
loopback range), stats rows, and IP lookups."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlmodel import select

from activities.db import session_scope
from activities.inventory import apply_inventory
from models.inventory import parse
from models.tables import DailyStat, SendingIp, StatusChange

HOST_ADDR = "127.0.12.1"


def inventory_text(ips: Sequence[tuple[str, str, str | None, str | None]], tenant: str = "acme",
                   host_enabled: bool = False, extra_tenant: str = "", host: str = "pmta-t") -> str:
    """ips: (address, status, phase, phase_started_on ISO or None)."""
    lines = [
        "[[mta_hosts]]", f'name = "{host}"', f'address = "{HOST_ADDR}"', 'backend = "powermta"',
        'config_dir = "/etc/pmta"', f"enabled = {'true' if host_enabled else 'false'}", "",
        "[[tenants]]", f'name = "{tenant}"', f'mta_host = "{host}"', 'dkim_key_dir = "/etc/pmta/dkim"', extra_tenant,
        "[tenants.mailwizz]", 'base_url = "http://127.0.12.2/api"', 'source_ip = "127.0.12.2"', "",
    ]
    for address, status, phase, started in ips:
        n = address.rsplit(".", 1)[1]
        lines += ["[[tenants.ips]]", f'address = "{address}"', f'hostname = "mail.warm{n}.example"',
                  f'domain = "warm{n}.example"', f'vmta = "vmta-{tenant}-{n}"', f'status = "{status}"']
        if phase:
            lines.append(f'phase = "{phase}"')
        if started:
            lines.append(f"phase_started_on = {started}")
        lines.append("")
    return "\n".join(lines)


def load(url: str, ips: Sequence[tuple[str, str, str | None, str | None]], **kw: object) -> None:
    apply_inventory(parse(inventory_text(ips, **kw)), actor="test", url=url)  # type: ignore[arg-type]


def ip_row(url: str, address: str) -> SendingIp:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        s.expunge(ip)
        return ip


def audit(url: str, address: str) -> list[StatusChange]:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        rows = list(s.exec(select(StatusChange).where(StatusChange.ip_id == ip.id).order_by(StatusChange.id)))  # type: ignore[arg-type]
        for r in rows:
            s.expunge(r)
        return rows


def add_stats(url: str, address: str, day: dt.date, sent: int, bounced: int = 0, complaints: int = 0,
              opens: int | None = None) -> None:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        assert ip.id is not None
        s.add(DailyStat(ip_id=ip.id, day=day, sent=sent, delivered=sent - bounced, bounced=bounced,
                        complaints=complaints, opens=opens or 0, opens_measured=opens is not None))


async def register_search_attributes(client: object) -> None:
    """The time-skipping server starts without the engine's search attributes: add them (idempotent)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.client import Client
    from temporalio.service import RPCError

    from models.search_attributes import ALL

    assert isinstance(client, Client)
    for key in ALL:  # one by one: an attribute another test already added is refused on its own
        try:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}))
        except RPCError as err:
            if "already" not in str(err).lower():
                raise


#: what an IP following the reference schedule sends a day, by day of its warmup (week_1 .. week_6)
REFERENCE_DAILY = (50, 100, 250, 500, 1000, 2000)


def feed_reference(url: str, address: str, first: dt.date, days: int, skip: Sequence[dt.date] = ()) -> None:
    """Daily stats of a healthy IP at its phase's quota from `first` for `days` days (evidence for the
    gate: every window then holds a full quota of delivered mail, no bounce, no complaint)."""
    for i in range(days):
        day = first + dt.timedelta(days=i)
        if day not in skip:
            add_stats(url, address, day, sent=REFERENCE_DAILY[min(i // 7, len(REFERENCE_DAILY) - 1)])
