"""DNS authentication checks against a real authoritative server (NSD on loopback), plus pure rules."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from activities.dns_checks import Checker, DnsTarget
from models import dns_auth
from tests.dns_fleet import CASES, DnsFleet
from tests.servers.nsd import dead_port
from tests.support import require_tool


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsFleet]:
    f = DnsFleet(tmp_path_factory.mktemp("dnsfleet"))
    f.start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def checker(fleet: DnsFleet) -> Checker:
    assert fleet.server is not None
    return Checker([("127.0.0.1", fleet.server.port)], 1.0)


@pytest.mark.parametrize("name", list(CASES))
def test_case_against_nsd(name: str, fleet: DnsFleet, checker: Checker) -> None:
    result = checker.check(fleet.target(name))
    got = {item: r.status for item, r in result.items.items()}
    want = {item: CASES[name].expect.get(item, "valid") for item in dns_auth.ITEMS}
    assert got == want, {item: r.reason for item, r in result.items.items()}
    for r in result.items.values():
        assert r.reason  # every item says why


def test_failure_reasons_name_the_problem(fleet: DnsFleet, checker: Checker) -> None:
    reasons = {name: checker.check(fleet.target(name)).items for name in
               ("spf-missing-ip", "spf-too-many-lookups", "spf-two-records", "dkim-revoked", "dkim-other-key",
                "ptr-not-confirmed", "dkim-absent", "all-valid", "dmarc-org")}
    assert "does not authorize 127.0.20.11" in reasons["spf-missing-ip"]["spf"].reason
    assert "11/10" in reasons["spf-too-many-lookups"]["spf"].reason
    assert "more than one SPF record" in reasons["spf-two-records"]["spf"].reason
    assert "revoked" in reasons["dkim-revoked"]["dkim"].reason
    assert "does not match" in reasons["dkim-other-key"]["dkim"].reason
    assert "not forward-confirmed" in reasons["ptr-not-confirmed"]["ptr"].reason
    assert "no DKIM key record" in reasons["dkim-absent"]["dkim"].reason
    assert "at organizational domain dmarc-org.ee-test" in reasons["dmarc-org"]["dmarc"].reason
    # the IP is authorized two includes deep: the evaluation trail shows the path
    assert "include:_spf.all-valid.ee-test" in reasons["all-valid"]["spf"].reason
    assert any("include:_spf2" in d for d in reasons["all-valid"]["spf"].details)


def test_no_resolver_answering_is_unknown(fleet: DnsFleet) -> None:
    checker = Checker([("127.0.0.1", dead_port())], 0.1)
    for name in ("all-valid", "ptr-absent"):
        result = checker.check(fleet.target(name))
        assert {r.status for r in result.items.values()} == {"unknown"}, result.items
        assert result.overall == "unknown"
        assert all("resolver error" in r.reason for r in result.items.values())


def test_refused_answers_are_unknown(checker: Checker) -> None:
    # NSD is not authoritative for this zone: REFUSED, which dnspython reports as NoNameservers (like SERVFAIL)
    t = DnsTarget(0, "not-served.example", "t", "127.0.20.77", "mail.not-served.example", "default", "/nonexistent")
    result = checker.check(t)
    assert result.items["spf"].status == "unknown"
    assert result.items["dkim"].status == "unknown"
    assert result.items["dmarc"].status == "unknown"
    assert result.items["ptr"].status == "invalid"  # the reverse zone is served: no PTR for .77 is a real answer


def test_second_resolver_answers_when_the_first_is_dead(fleet: DnsFleet) -> None:
    assert fleet.server is not None
    checker = Checker([("127.0.0.1", dead_port()), ("127.0.0.1", fleet.server.port)], 0.5)
    result = checker.check(fleet.target("all-valid"))
    assert {r.status for r in result.items.values()} == {"valid"}, result.items


def test_unreadable_private_key_is_unknown_not_valid(fleet: DnsFleet, checker: Checker) -> None:
    t = fleet.target("all-valid")
    result = checker.check(DnsTarget(**{**t.__dict__, "key_path": "/nonexistent/key.pem"}))
    assert result.items["dkim"].status == "unknown"
    assert "not readable" in result.items["dkim"].reason


def test_check_many_keeps_order_and_reports_progress(fleet: DnsFleet, checker: Checker) -> None:
    names = list(CASES)[:6]
    seen: list[str] = []
    results = checker.check_many([fleet.target(n) for n in names], 3, lambda r: seen.append(r.target.domain))
    assert [r.target.domain for r in results] == [CASES[n].domain for n in names]
    assert sorted(seen) == sorted(CASES[n].domain for n in names)


# ----------------------------------------------------------------------------- pure rules

def _rsa_record(key: rsa.RSAPrivateKey, fmt: serialization.PublicFormat) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, fmt)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_dkim_rsa_under_1024_fails(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    pem = subprocess.run([openssl, "genrsa", "512"], check=True, capture_output=True).stdout
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    r = dns_auth.evaluate_dkim([_rsa_record(key, serialization.PublicFormat.SubjectPublicKeyInfo)], pem)
    assert r.status == "invalid" and "512" in r.reason


def test_dkim_accepts_pkcs1_and_checks_key_type_and_hash() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1 = _rsa_record(key, serialization.PublicFormat.PKCS1)
    assert dns_auth.evaluate_dkim([pkcs1], _pem(key)).status == "valid"
    assert dns_auth.evaluate_dkim([pkcs1.replace("k=rsa", "k=ed25519")], _pem(key)).status == "invalid"
    assert dns_auth.evaluate_dkim([pkcs1.replace("k=rsa;", "k=rsa; h=sha1;")], _pem(key)).status == "invalid"
    assert dns_auth.evaluate_dkim([pkcs1, pkcs1], _pem(key)).status == "invalid"
    assert dns_auth.evaluate_dkim([pkcs1 + "; t=y"], _pem(key)).status == "warn"
    assert dns_auth.evaluate_dkim([pkcs1], None, "no key").status == "unknown"


def _spf(mechs: list[dict[str, Any]], all_: str | None, redirect: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"mechanisms": mechs, "all": all_, "redirect": redirect}


def test_spf_evaluation_order_redirect_and_ipv6() -> None:
    ip4: dict[str, Any] = {"action": "pass", "mechanism": "ip4", "value": "127.0.20.0/24"}
    assert dns_auth.spf_result_for_ip("v=spf1 ip4:127.0.20.0/24 -all", _spf([ip4], "fail"), "127.0.20.5", {})[0] \
        == "pass"
    # a fail term before the pass decides
    deny: dict[str, Any] = {"action": "fail", "mechanism": "ip4", "value": "127.0.20.5"}
    assert dns_auth.spf_result_for_ip("v=spf1 -ip4:127.0.20.5 ip4:127.0.20.0/24 -all",
                                      _spf([deny, ip4], "fail"), "127.0.20.5", {})[0] == "fail"
    # redirect is ignored when the record has its own all (RFC 7208 §6.1)
    red: dict[str, Any] = {"domain": "r.example", "record": "v=spf1 ip4:127.0.20.9 -all",
           "parsed": _spf([{"action": "pass", "mechanism": "ip4", "value": "127.0.20.9"}], "fail")}
    assert dns_auth.spf_result_for_ip("v=spf1 ~all redirect=r.example", _spf([], "softfail", red),
                                      "127.0.20.9", {})[0] == "softfail"
    assert dns_auth.spf_result_for_ip("v=spf1 redirect=r.example", _spf([], "fail", red), "127.0.20.9", {})[0] == "pass"
    ip6: dict[str, Any] = {"action": "pass", "mechanism": "ip6", "value": "2001:db8::/32"}
    assert dns_auth.spf_result_for_ip("v=spf1 ip6:2001:db8::/32 -all", _spf([ip6], "fail"), "2001:db8::1", {})[0] \
        == "pass"
    mx: dict[str, Any] = {"action": "pass", "mechanism": "mx", "value": "example.com/28",
                          "hosts": [{"hostname": "mx.example.com"}]}
    assert dns_auth.spf_result_for_ip("v=spf1 mx/28 -all", _spf([mx], "fail"), "127.0.20.7",
                                      {"mx.example.com": ["127.0.20.1"]})[0] == "pass"
    assert dns_auth.spf_result_for_ip("v=spf1 mx/28 -all", _spf([mx], "fail"), "127.0.20.70",
                                      {"mx.example.com": ["127.0.20.1"]})[0] == "fail"


def test_ptr_rules() -> None:
    ok = dns_auth.evaluate_ptr("127.0.20.5", "mail.a.test", ["mail.a.test."], {"mail.a.test": ["127.0.20.5"]})
    assert ok.status == "valid"
    assert dns_auth.evaluate_ptr("127.0.20.5", "mail.a.test", [], {}).status == "invalid"
    two = dns_auth.evaluate_ptr("127.0.20.5", "mail.a.test", ["mail.a.test.", "x.a.test."],
                                {"mail.a.test": ["127.0.20.5"], "x.a.test": []})
    assert two.status == "warn"


def test_gate_failures_rule() -> None:
    now = dt.datetime(2026, 11, 28, 6, tzinfo=dt.UTC)
    good = {n: {"status": "valid", "reason": "ok"} for n in dns_auth.ITEMS}
    kw = {"checked_at": now - dt.timedelta(hours=1), "now": now, "checked_ip": "127.0.20.1",
          "current_ip": "127.0.20.1", "max_age": dt.timedelta(hours=48)}
    assert dns_auth.gate_failures(good, **kw) == []  # type: ignore[arg-type]
    warn = {**good, "dkim": {"status": "warn", "reason": "1024 bits"}}
    assert dns_auth.gate_failures(warn, **kw) == []  # type: ignore[arg-type]
    bad = {**good, "ptr": {"status": "unknown", "reason": "timeout"}, "spf": {"status": "invalid", "reason": "x"}}
    assert dns_auth.gate_failures(bad, **kw) == ["SPF invalid: x", "PTR unknown: timeout"]  # type: ignore[arg-type]
    stale = {**kw, "checked_at": now - dt.timedelta(days=3)}
    assert "older than" in dns_auth.gate_failures(good, **stale)[0]  # type: ignore[arg-type]
    moved = {**kw, "current_ip": "127.0.20.2"}
    assert "was for IP 127.0.20.1" in dns_auth.gate_failures(good, **moved)[0]  # type: ignore[arg-type]
    assert dns_auth.gate_failures({}, **kw) == [f"{n.upper()} not checked" for n in dns_auth.ITEMS]  # type: ignore[arg-type]


def test_changes_alert_only_on_change() -> None:
    rows: list[dict[str, Any]] = [
        {"domain": "a", "tenant": "t", "ip": "1", "previous_state": None, "state": "pass", "failing": []},
        {"domain": "b", "tenant": "t", "ip": "2", "previous_state": "pass", "state": "fail", "failing": ["SPF x"]},
        {"domain": "c", "tenant": "t", "ip": "3", "previous_state": "fail", "state": "fail", "failing": ["SPF x"]},
        {"domain": "d", "tenant": "t", "ip": "4", "previous_state": "fail", "state": "pass", "failing": []},
        {"domain": "e", "tenant": "t", "ip": "5", "previous_state": "pass", "state": "unknown", "failing": ["PTR"]},
        {"domain": "f", "tenant": "t", "ip": "6", "previous_state": None, "state": "fail", "failing": ["DKIM"]},
    ]
    grouped = dns_auth.changes(rows)
    assert [s["domain"] for s in grouped["failing"]] == ["b", "f"]
    assert [s["domain"] for s in grouped["recovered"]] == ["d"]
    assert [s["domain"] for s in grouped["unknown"]] == ["e"]
    text = dns_auth.change_alert_text(grouped, 6)
    assert text is not None
    title, body, severity = text
    assert "2 newly failing" in title and "1 recovered" in title and severity == "critical"
    assert "t/b (2): SPF x" in body
    assert dns_auth.change_alert_text(dns_auth.changes(rows[:1] + rows[2:3]), 2) is None
