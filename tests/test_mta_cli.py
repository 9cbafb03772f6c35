"""CLI: `dkim generate`, `dns records`, `mta render`, and the run command's MTA render hook."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from activities.inventory import apply_inventory
from cli.main import app
from models.dns_records import split_txt
from models.inventory import parse
from models.settings import get_settings
from tests.conftest import REFERENCE_INVENTORY
from tests.test_mta_postfix_e2e import inventory


def load_small(url: str, config_dir: str = "/etc/postfix") -> None:
    apply_inventory(parse(inventory(config_dir)), actor="test", url=url)


def test_dkim_generate_creates_0600_keys_and_never_overwrites(cli: CliRunner, sqlite_url: str,
                                                              tmp_path: Path) -> None:
    load_small(sqlite_url)
    keys = tmp_path / "keys"
    res = cli.invoke(app, ["dkim", "generate", "--tenant", "beta", "--key-dir", str(keys), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["result"] for r in rows] == ["created"] * 4
    for r in rows:
        p = Path(r["path"])
        assert p.parent == keys and stat.S_IMODE(p.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        assert key.key_size == 2048  # type: ignore[union-attr]
    first = Path(rows[0]["path"]).read_bytes()
    again = cli.invoke(app, ["dkim", "generate", "--key-dir", str(keys), "--json"])
    rows2 = json.loads(again.output)
    assert {r["domain"]: r["result"] for r in rows2 if r["tenant"] == "beta"} == \
        {r["domain"]: "kept" for r in rows}
    assert [r["result"] for r in rows2 if r["tenant"] == "alpha"] == ["created"] * 4
    assert Path(rows[0]["path"]).read_bytes() == first
    bad = cli.invoke(app, ["dkim", "generate", "--tenant", "Bad Name"])
    assert bad.exit_code != 0 and "not a valid tenant name" in bad.output
    missing = cli.invoke(app, ["dkim", "generate", "--tenant", "nobody"])
    assert missing.exit_code != 0 and "no tenant named 'nobody'" in missing.output


def test_dns_records(cli: CliRunner, sqlite_url: str, tmp_path: Path) -> None:
    load_small(sqlite_url)
    keys = tmp_path / "keys"
    res = cli.invoke(app, ["dns", "records", "--tenant", "alpha", "--key-dir", str(keys), "--json"])
    assert res.exit_code == 0
    recs = json.loads(res.stdout)
    assert [r["missing"] for r in recs if r["name"].startswith("default._domainkey.")] == [True] * 4
    assert cli.invoke(app, ["dkim", "generate", "--tenant", "alpha", "--key-dir", str(keys)]).exit_code == 0
    recs = json.loads(cli.invoke(app, ["dns", "records", "--tenant", "alpha", "--key-dir", str(keys),
                                       "--json"]).stdout)
    by = {(r["name"], r["type"]): r for r in recs}
    assert by[("mta1.alpha.example", "A")]["values"] == ["127.0.10.1"]
    assert by[("alpha1.example", "TXT")]["values"] == ["v=spf1 ip4:127.0.10.1 -all"]
    assert by[("1.10.0.127.in-addr.arpa", "PTR")]["values"] == ["mta1.alpha.example."]
    assert by[("_dmarc.alpha1.example", "TXT")]["values"][0].startswith("v=DMARC1; p=")
    dkim = by[("default._domainkey.alpha1.example", "TXT")]["values"]
    assert len(dkim) >= 2 and all(len(s.encode()) <= 255 for s in dkim)
    key = serialization.load_pem_private_key((keys / "alpha1.example.default.key").read_bytes(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert "".join(dkim) == "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    assert {r["tenant"] for r in recs} == {"alpha"}
    zone = cli.invoke(app, ["dns", "records", "--tenant", "alpha", "--key-dir", str(keys), "--zone"]).stdout
    assert 'alpha1.example. 3600 IN TXT "v=spf1 ip4:127.0.10.1 -all"' in zone


def test_dns_records_for_bounce_and_fbl_domains(cli: CliRunner, sqlite_url: str, tmp_path: Path) -> None:
    """The report domains' MX must be the MTA host (User's Guide 12.6, 12.7); the bounce domain is the
    MAIL FROM domain, so its SPF covers every IP of the tenant."""
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=sqlite_url)
    res = cli.invoke(app, ["dns", "records", "--tenant", "client-1", "--key-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    by = {(r["name"], r["type"]): r for r in json.loads(res.stdout)}
    for domain in ("bounce.mailwizz-sos.com", "fbl.mailwizz-sos.com"):
        assert by[(domain, "MX")]["values"] == [f"10 {domain}."]
        assert by[(domain, "A")]["values"] == ["100.1.1.1"]
    spf = "".join(by[("bounce.mailwizz-sos.com", "TXT")]["values"])
    assert spf == ("v=spf1 ip4:45.123.10.1 ip4:45.123.10.2/31 ip4:45.123.10.4/30 ip4:45.123.10.8/29 "
                   "ip4:45.123.10.16/28 ip4:45.123.10.32/28 ip4:45.123.10.48/31 ip4:45.123.10.50 -all")
    assert ("fbl.mailwizz-sos.com", "TXT") not in by and ("bounce.mailwizz-client2.com", "MX") not in by
    zone = cli.invoke(app, ["dns", "records", "--tenant", "client-2", "--key-dir", str(tmp_path), "--zone"]).stdout
    assert "bounce.mailwizz-client2.com. 3600 IN MX 10 bounce.mailwizz-client2.com." in zone


def test_split_txt() -> None:
    assert split_txt("a" * 600) == ("a" * 255, "a" * 255, "a" * 90)
    assert split_txt("") == ("",)


def test_mta_render_cli(cli: CliRunner, sqlite_url: str, tmp_path: Path) -> None:
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=sqlite_url)
    out = tmp_path / "out"
    res = cli.invoke(app, ["mta", "render", "--backend", "powermta", "--tenant", "client-2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["config", "email-engine/main.conf", "email-engine/tenants/client-2.conf"]
    assert "include /etc/pmta/email-engine/main.conf" in (out / "config").read_text()
    before = {f: (out / f).read_bytes() for f in files}
    res2 = cli.invoke(app, ["mta", "render", "--backend", "powermta", "--tenant", "client-2", "--out", str(out),
                            "--json"])
    assert json.loads(res2.stdout)[0]["out"] == str(out)
    assert {f: (out / f).read_bytes() for f in files} == before  # byte-identical, block not duplicated
    pf = tmp_path / "pf"
    res3 = cli.invoke(app, ["mta", "render", "--backend", "postfix", "--out", str(pf)])
    assert res3.exit_code == 0, res3.output
    assert "ee-vmta-client1-1 unix" in (pf / "master.cf").read_text()
    assert "sender_tenants" in (pf / "main.cf").read_text()
    for args, msg in ((["--backend", "kumo"], "unknown backend"), (["--tenant", "x y"], "not a valid tenant"),
                      (["--tenant", "ghost"], "no tenant named")):
        bad = cli.invoke(app, ["mta", "render", "--out", str(tmp_path / "bad"), *args])
        assert bad.exit_code != 0 and msg in bad.output, bad.output
    assert not (tmp_path / "bad").exists()


def test_run_command_hook_renders_reference_fleet_into_var(sqlite_url: str) -> None:
    from workers.bootstrap import HOOKS
    from workers.mta_render_hook import render_all, render_mta_configs

    assert render_mta_configs in HOOKS
    apply_inventory(parse(REFERENCE_INVENTORY.read_text()), actor="test", url=sqlite_url)
    settings = get_settings()
    lines = render_all(settings)
    out = settings.var_dir / "mta" / "pmta-1"
    assert len(lines) == 1 and f"rendered to {out}/" in lines[0] and "not contacted" in lines[0]
    assert (out / "email-engine" / "tenants" / "client-1.conf").read_text().count("<virtual-mta ") == 50
    assert (out / "config").is_file()
