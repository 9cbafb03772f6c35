"""Property: however entries are shuffled between tenants, each IP, domain and pool belongs to exactly
one tenant, and a domain's IP always belongs to the domain's tenant (loader + schema together)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from activities.db import session_scope
from activities.inventory import apply_inventory
from models.inventory import InventoryError, parse
from models.tables import SendingDomain, SendingIp, Tenant

TENANTS = ["ta", "tb", "tc"]


def address(ipn: int, v6: bool, spelling: int = 0) -> str:
    """IP number `ipn` as IPv4, or as IPv6 in one of several spellings of the same address."""
    if not v6:
        return f"10.9.0.{ipn}"
    return [f"2001:db8::{ipn:x}", f"2001:DB8::{ipn:X}", f"2001:db8:0:0:0:0:0:{ipn:x}"][spelling % 3]


def render(assign: list[tuple[int, int, int]], v6: bool = False, spelling: int = 0) -> str:
    """assign[i] = (tenant index, ip number, domain number) for entry i."""
    out = ['[[mta_hosts]]\nname = "m"\naddress = "127.0.0.1"\n']
    for ti, tname in enumerate(TENANTS):
        entries = [a for a in assign if a[0] == ti]
        if not entries:
            continue
        out.append(f'[[tenants]]\nname = "{tname}"\nmta_host = "m"\n[tenants.mailwizz]\n'
                   f'base_url = "http://127.0.0.1:9/api"\n'
                   f'source_ip = "{f"fd00::1:{ti + 1}" if v6 else f"127.0.1.{ti + 1}"}"\n')
        for _, ipn, dn in entries:
            out.append(f'[[tenants.ips]]\naddress = "{address(ipn, v6, spelling)}"\nhostname = "mail.d{dn}.example"\n'
                       f'domain = "d{dn}.example"\nvmta = "v{ipn}"\nstatus = "standby"\n')
    return "\n".join(out)


entries = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=entries, second=entries, v6=st.booleans(), spellings=st.tuples(st.integers(0, 2), st.integers(0, 2)))
def test_tenant_isolation_holds_over_two_loads(sqlite_url: str, first: list, second: list,  # type: ignore[type-arg]
                                               v6: bool, spellings: tuple[int, int]) -> None:
    """IPv6 too, each load spelling the same addresses differently: one row per address, canonical."""
    for assign, spelling in zip((first, second), spellings, strict=True):
        try:
            apply_inventory(parse(render(assign, v6, spelling)), actor="test", url=sqlite_url)
        except InventoryError:
            pass  # refused as a whole: nothing written, checked by the invariant below
    with session_scope(sqlite_url) as s:
        tenants = {t.id: t.name for t in s.exec(select(Tenant))}
        ips = {ip.id: ip for ip in s.exec(select(SendingIp))}
        domains = list(s.exec(select(SendingDomain)))
    assert len({ip.address for ip in ips.values()}) == len(ips)
    assert all(ip.address == ipaddress.ip_address(ip.address).compressed for ip in ips.values())
    assert len({d.ip_id for d in domains}) == len(domains)
    for d in domains:
        assert ips[d.ip_id].tenant_id == d.tenant_id, f"{d.name} crosses tenants"
    assert set(tenants.values()) <= set(TENANTS)
    # Clean up for the next example (the fixture's database is shared across examples).
    with session_scope(sqlite_url) as s:
        for table in reversed(SQLModel.metadata.sorted_tables):
            s.execute(table.delete())


def test_schema_refuses_a_domain_pointing_at_another_tenants_ip(db_url: str) -> None:
    """Even bypassing the loader, the composite foreign key keeps a domain inside its tenant."""
    apply_inventory(parse(render([(0, 1, 1), (1, 2, 2)])), actor="test", url=db_url)
    with pytest.raises(IntegrityError), session_scope(db_url) as s:
        ta = s.exec(select(Tenant).where(Tenant.name == "ta")).one()
        ip_b = s.exec(select(SendingIp).where(SendingIp.address == "10.9.0.2")).one()
        s.add(SendingDomain(name="evil.example", tenant_id=ta.id, ip_id=ip_b.id,  # type: ignore[arg-type]
                            dkim_key_path="/k/evil"))
        s.flush()
