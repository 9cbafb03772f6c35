"""Inventory load: the reference fleet, idempotence, and bad input that must change nothing.

Every case runs on SQLite and on PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from activities.db import session_scope
from cli.main import app
from models.tables import MailwizzServer, MtaHost, SendingDomain, SendingIp, StatusChange, Tenant
from tests.conftest import REFERENCE_INVENTORY

BASE = """\
[[mta_hosts]]
name = "mta-a"
address = "127.0.0.1"
backend = "postfix"

[[tenants]]
name = "t1"
mta_host = "mta-a"

[tenants.mailwizz]
base_url = "http://127.0.0.1:9/api"
source_ip = "127.0.0.50"

[[tenants.ips]]
address = "10.0.0.1"
hostname = "mail.one.example"
domain = "one.example"
status = "active"

[[tenants.ips]]
address = "10.0.0.2"
hostname = "mail.two.example"
domain = "two.example"
status = "warming"
phase = "week_2"

[[tenants]]
name = "t2"
mta_host = "mta-a"

[tenants.mailwizz]
base_url = "http://127.0.0.1:9/api"
source_ip = "127.0.0.51"

[[tenants.ips]]
address = "10.0.1.1"
hostname = "mail.three.example"
domain = "three.example"
status = "standby"
"""


def counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {
            m.__name__: s.exec(select(func.count()).select_from(m)).one()
            for m in (MtaHost, Tenant, MailwizzServer, SendingIp, SendingDomain, StatusChange)
        }


def load(cli: CliRunner, path: Path, *args: str):  # type: ignore[no-untyped-def]
    return cli.invoke(app, ["inventory", "load", str(path), *args])


def test_reference_fleet_loads_and_shows_40_7_3(db_url: str, cli: CliRunner) -> None:
    result = load(cli, REFERENCE_INVENTORY)
    assert result.exit_code == 0, result.output
    shown = cli.invoke(app, ["inventory", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert set(data["tenants"]) == {"client-1", "client-2"}
    for t in data["tenants"].values():
        assert t["total"] == 50
        assert (t["by_status"]["active"], t["by_status"]["warming"], t["by_status"]["standby"]) == (40, 7, 3)
    assert len(data["ips"]) == 100
    warming = [r for r in data["ips"] if r["status"] == "warming"]
    assert {r["phase"] for r in warming} == {"week_1", "week_2", "week_3", "week_4", "week_5"}
    assert all(r["daily_quota"] == 10_000 for r in data["ips"] if r["status"] == "active")
    assert all(r["daily_quota"] == 0 for r in data["ips"] if r["status"] == "standby")
    one = cli.invoke(app, ["inventory", "show", "--json", "--tenant", "client-2"])
    assert set(json.loads(one.stdout)["tenants"]) == {"client-2"}


def test_loading_twice_changes_nothing(db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "inv.toml"
    f.write_text(BASE)
    first = load(cli, f, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["added"] == {
        "mta_host": 1, "tenant": 2, "mailwizz_server": 2, "ip": 3, "domain": 3}
    before = counts(db_url)
    second = load(cli, f, "--json")
    report = json.loads(second.stdout)
    assert report["added"] == {} and report["updated"] == {}
    assert report["unchanged"]["ip"] == 3
    assert counts(db_url) == before
    assert before["StatusChange"] == 3  # one audit row per IP created


def test_dry_run_writes_nothing(db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "inv.toml"
    f.write_text(BASE)
    result = load(cli, f, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"]["ip"] == 3
    assert counts(db_url)["SendingIp"] == 0


def test_reload_keeps_engine_state_unless_asked(db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "inv.toml"
    f.write_text(BASE)
    assert load(cli, f).exit_code == 0
    f.write_text(BASE.replace('phase = "week_2"', 'phase = "week_4"'))
    kept = load(cli, f, "--json")
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout)["kept_engine_state"], "the difference is reported"
    with session_scope(db_url) as s:
        assert s.exec(select(SendingIp).where(SendingIp.address == "10.0.0.2")).one().warmup_phase == "week_2"
    assert load(cli, f, "--apply-state").exit_code == 0
    with session_scope(db_url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == "10.0.0.2")).one()
        assert (ip.warmup_phase, ip.daily_quota) == ("week_4", 500)
        audit = s.exec(select(StatusChange).where(StatusChange.ip_id == ip.id).order_by(StatusChange.id)).all()
        assert [(a.from_phase, a.to_phase) for a in audit] == [(None, "week_2"), ("week_2", "week_4")]


def _add_ip(text: str, block: str) -> str:
    """Insert an IP entry at the end of tenant t1 (before tenant t2)."""
    marker = '[[tenants]]\nname = "t2"'
    return text.replace(marker, block.strip() + "\n\n" + marker)


# Each case: an id, a transformation of BASE, and text the error must contain (naming entry/field).
BAD_INPUT = [
    ("invalid-address", lambda t: t.replace('"10.0.0.1"', '"10.0.0.300"'), "'10.0.0.300'"),
    ("not-an-address", lambda t: t.replace('"10.0.0.1"', '"mail.example"'), "is not an IP address"),
    ("multicast-address", lambda t: t.replace('"10.0.0.1"', '"224.0.0.1"'), "not a unicast"),
    ("duplicate-address", lambda t: t.replace('"10.0.1.1"', '"10.0.0.1"'), "already used"),
    ("domain-two-ips", lambda t: t.replace('domain = "three.example"', 'domain = "one.example"'),
     "one domain per IP"),
    ("hostname-space", lambda t: t.replace('"mail.one.example"', '"mail one.example"'), ".hostname"),
    ("hostname-newline", lambda t: t.replace('"mail.one.example"', '"mail.one.example\\nsmtp-source-host x"'),
     ".hostname"),
    ("hostname-single-label", lambda t: t.replace('"mail.one.example"', '"localhost"'), ".hostname"),
    ("domain-angle", lambda t: t.replace('domain = "one.example"', 'domain = "one.example>"'), ".domain"),
    ("domain-hash", lambda t: t.replace('domain = "one.example"', 'domain = "one#.example"'), ".domain"),
    ("domain-control-char", lambda t: t.replace('domain = "one.example"', 'domain = "one\\u0007.example"'),
     ".domain"),
    ("selector-quote", lambda t: t.replace('status = "active"', 'status = "active"\ndkim_selector = "s\\"1"'),
     ".dkim_selector"),
    ("selector-hash", lambda t: t.replace('status = "active"', 'status = "active"\ndkim_selector = "s#1"'),
     ".dkim_selector"),
    ("vmta-space", lambda t: t.replace('status = "active"', 'status = "active"\nvmta = "v 1"'), ".vmta"),
    ("vmta-angle", lambda t: t.replace('status = "active"', 'status = "active"\nvmta = "</virtual-mta>"'),
     ".vmta"),
    ("duplicate-vmta", lambda t: t.replace('status = "active"', 'status = "active"\nvmta = "vmta-t1-2"'),
     "VMTA name"),
    ("unknown-status", lambda t: t.replace('status = "standby"', 'status = "sleeping"'), ".status"),
    ("unknown-phase", lambda t: t.replace('"week_2"', '"week_9"'), ".phase"),
    ("warming-without-phase", lambda t: t.replace('phase = "week_2"\n', ""), "needs a phase"),
    ("phase-on-active", lambda t: t.replace('status = "active"', 'status = "active"\nphase = "week_1"'),
     "only for warming"),
    ("unknown-top-key", lambda t: "colour = 1\n" + t, "colour: unknown key"),
    ("unknown-ip-key", lambda t: t.replace('status = "active"', 'status = "active"\nwieght = 3'),
     "wieght: unknown key"),
    ("missing-hostname", lambda t: t.replace('hostname = "mail.one.example"\n', ""), ".hostname"),
    ("tenant-uppercase", lambda t: t.replace('name = "t1"', 'name = "T 1"'), ".name"),
    ("duplicate-tenant", lambda t: t.replace('name = "t2"', 'name = "t1"'), "tenant name"),
    ("unknown-mta-host", lambda t: t.replace('mta_host = "mta-a"', 'mta_host = "nowhere"', 1), "unknown MTA host"),
    ("feeder-invalid", lambda t: t.replace('"127.0.0.50"', '"127.0.0.500"'), "mailwizz.source_ip"),
    ("mailwizz-url-scheme", lambda t: t.replace('base_url = "http://127.0.0.1:9/api"', 'base_url = "ftp://x"', 1),
     "base_url"),
    ("negative-quota", lambda t: t.replace('status = "active"', 'status = "active"\ndaily_quota = -5'),
     ".daily_quota"),
    ("key-path-relative", lambda t: t.replace('status = "active"', 'status = "active"\ndkim_key_path = "k.pem"'),
     ".dkim_key_path"),
    ("key-path-traversal",
     lambda t: t.replace('status = "active"', 'status = "active"\ndkim_key_path = "/etc/../shadow"'),
     ".dkim_key_path"),
    ("min-delivered-share-zero",  # a phase would end with no mail behind it (issue 10)
     lambda t: t.replace('mta_host = "mta-a"', 'mta_host = "mta-a"\nmin_delivered_share = 0', 1),
     ".min_delivered_share"),
    ("min-delivered-share-over-one",
     lambda t: t.replace('mta_host = "mta-a"', 'mta_host = "mta-a"\nmin_delivered_share = 1.5', 1),
     ".min_delivered_share"),
    ("bounce-domain-injection", lambda t: t.replace('mta_host = "mta-a"', 'mta_host = "mta-a"\n'
                                                    'bounce_domain = "b.example\\n<bounce-processor>"', 1),
     ".bounce_domain"),
    ("fbl-domain-hash", lambda t: t.replace('mta_host = "mta-a"', 'mta_host = "mta-a"\nfbl_domain = "f#.example"', 1),
     ".fbl_domain"),
    ("bounce-domain-is-sending", lambda t: t.replace('mta_host = "mta-a"',
                                                     'mta_host = "mta-a"\nbounce_domain = "one.example"', 1),
     "is a sending domain"),
    ("report-domain-twice", lambda t: t.replace('mta_host = "mta-a"', 'mta_host = "mta-a"\nbounce_domain = '
                                                '"r.example"\nfbl_domain = "r.example"', 1), "bounce/FBL domain"),
    ("not-toml", lambda t: t + "\n[[tenants\n", "not valid TOML"),
    ("no-ips", lambda t: _add_ip(t, "").replace(
        '[[tenants.ips]]\naddress = "10.0.1.1"\nhostname = "mail.three.example"\n'
        'domain = "three.example"\nstatus = "standby"\n', ""), ".ips"),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_and_writes_nothing(db_url: str, cli: CliRunner, tmp_path: Path,
                                                 case: str, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.toml"
    good.write_text(BASE)
    assert load(cli, good).exit_code == 0
    before = counts(db_url)
    bad = tmp_path / "bad.toml"
    text = mutate(BASE)
    assert text != BASE, "the mutation must change the file"
    bad.write_text(text)
    result = load(cli, bad)
    assert result.exit_code != 0, result.output
    assert expected in result.output, result.output
    assert "nothing was written" in result.output
    assert counts(db_url) == before


OTHER_TENANT_CASES = [
    ("address-of-other-tenant", '[[tenants.ips]]\naddress = "10.0.1.1"\nhostname = "mail.x.example"\n'
     'domain = "x.example"\nstatus = "standby"', "already belongs to tenant 't2'"),
    ("domain-of-other-tenant", '[[tenants.ips]]\naddress = "10.0.0.9"\nhostname = "mail.x.example"\n'
     'domain = "three.example"\nstatus = "standby"', "already belongs to tenant 't2'"),
]


@pytest.mark.parametrize(("case", "entry", "expected"), OTHER_TENANT_CASES, ids=[c[0] for c in OTHER_TENANT_CASES])
def test_entries_owned_by_another_tenant_in_database(db_url: str, cli: CliRunner, tmp_path: Path,
                                                     case: str, entry: str, expected: str) -> None:
    """A second file that only lists t1 tries to take t2's address or domain."""
    good = tmp_path / "good.toml"
    good.write_text(BASE)
    assert load(cli, good).exit_code == 0
    before = counts(db_url)
    t1_only = BASE.split('[[tenants]]\nname = "t2"')[0]
    bad = tmp_path / "bad.toml"
    bad.write_text(t1_only + "\n" + entry + "\n")
    result = load(cli, bad)
    assert result.exit_code != 0
    assert expected in result.output, result.output
    assert counts(db_url) == before


def test_ipv6_addresses_are_accepted(db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "v6.toml"
    f.write_text(BASE.replace('"10.0.1.1"', '"2001:DB8::1"'))
    result = load(cli, f)
    assert result.exit_code == 0, result.output
    with session_scope(db_url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == "2001:db8::1")).one()
        assert ip.version == 6


def test_missing_file_is_a_clear_error(db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    result = load(cli, tmp_path / "nope.toml")
    assert result.exit_code != 0
    assert "cannot read" in result.output
