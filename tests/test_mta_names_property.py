"""Property tests: names that would break a config line never reach a file.

1. Any inventory value containing a character that could break out of a PowerMTA/Postfix/OpenDKIM line
   (whitespace, line breaks, '#', '<', '>', quotes, ',', ':', '=', '{', '}', ';', '%') is refused by the
   inventory loader (models.names validators) before anything is rendered.
2. For any valid names, IPv4 and IPv6 addresses, every rendered line still parses as exactly one
   directive/entry of its file.
3. Arbitrary text (newlines, quotes, '%', '<', '>', zone ids) in every field that reaches a config file,
   a shell (SSH user, config dir, host address) or a URL (MailWizz base URL) is either refused by the
   loader or, if accepted, rendered as one entry per line and safe as a shell word.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import tomllib
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.mta.base import backend_for
from models.enums import MtaBackend
from models.inventory import InventoryError, parse
from models.mta_render.from_inventory import snapshot_from_inventory
from tests.mta_render_support import parse_pmta

BREAKERS = [" ", "\t", "\n", "\r", "#", "<", ">", '"', "'", ",", ":", "=", "{", "}", ";", "\x00", "\u2028", "%"]

label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?\Z")
hostname = st.builds(lambda a, b: f"{a}.{b}.example", label, label)
token = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
tenant_name = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?\Z")
path = st.builds(lambda parts: "/" + "/".join(parts), st.lists(st.from_regex(r"\A[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,8}\Z"),
                                                                min_size=1, max_size=4))


def toml_str(value: str) -> str:
    """A TOML basic string holding exactly `value` (control characters escaped, the rest verbatim)."""
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def inventory_text(v: dict[str, str]) -> str:
    q = toml_str
    return f"""
[[mta_hosts]]
name = {q(v["host"])}
address = {q(v["host_address"])}
backend = "powermta"
config_dir = {q(v["config_dir"])}
ssh_user = {q(v["ssh_user"])}

[[tenants]]
name = {q(v["tenant"])}
mta_host = {q(v["host"])}
pool = {q(v["pool"])}

[tenants.mailwizz]
base_url = {q(v["base_url"])}
source_ip = {q(v["feeder"])}

[[tenants.ips]]
address = {q(v["address"])}
hostname = {q(v["hostname"])}
domain = {q(v["domain"])}
vmta = {q(v["vmta"])}
dkim_selector = {q(v["selector"])}
dkim_key_path = {q(v["key_path"])}
status = "active"

[[tenants.ips]]
address = "127.0.10.3"
hostname = "mta3.other.example"
domain = "other3.example"
status = "warming"
phase = "week_2"
"""


VALID = {"host": "pf-1", "host_address": "127.0.10.1", "ssh_user": "deploy", "base_url": "http://127.0.0.1:1/api",
         "config_dir": "/etc/pmta", "tenant": "t1", "pool": "t1-pool", "feeder": "127.0.10.200",
         "address": "127.0.10.2", "hostname": "mta2.t1.example", "domain": "t1-2.example", "vmta": "v2",
         "selector": "s1", "key_path": "/etc/pmta/dkim/t1.key"}


def test_the_valid_template_loads() -> None:
    parse(inventory_text(VALID))


@given(st.text())
def test_the_toml_quoting_of_these_tests_is_exact(value: str) -> None:
    assert tomllib.loads(f"x = {toml_str(value)}")["x"] == value


#: Fields whose value is a URL: ':' and '%' belong there, the other breakers do not.
URL_FIELDS = {"base_url"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALID)), breaker=st.sampled_from(BREAKERS),
       where=st.sampled_from(["prefix", "middle", "suffix"]))
def test_breaking_characters_are_refused_before_rendering(field: str, breaker: str, where: str) -> None:
    good = VALID[field]
    if field in URL_FIELDS and breaker in (":", "%", "=") and where != "prefix":
        return  # legal URL characters in some positions: the arbitrary-text property below covers URLs
    bad = {"prefix": breaker + good, "middle": good[:2] + breaker + good[2:], "suffix": good + breaker}[where]
    values = {**VALID, field: bad}
    try:
        parse(inventory_text(values))
    except InventoryError as exc:
        assert exc.errors
    else:
        raise AssertionError(f"{field}={bad!r} was accepted")


def _check_postfix_lines(files: dict[str, str]) -> None:
    patterns = {
        "email-engine/master.cf": [r"# [^\n]*", r"ee-[A-Za-z0-9._-]+ unix - - n - - smtp",
                                   r"  -o [a-z_0-9]+=[^\s]+"],
        "email-engine/main.cf": [r"# [^\n]*", r"[a-z_0-9]+ = [^\n]*"],
        "email-engine/sender_tenants": [r"# [^\n]*", r"[a-z0-9.-]+ (ee_tenant_[a-z0-9_]+|450 4\.7\.1 [^\n]*)"],
        "email-engine/filters": [r"# [^\n]*", r"(ee-[A-Za-z0-9._-]+) FILTER \1:"],
        "email-engine/opendkim/KeyTable": [
            r"[a-z0-9.-]+\._domainkey\.[a-z0-9.-]+ [a-z0-9.-]+:[a-z0-9.-]+:/[A-Za-z0-9._+/-]+"],
        "email-engine/opendkim/SigningTable": [r"[a-z0-9.-]+ [a-z0-9.-]+\._domainkey\.[a-z0-9.-]+"],
    }
    for name, text in files.items():
        assert text.endswith("\n")
        for line in text[:-1].split("\n"):
            assert any(re.fullmatch(p, line) for p in patterns[name]), f"{name}: {line!r}"


ipv4 = st.ip_addresses(v=4).filter(lambda a: not (a.is_unspecified or a.is_multicast)
                                      and a != ipaddress.IPv4Address("255.255.255.255"))
ipv6 = st.ip_addresses(v=6).filter(lambda a: not (a.is_unspecified or a.is_multicast))
address = st.one_of(ipv4, ipv6).map(str)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant=tenant_name, host=token, vmta=token, selector=label, h1=hostname, d1=hostname, key=path,
       addr=address, feeder=address)
def test_valid_names_render_one_entry_per_line(tenant: str, host: str, vmta: str, selector: str, h1: str,
                                               d1: str, key: str, addr: str, feeder: str) -> None:
    values = {**VALID, "tenant": tenant, "pool": f"{tenant}-pool", "host": host, "vmta": vmta,
              "selector": selector, "hostname": h1, "domain": d1, "key_path": key, "address": addr,
              "feeder": feeder}
    try:
        inv = parse(inventory_text(values))
    except InventoryError:
        return  # e.g. a VMTA name equal to the pool name, or a duplicate domain: refused, never rendered
    snap = snapshot_from_inventory(inv)
    pm = backend_for(MtaBackend.POWERMTA).render(snap)
    lines = parse_pmta(dict(pm.files))
    assert sum(1 for ln in lines if ln.kind == "open" and ln.name == "virtual-mta") == 2
    pf = backend_for(MtaBackend.POSTFIX).render(snap, config_dir="/etc/postfix")
    _check_postfix_lines(dict(pf.files))
    assert pf.files["email-engine/master.cf"].count(" unix - - n - - smtp\n") == 2


#: Characters that matter to config lines, shells and URLs, plus a sample of everything else.
NASTY = st.sampled_from(["\n", "\r", " ", "\t", '"', "'", "%", "<", ">", "#", ";", "$", "`", "\\", "|", "&",
                         "@", "?", "/", ":", "[", "]", "{", "}", "=", ",", "\x00", "\u2028", "..", "fe80::1%"])
arbitrary = st.lists(st.one_of(NASTY, st.text(max_size=4)), max_size=8).map("".join)
#: Fields whose value reaches a shell or an SSH command line on the MTA host.
SHELL_FIELDS = {"host", "host_address", "ssh_user", "config_dir", "key_path"}


def _render_checked(values: dict[str, str]) -> None:
    snap = snapshot_from_inventory(parse(inventory_text(values)))
    lines = parse_pmta(dict(backend_for(MtaBackend.POWERMTA).render(snap).files))
    assert sum(1 for ln in lines if ln.kind == "open" and ln.name == "virtual-mta") == 2
    pf = backend_for(MtaBackend.POSTFIX).render(snap, config_dir="/etc/postfix")
    _check_postfix_lines(dict(pf.files))
    assert pf.files["email-engine/master.cf"].count(" unix - - n - - smtp\n") == 2


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALID)), text=arbitrary, where=st.sampled_from(["replace", "prefix", "suffix"]))
def test_arbitrary_text_in_any_field_is_refused_or_harmless(field: str, text: str, where: str) -> None:
    value = {"replace": text, "prefix": text + VALID[field], "suffix": VALID[field] + text}[where]
    values = {**VALID, field: value}
    try:
        inv = parse(inventory_text(values))
    except InventoryError as exc:
        assert exc.errors and all("\n" not in e for e in exc.errors)  # one line per problem
        return
    stored = {"host": inv.mta_hosts[0].name, "host_address": inv.mta_hosts[0].address,
              "ssh_user": inv.mta_hosts[0].ssh_user, "config_dir": inv.mta_hosts[0].config_dir,
              "base_url": inv.tenants[0].mailwizz.base_url, "feeder": inv.tenants[0].mailwizz.source_ip,
              "address": inv.tenants[0].ips[0].address}.get(field, value)
    assert not any(c.isspace() or ord(c) < 32 or c in "\"'<>%`$;|&\\" for c in stored), stored
    if field in SHELL_FIELDS:
        assert shlex.quote(stored) == stored, stored
    if field in ("host_address", "feeder", "address"):
        assert stored == ipaddress.ip_address(stored).compressed
    if field in URL_FIELDS:
        parts = urlsplit(stored)
        assert parts.scheme in ("http", "https") and not parts.username and not parts.query
        assert parts.scheme == "https" or ipaddress.ip_address(parts.hostname or "0.0.0.0").is_loopback \
            or parts.hostname == "localhost"
    _render_checked({**values, field: stored})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone=arbitrary, field=st.sampled_from(["address", "feeder", "host_address"]))
def test_ipv6_zone_ids_are_refused_in_every_address_field(zone: str, field: str) -> None:
    values = {**VALID, field: f"fe80::1%{zone}"}
    try:
        parse(inventory_text(values))
    except InventoryError as exc:
        assert len(exc.errors) == 1 and "zone ids" in exc.errors[0], exc.errors
    else:
        raise AssertionError(f"{field}={values[field]!r} was accepted")


def _full_canonical_ip(value: str) -> str | None:
    """canonical_ip without its IPv4 fast path (the parser's answer), None where it refuses."""
    from models import names

    try:
        canonical = names.ip_address(value)
    except names.NameError_:
        return None
    return canonical if canonical == value else None


def _canonical_ip_or_none(value: str) -> str | None:
    from models import names

    try:
        return names.canonical_ip(value)
    except names.NameError_:
        return None


octet_text = st.one_of(st.integers(0, 255).map(str), st.from_regex(r"\A0[0-9]{1,2}\Z"),
                       st.integers(256, 999).map(str), st.sampled_from(["", "-1", "+1", "٣", " 1", "1 ", "0x1"]))


@settings(max_examples=3000, deadline=None)
@given(st.lists(octet_text, min_size=3, max_size=5).map(".".join) | st.text(max_size=20)
       | st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))))
def test_canonical_ip_fast_path_answers_as_the_parser(value: str) -> None:
    """The IPv4 regex fast path of canonical_ip accepts exactly what the full parser accepts as canonical
    and unicast (leading zeros, out-of-range octets, 0.0.0.0, multicast, broadcast, Unicode digits)."""
    assert _canonical_ip_or_none(value) == _full_canonical_ip(value)


def test_canonical_ip_fast_path_edges() -> None:
    from models import names

    for good in ("1.0.0.0", "9.9.9.9", "10.0.0.1", "223.255.255.255", "240.0.0.1", "254.255.255.255", "0.1.2.3"):
        assert names.canonical_ip(good) == good
    for bad in ("0.0.0.0", "224.0.0.1", "239.255.255.255", "255.255.255.255", "01.2.3.4", "1.2.3.04", "256.1.1.1",
                "1.2.3", "1.2.3.4.5", "1.2.3.4\n", "1.2.3.4%eth0", "１.2.3.4"):
        assert _canonical_ip_or_none(bad) is None, bad
