"""End to end through real Postfix: render the inventory, deploy locally, send, check source IPs.

Tenant IPs are loopback addresses 127.0.10.1-127.0.10.30 (all of 127/8 is bindable on Linux); the
sink records each connection's source address. Shares are checked with a statistical tolerance.
"""

from __future__ import annotations

import math
import smtplib
from pathlib import Path

import pytest

from activities.inventory import apply_inventory
from activities.mta.base import backend_for
from activities.mta.local import DeployError, deploy_local
from activities.snapshot import load_snapshot
from models.enums import MtaBackend
from models.inventory import parse
from tests.servers.postfix import PostfixInstance, postfix_instance  # noqa: F401  (fixture)

PER_TENANT = 300
ALPHA_FEEDER, BETA_FEEDER = "127.0.10.200", "127.0.10.201"  # the tenants' MailWizz source IPs


def inventory(config_dir: str, quarantined: str | None = None) -> str:
    ips = {
        "alpha": [("127.0.10.1", "active", None), ("127.0.10.2", "active", None),
                  ("127.0.10.3", "warming", "week_6"), ("127.0.10.4", "standby", None)],
        "beta": [("127.0.10.11", "active", None), ("127.0.10.12", "warming", "week_5"),
                 ("127.0.10.13", "warming", "week_4"), ("127.0.10.14", "retiring", None)],
    }
    out = [f'[[mta_hosts]]\nname = "pf-1"\naddress = "127.0.0.1"\nbackend = "postfix"\n'
           f'config_dir = "{config_dir}"\nenabled = true\n']
    for n, (tenant, rows) in enumerate(ips.items()):
        out.append(f'[[tenants]]\nname = "{tenant}"\nmta_host = "pf-1"\ndkim_key_dir = "{config_dir}/dkim"\n'
                   f'[tenants.mailwizz]\nbase_url = "http://127.0.0.1:1/api"\nsource_ip = "127.0.10.{200 + n}"\n')
        for addr in (r[0] for r in rows):
            status, phase = next((s, p) for a, s, p in rows if a == addr)
            if addr == quarantined:
                status, phase = "quarantine", None
            last = addr.rsplit(".", 1)[1]
            out.append(f'[[tenants.ips]]\naddress = "{addr}"\nhostname = "mta{last}.{tenant}.example"\n'
                       f'domain = "{tenant}{last}.example"\nstatus = "{status}"\n'
                       + (f'phase = "{phase}"\n' if phase else ""))
    return "\n".join(out)


def within(observed: int, n: int, p: float) -> bool:
    """Observed count within 5 standard deviations (+2) of a binomial(n, p) expectation."""
    return abs(observed - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 2


async def test_tenant_mail_leaves_only_from_its_ips_in_quota_shares(
        postfix_instance: PostfixInstance, sqlite_url: str) -> None:  # noqa: F811
    pf = postfix_instance
    cdir = str(pf.config_dir)
    apply_inventory(parse(inventory(cdir)), actor="test", url=sqlite_url)
    backend = backend_for(MtaBackend.POSTFIX)
    rendered = backend.render(load_snapshot(sqlite_url).for_host("pf-1"))
    assert rendered.config_dir == cdir
    result = await deploy_local(backend, rendered, pf.target)
    assert result.changed
    assert (await deploy_local(backend, rendered, pf.target)).changed is False  # unchanged: no-op

    pf.send("news@alpha1.example", count=PER_TENANT // 3, source=ALPHA_FEEDER)
    pf.send("news@alpha3.example", count=PER_TENANT // 3, source=ALPHA_FEEDER)
    # a standby IP's domain: sent through alpha's pool
    pf.send("news@alpha4.example", count=PER_TENANT - 2 * (PER_TENANT // 3), source=ALPHA_FEEDER)
    pf.send("news@beta11.example", count=PER_TENANT, source=BETA_FEEDER)
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # a domain of no tenant never leaves
        pf.send("news@stranger.example", source=ALPHA_FEEDER)
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # alpha's feeder cannot use beta's domains
        pf.send("news@beta11.example", source=ALPHA_FEEDER)
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # nor can any other client
        pf.send("news@alpha1.example")
    pf.sink.wait_for(2 * PER_TENANT, timeout=60)

    alpha = pf.sink.by_source("alpha1.example") + pf.sink.by_source("alpha3.example") + \
        pf.sink.by_source("alpha4.example")
    beta = pf.sink.by_source("beta11.example")
    assert set(alpha) <= {"127.0.10.1", "127.0.10.2", "127.0.10.3"}, alpha
    assert set(beta) <= {"127.0.10.11", "127.0.10.12", "127.0.10.13"}, beta
    # quotas: alpha 10000/10000/2000, beta 10000/1000/500
    for ip, p in {"127.0.10.1": 10 / 22, "127.0.10.2": 10 / 22, "127.0.10.3": 2 / 22}.items():
        assert within(alpha[ip], PER_TENANT, p), (ip, alpha)
    for ip, p in {"127.0.10.11": 20 / 23, "127.0.10.12": 2 / 23, "127.0.10.13": 1 / 23}.items():
        assert within(beta[ip], PER_TENANT, p), (ip, beta)
    helos = {(d.source, d.helo) for d in pf.sink.snapshot()}
    assert ("127.0.10.3", "mta3.alpha.example") in helos

    # quarantine 127.0.10.1 in the inventory, render, deploy, reload: nothing more leaves from it
    apply_inventory(parse(inventory(cdir, quarantined="127.0.10.1")), actor="test", url=sqlite_url,
                    apply_state=True)
    rendered2 = backend.render(load_snapshot(sqlite_url).for_host("pf-1"))
    assert rendered2.digest != rendered.digest
    assert (await deploy_local(backend, rendered2, pf.target)).changed
    pf.sink.clear()
    pf.send("news@alpha1.example", count=PER_TENANT, source=ALPHA_FEEDER)
    got = pf.sink.wait_for(PER_TENANT, timeout=60)
    after = pf.sink.by_source()
    assert "127.0.10.1" not in after, after
    assert set(after) <= {"127.0.10.2", "127.0.10.3"}
    assert within(after["127.0.10.3"], PER_TENANT, 2 / 12), after
    assert len(got) == PER_TENANT
    assert "ee-vmta-alpha-1 unix" in pf.config_dir.joinpath("master.cf").read_text()  # VMTA kept, no pool


async def test_failed_validation_restores_previous_config(
        postfix_instance: PostfixInstance, sqlite_url: str) -> None:  # noqa: F811
    pf = postfix_instance
    cdir = str(pf.config_dir)
    apply_inventory(parse(inventory(cdir)), actor="test", url=sqlite_url)
    backend = backend_for(MtaBackend.POSTFIX)
    rendered = backend.render(load_snapshot(sqlite_url).for_host("pf-1"))
    before = {p.name: p.read_text() for p in pf.config_dir.glob("*.cf")}
    # a broken master.cf entry (real Postfix refuses it): validation fails, files are restored
    broken_files = dict(rendered.files)
    broken_files["email-engine/master.cf"] += "broken-entry unix - - n\n"
    broken = type(rendered)(backend=rendered.backend, config_dir=rendered.config_dir, files=broken_files)
    with pytest.raises(DeployError) as exc:
        await deploy_local(backend, broken, pf.target)
    assert exc.value.step == "validate"
    assert {p.name: p.read_text() for p in pf.config_dir.glob("*.cf")} == before
    assert not [p for p in (pf.config_dir / "email-engine").rglob("*") if p.is_file()]
    pf.send("news@alpha1.example")  # still the old config: no tenant classes, relayed to the sink
    assert pf.sink.wait_for(1)[0].source == "127.0.0.1"


async def test_opendkim_signs_with_each_domains_key_and_published_txt_verifies(
        postfix_instance: PostfixInstance, sqlite_url: str) -> None:  # noqa: F811
    """Keys from `dkim generate`, shipped by the deploy next to the tables from the Postfix render (0600,
    in email-engine/dkim/), signing by real OpenDKIM as a milter of real Postfix, verification (dkimpy)
    against the TXT records `dns records` prints."""
    import dkim

    from activities.dkim_keys import ensure_key, public_key_der
    from activities.mta.deploy import load_dkim_keys
    from models.dns_records import records_for_ip
    from tests.servers.opendkim import start_opendkim

    pf = postfix_instance
    cdir = str(pf.config_dir)
    apply_inventory(parse(inventory(cdir)), actor="test", url=sqlite_url)
    snap = load_snapshot(sqlite_url).for_host("pf-1")
    txt: dict[bytes, bytes] = {}
    for t in snap.tenants:
        for ip in t.ips:
            assert ensure_key(Path(ip.dkim_key_path))
            rec = next(r for r in records_for_ip(ip, public_key_der(Path(ip.dkim_key_path)))
                       if r.name.startswith(f"{ip.dkim_selector}._domainkey."))
            txt[f"{rec.name}.".encode()] = "".join(rec.values).encode()
    backend = backend_for(MtaBackend.POSTFIX)
    rendered = backend.render(snap)
    keys, missing = load_dkim_keys(snap, snap.host("pf-1"))
    assert missing == [] and len(keys.files) == sum(len(t.ips) for t in snap.tenants)
    await deploy_local(backend, rendered, pf.target, keys=keys)
    for name, data in keys.files.items():  # OpenDKIM reads the deployed copies, not the engine's
        deployed = pf.config_dir / "email-engine" / "dkim" / name
        assert deployed.read_bytes() == data and deployed.stat().st_mode & 0o7777 == 0o600
    managed = pf.config_dir / "email-engine" / "opendkim"
    with start_opendkim(pf.root, managed / "KeyTable", managed / "SigningTable") as odk:
        with (pf.config_dir / "main.cf").open("a") as f:  # operator's part of main.cf (outside the block)
            f.write(f"smtpd_milters = inet:127.0.0.1:{odk.port}\nmilter_default_action = tempfail\n")
        pf.postfix("reload")
        pf.send("news@alpha3.example", count=5, source=ALPHA_FEEDER)
        pf.send("news@beta12.example", count=5, source=BETA_FEEDER)
        got = pf.sink.wait_for(10, timeout=30)
    for d in got:
        domain = d.mail_from.split("@")[1]
        assert b"DKIM-Signature:" in d.data
        assert f"d={domain};".encode() in d.data.replace(b" ", b"").replace(b"\r\n\t", b"")
        assert dkim.verify(d.data, dnsfunc=lambda name, timeout=5: txt.get(name, b"")), d.data[:400]
    tampered = got[0].data.replace(b"\r\n\r\nx", b"\r\n\r\ny")
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: txt.get(name, b""))
