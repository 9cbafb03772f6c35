"""Persisted DNS checks, `email-engine dns check`, and the DNS gate on a warmup start (real NSD, real DB)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from activities.db import session_scope
from activities.dns_gate import check_dns_gate, dns_gate_failures, record_dns_override
from activities.inventory import apply_inventory
from cli.main import app
from models.dns_tables import DnsCheck, DnsOverride
from models.inventory import parse
from models.settings import get_settings
from models.tables import SendingDomain, SendingIp, StatusChange
from tests.conftest import REFERENCE_INVENTORY
from tests.dns_fleet import CASES, DnsFleet
from tests.servers.nsd import dead_port


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsFleet]:
    f = DnsFleet(tmp_path_factory.mktemp("dnsgate"))
    f.start()
    yield f
    f.stop()


def _load(url: str, fleet: DnsFleet, monkeypatch: pytest.MonkeyPatch) -> str:
    assert fleet.server is not None
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", fleet.server.resolvers_setting)
    monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "1")
    get_settings.cache_clear()
    apply_inventory(parse(fleet.inventory()), actor="test", url=url)
    return url


@pytest.fixture
def loaded(db_url: str, fleet: DnsFleet, monkeypatch: pytest.MonkeyPatch) -> str:
    """The case fleet loaded on SQLite and on PostgreSQL (persistence and the gate)."""
    return _load(db_url, fleet, monkeypatch)


@pytest.fixture
def loaded_sqlite(sqlite_url: str, fleet: DnsFleet, monkeypatch: pytest.MonkeyPatch) -> str:
    """The case fleet on SQLite only (CLI behaviour that does not depend on the backend)."""
    return _load(sqlite_url, fleet, monkeypatch)


def _ip(name: str) -> str:
    return CASES[name].ip


def test_check_persists_flags_history_and_opens_the_gate(loaded: str, cli: CliRunner) -> None:
    assert dns_gate_failures(_ip("all-valid")) == ["no DNS check recorded yet"]
    res = cli.invoke(app, ["dns", "check", "--json"])
    assert res.exit_code == 1, res.output  # some cases fail on purpose: exit status 1
    rows = {r["domain"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {c.domain for c in CASES.values()}
    for case in CASES.values():
        got = {n: rows[case.domain]["items"][n]["status"] for n in ("spf", "dkim", "dmarc", "ptr")}
        assert got == {n: case.expect.get(n, "valid") for n in got}, case.name
    with session_scope(loaded) as s:
        d = s.exec(select(SendingDomain).where(SendingDomain.name == CASES["dkim-revoked"].domain)).one()
        assert (d.spf_valid, d.dkim_valid, d.dmarc_valid, d.ptr_valid) == (True, False, True, True)
        assert d.last_check_at is not None
        assert len(s.exec(select(DnsCheck)).all()) == len(CASES)
    # the gate: passes for a clean domain (warn passes too), lists the failing items otherwise
    assert dns_gate_failures(_ip("all-valid")) == []
    assert dns_gate_failures(_ip("rsa-1024")) == []
    failing = dns_gate_failures(_ip("dkim-revoked"))
    assert len(failing) == 1 and failing[0].startswith("DKIM invalid:") and "revoked" in failing[0]
    assert check_dns_gate(_ip("ptr-not-confirmed"))[0].startswith("PTR invalid:")
    # a second check adds history, the gate reads the latest
    res = cli.invoke(app, ["dns", "check", "--domain", CASES["all-valid"].domain, "--json"])
    assert res.exit_code == 0, res.output
    with session_scope(loaded) as s:
        assert len(s.exec(select(DnsCheck)).all()) == len(CASES) + 1


def test_latest_unknown_check_closes_the_gate(loaded_sqlite: str, cli: CliRunner,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.invoke(app, ["dns", "check", "--domain", CASES["all-valid"].domain]).exit_code == 0
    assert dns_gate_failures(_ip("all-valid")) == []
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", f"127.0.0.1:{dead_port()}")
    monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.1")
    get_settings.cache_clear()
    res = cli.invoke(app, ["dns", "check", "--domain", CASES["all-valid"].domain])
    assert res.exit_code == 3, res.output  # incomplete: nothing failed, nothing could be checked
    assert "❔" in res.stdout and "unknown" in res.stdout
    failing = dns_gate_failures(_ip("all-valid"))
    assert [f.split(":")[0] for f in failing] == ["SPF unknown", "DKIM unknown", "DMARC unknown", "PTR unknown"]
    with session_scope(loaded_sqlite) as s:  # unknown is neither valid nor invalid on the domain's flags
        d = s.exec(select(SendingDomain).where(SendingDomain.name == CASES["all-valid"].domain)).one()
        assert (d.spf_valid, d.dkim_valid, d.dmarc_valid, d.ptr_valid) == (None, None, None, None)


def test_table_output_and_filters(loaded_sqlite: str, cli: CliRunner) -> None:
    res = cli.invoke(app, ["dns", "check", "--tenant", "dns-t"])
    assert res.exit_code == 1, res.output
    assert "✅" in res.stdout and "❌" in res.stdout and "⚠️" in res.stdout
    assert f"{len(CASES)} domains:" in res.stdout
    for args, message in ((["--tenant", "nobody"], "no tenant named 'nobody'"),
                          (["--domain", "absent.ee-test"], "no sending domain named 'absent.ee-test'"),
                          (["--domain", "bad domain"], "not a valid domain"),
                          (["--tenant", "dns-t", "--domain", "x.ee-test"], "not both")):
        res = cli.invoke(app, ["dns", "check", *args])
        assert res.exit_code == 2 and message in res.output, res.output
    help_text = " ".join(cli.invoke(app, ["dns", "check", "--help"]).output.split())
    assert "Exit status" in help_text and "1 at least one domain fails" in help_text


def test_gate_refuses_a_warmup_start_and_the_override_is_audited(loaded: str, cli: CliRunner) -> None:
    from activities.warmup_inventory import prepare_start
    from models.errors import WarmupError

    assert cli.invoke(app, ["dns", "check"]).exit_code == 1  # the fleet has failing cases
    address = _ip("spf-missing-ip")
    with pytest.raises(WarmupError, match=r"fails the DNS gate: SPF invalid: does not authorize 127\.0\.20\.11"):
        prepare_start(address, "test start", "tester", url=loaded)
    with session_scope(loaded) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        assert ip.status.value == "standby"  # refused: nothing changed
        assert s.exec(select(DnsOverride)).all() == []
    plan = prepare_start(address, "test start", "tester", override_dns="SPF fix is propagating", url=loaded)
    assert plan.dns_override and plan.moved_from == "standby"
    with session_scope(loaded) as s:
        ov = s.exec(select(DnsOverride)).one()
        ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
        assert (ov.ip_id, ov.reason, ov.actor) == (ip.id, "SPF fix is propagating", "tester")
        assert ov.failures.startswith("SPF invalid: does not authorize") and ov.dns_check_id is not None
        assert ip.status.value == "warming"
        change = s.exec(select(StatusChange).where(StatusChange.ip_id == ip.id)).all()[-1]
        assert change.to_status == "warming" and "SPF fix is propagating" in change.reason
    # a passing domain starts without an override
    assert not prepare_start(_ip("all-valid"), "test start", "tester", url=loaded).dns_override


def test_override_needs_reason_and_known_ip(loaded_sqlite: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        record_dns_override(_ip("all-valid"), "  ", "tester")
    with pytest.raises(ValueError, match="not in the inventory"):
        record_dns_override("127.0.20.250", "why", "tester")
    assert dns_gate_failures("127.0.20.250") == ["IP 127.0.20.250 is not in the inventory"]
    record_dns_override(_ip("all-valid"), "operator knows", "tester")
    with session_scope(loaded_sqlite) as s:
        assert s.exec(select(DnsOverride)).one().failures == "no DNS check recorded yet"


def test_reference_fleet_without_a_reachable_resolver_is_unknown(sqlite_url: str, cli: CliRunner,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_ENGINE_DNS_RESOLVERS", f"127.0.0.1:{dead_port()}")
    monkeypatch.setenv("EMAIL_ENGINE_DNS_TIMEOUT", "0.1")
    monkeypatch.setenv("EMAIL_ENGINE_DNS_CHECK_CONCURRENCY", "50")
    get_settings.cache_clear()
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=sqlite_url)
    res = cli.invoke(app, ["dns", "check", "--json"])
    assert res.exit_code == 3, res.output  # incomplete
    rows = json.loads(res.stdout)
    assert len(rows) == 100
    for r in rows:
        assert r["overall"] == "unknown" and r["state"] == "unknown", r
        assert {i["status"] for i in r["items"].values()} == {"unknown"}, r
    with session_scope(sqlite_url) as s:
        flags = {(d.spf_valid, d.dkim_valid, d.dmarc_valid, d.ptr_valid) for d in s.exec(select(SendingDomain))}
    assert flags == {(None, None, None, None)}
    assert all(f.split(":")[0].endswith("unknown") for f in dns_gate_failures("45.123.10.48"))
