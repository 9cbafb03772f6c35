"""Scale fixture (issue 14): scripts/make_fleet.py writes a valid fleet of N tenants x M IPs that
`email-engine inventory load` takes whole, and loading it again changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from activities.db import session_scope
from cli.main import app
from models.inventory import InventoryError, parse
from models.tables import MailwizzServer, MtaHost, SendingDomain, SendingIp, StatusChange, Tenant
from scripts.make_fleet import fleet_toml


def _counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {m.__name__: int(s.exec(select(func.count()).select_from(m)).one())
                for m in (MtaHost, Tenant, MailwizzServer, SendingIp, SendingDomain, StatusChange)}


def test_small_fleet_is_valid_and_shaped_like_the_reference() -> None:
    inv = parse(fleet_toml(3, 50))
    assert [len(t.ips) for t in inv.tenants] == [50, 50, 50]
    for t in inv.tenants:
        by = [ip.status.value for ip in t.ips]
        assert (by.count("active"), by.count("warming"), by.count("standby")) == (40, 7, 3)
    assert len({ip.domain for t in inv.tenants for ip in t.ips}) == 150
    assert fleet_toml(3, 50) == fleet_toml(3, 50)  # deterministic


def test_fleet_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        fleet_toml(2, 70_000)
    with pytest.raises(ValueError, match="at least one"):
        fleet_toml(0, 10)


def test_an_edited_fleet_is_still_validated() -> None:
    # the generator's output goes through the same validator as any file: a duplicate is named
    text = fleet_toml(1, 3).replace('domain = "s2.fleet-1.example"', 'domain = "s1.fleet-1.example"')
    with pytest.raises(InventoryError, match=r"s1\.fleet-1\.example"):
        parse(text)


def test_ten_thousand_ips_load_in_one_command(sqlite_url: str, cli: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "fleet.toml"
    f.write_text(fleet_toml(2, 5000))
    t0 = time.perf_counter()
    res = cli.invoke(app, ["inventory", "load", str(f), "--json"])
    took = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["added"]["ip"] == 10_000 and report["added"]["domain"] == 10_000
    assert _counts(sqlite_url) == {"MtaHost": 2, "Tenant": 2, "MailwizzServer": 2, "SendingIp": 10_000,
                                   "SendingDomain": 10_000, "StatusChange": 10_000}
    with session_scope(sqlite_url) as s:
        by_status = dict(s.exec(select(SendingIp.status, func.count()).group_by(SendingIp.status)).all())
        # each domain belongs to its own IP (the domain's composite key names the IP and its tenant)
        pairs = s.exec(select(func.count()).select_from(SendingDomain).join(
            SendingIp, SendingIp.id == SendingDomain.ip_id).where(SendingIp.tenant_id == SendingDomain.tenant_id)
        ).one()
    assert {k.value: v for k, v in by_status.items()} == {"active": 8000, "warming": 1400, "standby": 600}
    assert pairs == 10_000
    print(f"\ninventory load of 2 x 5,000 IPs (SQLite): {took:.1f} s")  # a figure for the report, not a limit
    again = cli.invoke(app, ["inventory", "load", str(f), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"]["ip"] == 10_000
    assert _counts(sqlite_url)["StatusChange"] == 10_000
