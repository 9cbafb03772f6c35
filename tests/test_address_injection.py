"""Addresses cannot carry config lines: IPv6 zone ids are refused in every address field, the stored and
rendered form is canonical, and a bad value is a precise error with nothing written (issue 11).

Before this rule `names.ip_address` accepted `fe80::1%<anything>` and kept the text after `%`, so an
inventory IP or feeder `source_ip` of "fe80::1%\\n2525 inet n - n - - smtpd" loaded and `mta render`
wrote `2525 inet n - n - - smtpd` as its own line into Postfix master.cf.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from activities.db import session_scope
from cli.main import app
from models import names
from models.inventory import InventoryError, parse
from models.settings import parse_resolvers
from models.tables import MailwizzServer, MtaHost, SendingDomain, SendingIp, StatusChange, Tenant
from tests.test_inventory import BASE

EVIL = "fe80::1%\n2525 inet n - n - - smtpd"


def counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {m.__name__: s.exec(select(func.count()).select_from(m)).one()
                for m in (MtaHost, Tenant, MailwizzServer, SendingIp, SendingDomain, StatusChange)}


FIELDS = {  # field -> (text to replace in BASE, precise error location)
    "ip": ('address = "10.0.0.1"', "tenants[0] ('t1').ips[0]"),
    "source_ip": ('source_ip = "127.0.0.50"', "tenants[0] ('t1').mailwizz.source_ip"),
    "mta_host": ('address = "127.0.0.1"', "mta_hosts[0] ('mta-a').address"),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_zone_id_carrying_a_master_cf_line_is_refused_and_nothing_written(
        field: str, db_url: str, cli: CliRunner, tmp_path: Path) -> None:
    old, where = FIELDS[field]
    key = old.split(" = ")[0]
    text = BASE.replace(old, f"{key} = {json.dumps(EVIL)}", 1)
    assert EVIL in json.dumps(tomllib.loads(text), ensure_ascii=False).encode().decode("unicode_escape")
    with pytest.raises(InventoryError) as err:
        parse(text)
    assert len(err.value.errors) == 1
    msg = err.value.errors[0]
    assert msg.startswith(where), msg
    assert msg.endswith(f"{EVIL!r}: zone ids ('%...') are not allowed in an address"), msg
    before = counts(db_url)
    f = tmp_path / "evil.toml"
    f.write_text(text)
    result = cli.invoke(app, ["inventory", "load", str(f)])
    assert result.exit_code == 1
    assert "zone ids" in result.output and "nothing was written" in result.output
    assert "\n2525 inet" not in result.output  # the message shows the value escaped, on one line
    assert counts(db_url) == before
    out = tmp_path / "rendered"
    cli.invoke(app, ["mta", "render", "--out", str(out)])  # an empty database: nothing to render
    rendered = "".join(p.read_text() for p in out.rglob("*") if p.is_file()) if out.exists() else ""
    assert "2525 inet" not in rendered


def test_a_zone_id_written_around_the_loader_never_reaches_a_config_file(
        sqlite_url: str, cli: CliRunner, tmp_path: Path) -> None:
    """Defence in depth: a row that bypassed the loader (older code, manual SQL) is refused at render."""
    f = tmp_path / "inv.toml"
    f.write_text(BASE)
    assert cli.invoke(app, ["inventory", "load", str(f)]).exit_code == 0
    with session_scope(sqlite_url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == "10.0.0.1")).one()
        ip.address = EVIL
        s.add(ip)
    out = tmp_path / "rendered"
    result = cli.invoke(app, ["mta", "render", "--out", str(out)])
    assert result.exit_code != 0
    assert "zone ids" in result.output
    files = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not any("2525 inet" in p.read_text() for p in files)


@pytest.mark.parametrize("value", [
    "fe80::1%eth0", "fe80::1%25", "fe80::1%", "::1%lo", "1.2.3.4%x", "2001:db8::1%0",
    "fe80::1%\r\nsmtpd", "10.0.0.1\n", " 10.0.0.1", "10.0.0.1 # x", "[2001:db8::1]", "2001:db8::1/64",
    "0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "ff02::1", "010.0.0.1", "",
])
def test_address_forms_that_are_refused(value: str) -> None:
    with pytest.raises(names.NameError_):
        names.ip_address(value)


@pytest.mark.parametrize(("value", "canonical"), [
    ("10.0.0.1", "10.0.0.1"), ("2001:DB8::1", "2001:db8::1"), ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
    ("fe80::1", "fe80::1"), ("::ffff:1.2.3.4", "::ffff:102:304"), ("::1", "::1"),
])
def test_addresses_are_stored_in_canonical_form(value: str, canonical: str) -> None:
    assert names.ip_address(value) == canonical
    assert names.canonical_ip(canonical) == canonical
    if value != canonical:
        with pytest.raises(names.NameError_, match="not in canonical form"):
            names.canonical_ip(value)


def test_resolvers_refuse_zone_ids() -> None:
    assert parse_resolvers("[2001:DB8::53]:5353, 127.0.0.1") == [("2001:db8::53", 5353), ("127.0.0.1", 53)]
    for bad in ("[fe80::1%eth0]:53", "fe80::1%eth0", "[fe80::1%\nx]:53"):
        with pytest.raises(ValueError, match="EMAIL_ENGINE_DNS_RESOLVERS"):
            parse_resolvers(bad)


@pytest.mark.parametrize(("url", "problem"), [
    ("http://mailwizz.example/api", "plain http is allowed to loopback only"),
    ("http://10.0.0.5/api", "plain http is allowed to loopback only"),
    ("https://user:secret@mailwizz.example/api", "credentials in the URL"),
    ("https://user@mailwizz.example/api", "credentials in the URL"),
    ("https://mailwizz.example/api?key=1", "no query or fragment"),
    ("https://mailwizz.example/api#x", "no query or fragment"),
    ("https://mailwizz.example/a%0Ab", "the path may only hold"),
    ("https://mailwizz.example/a/../b", "the path may only hold"),
    ("https://[fe80::1%25eth0]/api", "zone ids"),
    ("https://bad_host.example/api", "not a valid host name"),
    ("ftp://mailwizz.example/api", "not an http(s) URL"),
    ("https://mailwizz.example/api\n", "whitespace or control characters"),
    ('https://mailwizz.example/"<x>', "the path may only hold"),
])
def test_base_urls_that_are_refused(url: str, problem: str) -> None:
    with pytest.raises(names.NameError_, match=problem.replace("(", r"\(").replace(")", r"\)")):
        names.http_base_url(url)


@pytest.mark.parametrize("url", ["https://mailwizz-sos.com/api", "https://mw.example:8443/api/index.php",
                                 "http://127.0.0.1:9/api", "http://[::1]:8080/api", "http://localhost/api/",
                                 "https://203.0.113.7/api"])
def test_base_urls_that_are_accepted(url: str) -> None:
    assert names.http_base_url(url) == url


def test_inventory_refuses_a_plain_http_mailwizz_url_outside_loopback() -> None:
    with pytest.raises(InventoryError) as err:
        parse(BASE.replace('base_url = "http://127.0.0.1:9/api"', 'base_url = "http://mailwizz.example/api"', 1))
    assert err.value.errors == ["tenants[0] ('t1').mailwizz.base_url: 'http://mailwizz.example/api': plain http "
                                "is allowed to loopback only; use https"]
