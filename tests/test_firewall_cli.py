"""`inventory load` with a [firewall] section and `email-engine firewall render`, on a real database
(SQLite and PostgreSQL for the loader; `nft -c` through activities.firewall.nft_check, which always runs
inside a throwaway network namespace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner, Result

from activities.db import session_scope
from cli.main import app
from models import firewall as fw
from models.firewall_tables import FirewallPolicyRow
from models.inventory import parse
from models.tables import MtaHost, SendingIp, Tenant
from tests.firewall_support import FIREWALL_SECTION, fleet_of, reference_text
from tests.support import require_tool


def rows(url: str) -> list[str]:
    with session_scope(url) as s:
        return [r.document for r in s.exec(select(FirewallPolicyRow))]


def fleet_rows(url: str) -> tuple[int, int, int]:
    with session_scope(url) as s:
        return (len(list(s.exec(select(MtaHost)))), len(list(s.exec(select(Tenant)))),
                len(list(s.exec(select(SendingIp)))))


def load(cli: CliRunner, path: Path, text: str) -> Result:
    path.write_text(text)
    return cli.invoke(app, ["inventory", "load", str(path), "--json"])


def test_the_section_is_stored_reloaded_unchanged_and_removed(db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "inv.toml"
    r = load(cli, f, reference_text())
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["added"]["firewall"] == 1
    stored = rows(db_url)
    assert len(stored) == 1 and json.loads(stored[0])["engine_addresses"] == ["89.167.1.10"]
    r = load(cli, f, reference_text())
    assert json.loads(r.output)["unchanged"]["firewall"] == 1
    r = load(cli, f, reference_text(FIREWALL_SECTION.replace("deploy = false", "deploy = true")))
    assert json.loads(r.output)["updated"]["firewall"] == 1
    assert json.loads(rows(db_url)[0])["deploy"] is True
    r = load(cli, f, reference_text(""))
    out = json.loads(r.output)
    assert "- firewall: the file has no [firewall] section" in out["details"] and rows(db_url) == []


@pytest.mark.parametrize("bad, message", [
    ('"fe80::1%eth0"', "zone ids ('%...') are not allowed"),
    ('"203.0.113.7\\ntcp dport 25 accept"', "is not an IP address"),
    ('"not-an-address"', "is not an IP address"),
])
def test_bad_admin_address_refused_with_nothing_written(db_url: str, cli: CliRunner, tmp_path: Path,
                                                        bad: str, message: str) -> None:
    section = FIREWALL_SECTION.replace('"2001:db8:ad::/48"', bad)
    r = load(cli, tmp_path / "bad.toml", reference_text(section))
    assert r.exit_code != 0
    assert "firewall.admin_addresses[1]" in r.output and message in r.output, r.output
    assert "nothing was written" in r.output
    assert rows(db_url) == [] and fleet_rows(db_url) == (0, 0, 0)


def test_render_from_the_database_equals_the_pure_render(sqlite_url: str, cli: CliRunner, tmp_path: Path) -> None:
    assert load(cli, tmp_path / "inv.toml", reference_text()).exit_code == 0
    expected = fw.render_all(fleet_of(parse(reference_text())))
    r = cli.invoke(app, ["firewall", "render"])
    assert r.exit_code == 0, r.output
    assert r.output == expected[fw.ENGINE] + "\n" + expected["pmta-1"]

    out = tmp_path / "rules"
    r = cli.invoke(app, ["firewall", "render", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    listing = {row["host"]: row for row in json.loads(r.output)}
    assert sorted(p.name for p in out.iterdir()) == ["engine.nft", "pmta-1.nft"]
    assert (out / "pmta-1.nft").read_text() == expected["pmta-1"]
    assert listing["pmta-1"]["deployed_with_mta"] is False and listing[fw.ENGINE]["deployed_with_mta"] is False
    r = cli.invoke(app, ["firewall", "render", "--host", "engine", "--json"])
    assert [row["text"] for row in json.loads(r.output)] == [expected[fw.ENGINE]]


def test_render_check_runs_nft_in_a_throwaway_namespace(sqlite_url: str, cli: CliRunner, tmp_path: Path) -> None:
    require_tool("nft", "/usr/sbin/nft")
    require_tool("unshare")
    assert load(cli, tmp_path / "inv.toml", reference_text()).exit_code == 0
    r = cli.invoke(app, ["firewall", "render", "--check", "--json"])
    assert r.exit_code == 0, r.output
    assert [row["nft_check"] for row in json.loads(r.output)] == ["ok", "ok"]


def test_render_errors_write_nothing(sqlite_url: str, cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "rules"
    assert load(cli, tmp_path / "inv.toml", reference_text("")).exit_code == 0
    r = cli.invoke(app, ["firewall", "render", "--out", str(out)])
    assert r.exit_code == 2 and "no [firewall] section" in r.output, r.output
    assert load(cli, tmp_path / "inv.toml", reference_text()).exit_code == 0
    for args, message in ((["--host", "pmta-9"], "unknown host 'pmta-9'"),
                          (["--host", "a b"], "not a valid host name")):
        r = cli.invoke(app, ["firewall", "render", "--out", str(out), *args])
        assert r.exit_code == 2 and message in r.output, r.output
    # a row written around the loader (a zone id, a newline) is validated again: refused, nothing written
    with session_scope(sqlite_url) as s:
        row = s.exec(select(FirewallPolicyRow)).one()
        doc = json.loads(row.document)
        doc["admin_addresses"] = ["203.0.113.1\n}\nchain x {", "fe80::1%eth0"]
        row.document = json.dumps(doc)
    r = cli.invoke(app, ["firewall", "render", "--out", str(out)])
    assert r.exit_code == 2 and "stored firewall policy is invalid" in r.output, r.output
    assert "admin_addresses.0" in r.output and "zone ids" in r.output
    assert not out.exists()


def test_the_readme_inventory_example_loads_and_renders() -> None:
    """The inventory example under "The inventory file" (with its [firewall] section) is a valid inventory."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## The inventory file", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    inv = parse(example)
    assert inv.firewall is not None and inv.firewall.allow[0].name == "telegram"
    texts = fw.render_all(fleet_of(inv))
    assert "ip daddr @webhooks_v4 tcp dport 443 accept" in texts[fw.ENGINE]
