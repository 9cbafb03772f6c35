"""Blocklist catalogue, query names, answer classification and self-test rules (pure, no network).

"Recorded answers": each case is the (rcode, A records) a real list gives for a situation, as documented
in ../shared/notes/dns.md (Spamhaus 040-zones and news/788, SURBL/URIBL, Mailspike, RFC 5782)."""

from __future__ import annotations

import ipaddress
import tomllib
from importlib import resources
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from models.blocklist import (
    CatalogError,
    DnsResult,
    Kind,
    Rcode,
    Status,
    Zone,
    classify,
    ip_labels,
    load_catalog,
    parse_catalog,
    query_name,
    self_test_verdict,
)
from models.dnswire import WireError, encode_query, encode_question, parse_reply
from tests.servers.rbldnsd import seed_code

CATALOG = load_catalog()
ZONES = {z.name: z for z in CATALOG.zones}


def A(*codes: str) -> DnsResult:
    return DnsResult(Rcode.ANSWER, codes)


NX = DnsResult(Rcode.NXDOMAIN)


# ------------------------------------------------------------------------------------------ catalogue

def test_shipped_catalogue_covers_the_required_lists() -> None:
    ip_listing = [z for z in CATALOG.zones if z.kind is Kind.IP and z.expected_test_status is Status.LISTED]
    assert len(ip_listing) >= 9
    zones = {z.zone for z in CATALOG.zones}
    for required in ("zen.spamhaus.org", "dbl.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org",
                     "dnsbl-1.uceprotect.net", "psbl.surriel.com", "bl.mailspike.net", "rep.mailspike.net",
                     "multi.surbl.org", "multi.uribl.com"):
        assert required in zones
    assert not [z for z in zones if "sorbs" in z or "manitu" in z]  # dead lists are not shipped
    for z in CATALOG.zones:
        assert z.delist_url.startswith("https://")
        assert z.test_positive != z.test_negative


@pytest.mark.parametrize("zone", CATALOG.zones, ids=lambda z: z.name)
def test_every_zone_classifies_recorded_answers(zone: Zone) -> None:
    # its own test entry answer: a listing (or a score for reputation zones)
    v = classify(zone, A(*seed_code(zone)))
    assert v.status is zone.expected_test_status and v.hits and v.hits[0].meaning
    assert classify(zone, NX).status is Status.NOT_LISTED
    for rcode in (Rcode.TIMEOUT, Rcode.SERVFAIL, Rcode.REFUSED, Rcode.NODATA, Rcode.ERROR):
        assert classify(zone, DnsResult(rcode)).status is Status.UNKNOWN
    # NXDOMAIN-rewriting resolvers answer with a web server's address
    v = classify(zone, A("192.0.2.80"))
    assert v.status is Status.UNKNOWN and "outside 127.0.0.0/8" in v.reason
    # every documented error code of the zone is unknown, never a listing
    for code, spec in zone.codes.items():
        if spec.effect.value == "error":
            assert classify(zone, A(code)).status is Status.UNKNOWN
    # the self-test passes on the real test entries
    assert self_test_verdict(zone, A(*seed_code(zone)), NX).ok


def test_spamhaus_zen_codes() -> None:
    zen = ZONES["spamhaus-zen"]
    v = classify(zen, A("127.0.0.9", "127.0.0.2"))  # DROP comes with SBL
    assert v.status is Status.LISTED and v.codes == ("127.0.0.2", "127.0.0.9")
    assert "DROP" in v.hits[1].meaning
    assert classify(zen, A("127.0.0.4")).hits[0].meaning.startswith("XBL")
    assert classify(zen, A("127.0.0.11")).hits[0].meaning.startswith("PBL")
    assert classify(zen, A("127.0.0.3")).hits[0].meaning.startswith("CSS")
    v = classify(zen, A("127.255.255.254"))
    assert v.status is Status.UNKNOWN and "public/open resolver" in v.reason
    assert classify(zen, A("127.255.255.255")).status is Status.UNKNOWN  # excessive queries
    v = classify(zen, A("127.255.255.7"))  # undocumented but inside the error range
    assert v.status is Status.UNKNOWN and "127.255.255.0/24" in v.reason
    assert classify(zen, A("127.0.0.5")).status is Status.UNKNOWN  # "currently unused": not believed
    # an error code next to a listing code: the list said it could not answer
    assert classify(zen, A("127.0.0.2", "127.255.255.252")).status is Status.UNKNOWN


def test_domain_lists_and_bitmasks() -> None:
    dbl = ZONES["spamhaus-dbl"]
    assert classify(dbl, A("127.0.1.4")).hits[0].meaning == "DBL: phishing domain"
    assert classify(dbl, A("127.0.1.255")).status is Status.UNKNOWN  # IP queried against DBL
    surbl = ZONES["surbl-multi"]
    v = classify(surbl, A("127.0.0.80"))  # MW + ABUSE
    assert v.status is Status.LISTED and "MW" in v.hits[0].meaning and "ABUSE" in v.hits[0].meaning
    assert "PH" not in v.hits[0].meaning
    assert classify(surbl, A("127.0.0.1")).status is Status.UNKNOWN  # blocked
    uribl = ZONES["uribl-multi"]
    assert classify(uribl, A("127.0.0.2")).hits[0].meaning.startswith("URIBL black")
    assert classify(uribl, A("127.0.0.14")).hits[0].meaning.count("URIBL") == 3
    assert classify(uribl, A("127.0.0.1")).status is Status.UNKNOWN  # query refused
    assert classify(uribl, A("127.0.0.16")).status is Status.UNKNOWN  # no known bit set
    assert classify(uribl, A("127.0.1.2")).status is Status.UNKNOWN  # reserved octets


def test_mailspike_reputation_is_not_a_listing() -> None:
    rep = ZONES["mailspike-rep"]
    for code in ("127.0.0.10", "127.0.0.15", "127.0.0.20"):
        assert classify(rep, A(code)).status is Status.REPUTATION
    assert classify(ZONES["mailspike-bl"], A("127.0.0.10")).status is Status.LISTED
    assert classify(ZONES["spamcop"], A("127.0.0.3")).status is Status.LISTED  # any 127.0.0.x, no categories
    assert classify(ZONES["barracuda"], A("127.0.0.3")).status is Status.UNKNOWN  # only .2 is documented
    assert classify(ZONES["spamcop"], A("127.255.255.254")).status is Status.UNKNOWN  # not a 127.0.0.x code


# ----------------------------------------------------------------------------------------- self-test

def test_self_test_failures_make_a_zone_broken() -> None:
    zen = ZONES["spamhaus-zen"]
    assert self_test_verdict(zen, A("127.0.0.2", "127.0.0.4", "127.0.0.10"), NX).ok
    missing = self_test_verdict(zen, NX, NX)  # test entry missing
    assert not missing.ok and "127.0.0.2 is not listed (NXDOMAIN)" in missing.reason
    world = self_test_verdict(zen, A("127.0.0.2"), A("127.0.0.2"))  # lists everything (e.g. expired domain)
    assert not world.ok and "listing the world" in world.reason
    blocked = self_test_verdict(zen, A("127.255.255.254"), NX)  # public resolver refused by Spamhaus
    assert not blocked.ok and "public/open resolver" in blocked.reason
    wrong = self_test_verdict(zen, A("127.0.0.3"), NX)  # listed, but not with an expected test code
    assert not wrong.ok and "expected one of" in wrong.reason
    assert not self_test_verdict(zen, DnsResult(Rcode.TIMEOUT), NX).ok
    assert not self_test_verdict(zen, A("127.0.0.2"), DnsResult(Rcode.SERVFAIL)).ok
    rep = ZONES["mailspike-rep"]
    assert self_test_verdict(rep, A("127.0.0.2"), NX).ok
    assert not self_test_verdict(rep, NX, NX).ok


# ---------------------------------------------------------------------------------------- query names

def test_query_names() -> None:
    assert query_name("zen.spamhaus.org", "ip", "192.0.2.99") == "99.2.0.192.zen.spamhaus.org"
    # Spamhaus DQS documentation example (notes/dns.md §1.1)
    assert ip_labels("2001:db8:7ca6:22::45") == "5.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.2.0.0.6.a.c.7.8.b.d.0.1.0.0.2"
    # RFC 5782 IPv6 test entry: stays in nibble form (dns.reversename would turn it into IPv4 form)
    mapped = ip_labels("::ffff:7f00:2")
    assert mapped.split(".")[:8] == ["2", "0", "0", "0", "0", "0", "f", "7"] and len(mapped.split(".")) == 32
    assert query_name("dbl.spamhaus.org", "domain", "Sos-Mail-1.COM") == "sos-mail-1.com.dbl.spamhaus.org"
    assert query_name("multi.surbl.org", "domain", "test.surbl.org") == "test.surbl.org.multi.surbl.org"
    with pytest.raises(ValueError, match="not a valid domain"):
        query_name("dbl.spamhaus.org", "domain", "bad domain.com")
    with pytest.raises(ValueError):
        query_name("zen.spamhaus.org", "ip", "300.1.1.1")


def test_dqs_zones_carry_the_key_but_never_show_it() -> None:
    key = "abcdefghijklmnopqrstuvwxyz"
    public = {z.name: z for z in CATALOG.active(None)}
    assert public["spamhaus-zen"].query_zone == "zen.spamhaus.org"
    assert "spamhaus-zrd" not in public  # DQS only
    dqs = {z.name: z for z in CATALOG.active(key)}
    assert dqs["spamhaus-zen"].query_zone == f"{key}.zen.dq.spamhaus.net"
    assert dqs["spamhaus-dbl"].query_zone == f"{key}.dbl.dq.spamhaus.net"
    assert dqs["spamhaus-zrd"].display == "<dqs-key>.zrd.dq.spamhaus.net"
    assert dqs["spamcop"].query_zone == "bl.spamcop.net"
    assert key not in repr(dqs["spamhaus-zen"]) and key not in dqs["spamhaus-zen"].display
    with pytest.raises(ValueError) as exc:
        CATALOG.active("bad key!")
    assert "bad key" not in str(exc.value)
    assert [z.name for z in CATALOG.active(None, only=["psbl"])] == ["psbl"]
    with pytest.raises(ValueError, match="unknown blocklist zone"):
        CATALOG.active(None, only=["sorbs"])


# ------------------------------------------------------------------------------------ validation

def _base() -> dict:
    text = resources.files("models").joinpath("blocklists.toml").read_text()
    return tomllib.loads(text)


@pytest.mark.parametrize(("change", "message"), [
    (lambda z: z.update(kind="ipv4"), "zones[0] (spamhaus-zen): kind must be 'ip' or 'domain', got 'ipv4'"),
    (lambda z: z.pop("zone"), "zone is required"),
    (lambda z: z.update(zone="bad zone"), "is not a valid DNS zone name"),
    (lambda z: z["codes"].update({"10.0.0.2": {"effect": "listed", "meaning": "x"}}),
     "codes: '10.0.0.2' is not an IPv4 address inside 127.0.0.0/8"),
    (lambda z: z["codes"]["127.0.0.2"].update(effect="bad"), "codes.127.0.0.2.effect must be listed, error or"),
    (lambda z: z.update(error_ranges=["127.255.255.1/24"]), "is not an IPv4 CIDR range"),
    (lambda z: z.update(error_ranges=["127.0.0.0/24"]), "codes.127.0.0.2: is inside an error range"),
    (lambda z: z.update(test_positive="not-an-ip"), "test_positive 'not-an-ip' must be an IP address"),
    (lambda z: z.update(test_codes=["127.255.255.254"]), "test_codes: 127.255.255.254 is an error code"),
    (lambda z: z.update(other_codes="maybe"), "other_codes must be 'listed' or 'unknown'"),
    (lambda z: z.update(bits={"3": "x"}), "bits: '3' is not a single bit value"),
    (lambda z: z.update(colour="red"), "unknown key(s): colour"),
    (lambda z: z.update(delist_url="ftp://x"), "delist_url must be an http(s) URL"),
    (lambda z: z.update(ipv6="yes"), "ipv6 must be true or false"),
    (lambda z: z.update(dqs_only=True, dqs=None) or z.pop("dqs"), "dqs_only needs dqs"),
    (lambda z: z.update(test_ipv6=True, ipv6=False), "test_ipv6 needs ipv6 = true"),
])
def test_catalogue_errors_are_precise(change, message) -> None:
    data = _base()
    change(data["zones"][0])
    with pytest.raises(CatalogError) as exc:
        parse_catalog(data, "my.toml")
    assert any(message in p for p in exc.value.problems), exc.value.problems
    assert str(exc.value).startswith("my.toml: ")


def test_catalogue_file_errors(tmp_path: Path) -> None:
    data = _base()
    data["zones"].append(dict(data["zones"][1]))
    with pytest.raises(CatalogError, match=r"zones\[16\] \(spamcop\): duplicate name 'spamcop' \(also zones\[1\]\)"):
        parse_catalog(data)
    with pytest.raises(CatalogError, match="cannot read the file"):
        load_catalog(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[zones]\n")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(bad)
    bad.write_text("version = 1\n")
    with pytest.raises(CatalogError, match=r"no \[\[zones\]\] entries"):
        load_catalog(bad)
    own = tmp_path / "own.toml"
    own.write_text('[[zones]]\nname = "local"\nzone = "bl.example.net"\nkind = "ip"\nprovider = "me"\n'
                   'delist_url = "https://example.net"\nother_codes = "listed"\n')
    cat = load_catalog(own)
    assert cat.names() == ["local"] and cat.source == str(own)
    assert classify(cat.zones[0], A("127.0.0.7")).status is Status.LISTED


def test_catalogue_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.blocklists import configured_catalog
    from models.settings import Settings

    own = tmp_path / "own.toml"
    own.write_text('[[zones]]\nname = "local"\nzone = "bl.example.net"\nkind = "ip"\nprovider = "me"\n'
                   'delist_url = "https://example.net"\nother_codes = "listed"\n')
    monkeypatch.setenv("EMAIL_ENGINE_BLOCKLIST_CATALOG", str(own))
    monkeypatch.setenv("EMAIL_ENGINE_SPAMHAUS_DQS_KEY", "abcdefghijklmnopqrstuvwxyz")
    s = Settings()
    assert configured_catalog(s).names() == ["local"]
    assert "abcdefghijklmnopqrstuvwxyz" not in repr(s) and "abcdefghijklmnopqrstuvwxyz" not in str(s.model_dump())


# ---------------------------------------------------------------------------------------- wire format

@pytest.mark.parametrize("qname", ["2.0.0.127.zen.spamhaus.org", "Test.Surbl.org.multi.surbl.org",
                                   ip_labels("2001:db8::1") + ".zen.spamhaus.org"])
def test_wire_format_matches_dnspython(qname: str) -> None:
    q = encode_query(0x1234, encode_question(qname))
    ref = dns.message.make_query(qname.lower(), "A")
    ref.id = 0x1234
    assert q == ref.to_wire()
    msg = dns.message.from_wire(q)
    resp = dns.message.make_response(msg)
    resp.answer.append(dns.rrset.from_text(qname + ".", 60, "IN", "A", "127.0.0.2", "127.0.0.9"))
    resp.answer.append(dns.rrset.from_text(qname + ".", 60, "IN", "TXT", '"listed"'))
    result, truncated = parse_reply(resp.to_wire(), encode_question(qname))  # compressed names
    assert result.rcode is Rcode.ANSWER and sorted(result.addresses) == ["127.0.0.2", "127.0.0.9"]
    assert not truncated
    for rcode, want in ((dns.rcode.NXDOMAIN, Rcode.NXDOMAIN), (dns.rcode.SERVFAIL, Rcode.SERVFAIL),
                        (dns.rcode.REFUSED, Rcode.REFUSED), (dns.rcode.FORMERR, Rcode.ERROR)):
        r = dns.message.make_response(msg)
        r.set_rcode(rcode)
        assert parse_reply(r.to_wire(), encode_question(qname))[0].rcode is want
    empty = dns.message.make_response(msg)
    assert parse_reply(empty.to_wire(), encode_question(qname))[0].rcode is Rcode.NODATA
    empty.flags |= dns.flags.TC
    assert parse_reply(empty.to_wire(), encode_question(qname))[1] is True
    with pytest.raises(WireError, match="another question"):
        parse_reply(resp.to_wire(), encode_question("1.0.0.127.zen.spamhaus.org"))
    with pytest.raises(WireError):
        parse_reply(q, encode_question(qname))  # a query, not a response
    with pytest.raises(WireError):
        parse_reply(resp.to_wire()[:-3], encode_question(qname))
    with pytest.raises(WireError, match="bad label"):
        encode_question("a..b")
    assert ipaddress.ip_address("127.0.0.2")  # keeps ipaddress import honest for the linters
