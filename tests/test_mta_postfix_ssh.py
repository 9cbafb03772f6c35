"""The Postfix backend deployed over SSH (issue 3: "deployable locally or over SSH").

Everything is real: the isolated Postfix instance (tests/servers/postfix.py) and OpenSSH
(tests/servers/sshd.py) on loopback; the inventory -> render -> `deploy_host` path (SshTarget +
deploy_release: the deployer the PowerMTA SSH tests exercise, here with the real Postfix backend), and
Postfix's own `postconf`/`postfix` run through the SSH session. Tenant IPs are in 127.0.70.0/24; the
sink records each delivery's source address, so "the reload took effect" is observed, not assumed.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import select

from activities.db import session_scope
from activities.inventory import apply_inventory
from activities.mta.base import BLOCK_BEGIN, MANAGED_DIR, backend_for
from activities.mta.deploy import STATE_DIR, deploy_host, deploy_release
from activities.mta.ssh import SshEndpoint, SshTarget
from activities.snapshot import load_snapshot
from models.deploys import HostDeployRequest, HostDeployResult
from models.enums import IpStatus, MtaBackend
from models.inventory import parse
from models.settings import get_settings
from models.tables import SendingIp
from tests.servers.postfix import PostfixInstance, postfix_instance  # noqa: F401  (fixture)
from tests.servers.sshd import SshServer, start_sshd

HOST = "pf-ssh"
TENANT_IPS = {"alpha": ("127.0.70.1", "127.0.70.2"), "beta": ("127.0.70.11", "127.0.70.12")}
FEEDERS = {"alpha": "127.0.70.200", "beta": "127.0.70.201"}  # the tenants' MailWizz source IPs
OPERATOR_LINE = "# operator's own line, kept by every deploy\n"


def inventory(config_dir: str, port: int, user: str) -> str:
    out = [f'[[mta_hosts]]\nname = "{HOST}"\naddress = "127.0.0.1"\nbackend = "postfix"\nssh_port = {port}\n'
           f'ssh_user = "{user}"\nconfig_dir = "{config_dir}"\nenabled = true\n']
    for tenant, ips in TENANT_IPS.items():
        out.append(f'[[tenants]]\nname = "{tenant}"\nmta_host = "{HOST}"\ndkim_key_dir = "{config_dir}/dkim"\n'
                   f'[tenants.mailwizz]\nbase_url = "http://127.0.0.1:1/api"\nsource_ip = "{FEEDERS[tenant]}"\n')
        for addr in ips:
            n = addr.rsplit(".", 1)[1]
            out.append(f'[[tenants.ips]]\naddress = "{addr}"\nhostname = "mta{n}.{tenant}.example"\n'
                       f'domain = "{tenant}{n}.example"\nstatus = "active"\n')
    return "\n".join(out)


@pytest.fixture
def ssh_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshServer]:
    """sshd on 127.0.0.1 (the MTA host's address); the settings point at its key and known_hosts."""
    with start_sshd(tmp_path / "sshd", address="127.0.0.1") as server:
        for k, v in server.settings_env().items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        yield server
        get_settings.cache_clear()


@pytest.fixture
def deployed(postfix_instance: PostfixInstance, ssh_server: SshServer,  # noqa: F811
             sqlite_url: str) -> PostfixInstance:
    """The running Postfix (an operator line added to its main.cf) and the inventory applied; not deployed yet."""
    pf = postfix_instance
    main = pf.config_dir / "main.cf"
    main.write_text(main.read_text() + OPERATOR_LINE)
    apply_inventory(parse(inventory(str(pf.config_dir), ssh_server.port, ssh_server.user)), actor="test",
                    url=sqlite_url)
    from activities.dkim_keys import ensure_key

    for t in load_snapshot(sqlite_url).tenants:  # the engine's keys, shipped by every deploy
        for ip in t.ips:
            ensure_key(Path(ip.dkim_key_path), 1024)
    return pf


def reloads(pf: PostfixInstance) -> int:
    return len(re.findall(r"postfix/master\[\d+\]: reload ", pf.log()))


def wait_reloads(pf: PostfixInstance, count: int, timeout: float = 10.0) -> None:
    """postlogd writes maillog asynchronously: wait until `count` master reloads are logged."""
    deadline = time.monotonic() + timeout
    while reloads(pf) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reloads(pf) == count, pf.log()[-2000:]


def send_from_tenants(pf: PostfixInstance, per_tenant: int = 20) -> dict[str, set[str]]:
    """Inject mail from each tenant's feeder (sender domain of its first IP); source IPs per tenant."""
    pf.sink.clear()
    for tenant, ips in TENANT_IPS.items():
        pf.send(f"news@{tenant}{ips[0].rsplit('.', 1)[1]}.example", count=per_tenant, source=FEEDERS[tenant])
    got = pf.sink.wait_for(per_tenant * len(TENANT_IPS), timeout=30)
    return {t: {d.source for d in got if d.mail_from.startswith(f"news@{t}")} for t in TENANT_IPS}


async def deploy(generation: int) -> HostDeployResult:
    return await deploy_host(HostDeployRequest(host=HOST, generation=generation, reason="test", actor="test"))


async def test_postfix_deploys_over_ssh_reloads_and_an_unchanged_redeploy_is_a_noop(
        deployed: PostfixInstance, ssh_server: SshServer, sqlite_url: str) -> None:
    pf, cdir = deployed, deployed.config_dir
    pf.send("news@alpha1.example", source=FEEDERS["alpha"])  # before the deploy: relayed from 127.0.0.1
    assert pf.sink.wait_for(1)[0].source == "127.0.0.1"
    reloads_before = reloads(pf)

    r = await deploy(1)
    assert r.ok and r.changed and not r.rolled_back, r.message
    assert r.target == f"ssh://{ssh_server.user}@127.0.0.1:{ssh_server.port}"
    assert any(s.startswith(f"`postfix -c {cdir} reload` exited 0") for s in r.steps), r.steps
    # files landed: the managed dir is the release symlink, main.cf/master.cf carry the block
    link = cdir / MANAGED_DIR
    assert link.is_symlink() and str(link.readlink()).startswith(f"{STATE_DIR}/releases/")
    assert (link / "main.cf").is_file() and (link / "master.cf").is_file()
    main = (cdir / "main.cf").read_text()
    assert OPERATOR_LINE in main and main.count(BLOCK_BEGIN) == 1
    # Postfix itself sees the rendered per-IP transports (postconf parses through the symlinked tree)
    services = subprocess.run(["postconf", "-c", str(cdir), "-M"], capture_output=True, text=True,
                              check=True).stdout
    for tenant, ips in TENANT_IPS.items():
        for i, addr in enumerate(ips, 1):
            assert re.search(rf"^ee-vmta-{tenant}-{i}\s+unix\b.*smtp_bind_address={re.escape(addr)}\b",
                             services, re.M), services
    wait_reloads(pf, reloads_before + 1)  # `postfix reload` reached the running master
    # ... and took effect: each tenant's mail now leaves only from (all of) its own IPs
    sources = send_from_tenants(pf)
    assert sources == {t: set(ips) for t, ips in TENANT_IPS.items()}, sources

    # unchanged re-deploy: a no-op (nothing uploaded, no reload), the release stays
    release = link.readlink()
    again = await deploy(2)
    assert again.ok and not again.changed and again.digest == r.digest, again.message
    assert link.readlink() == release
    assert not any("reload" in s for s in again.steps), again.steps
    time.sleep(0.3)
    assert reloads(pf) == reloads_before + 1

    # an inventory change deploys and reloads: the quarantined IP sends nothing any more
    with session_scope(sqlite_url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == "127.0.70.1")).one()
        ip.status = IpStatus.QUARANTINE
    third = await deploy(3)
    assert third.ok and third.changed and third.digest != r.digest, third.message
    wait_reloads(pf, reloads_before + 2)
    assert send_from_tenants(pf)["alpha"] == {"127.0.70.2"}


async def test_an_invalid_main_cf_fails_validation_and_rolls_back_over_ssh(
        deployed: PostfixInstance, sqlite_url: str) -> None:
    pf, cdir = deployed, deployed.config_dir
    good = await deploy(1)
    assert good.ok and good.changed, good.message
    before = {p: (cdir / p).read_text() for p in ("main.cf", "master.cf")}
    release = (cdir / MANAGED_DIR).readlink()
    reloads_before = reloads(pf)

    # a hostile edit of the rendered main.cf (a line Postfix cannot parse) goes into main.cf's block
    snapshot = load_snapshot(sqlite_url).for_host(HOST)
    backend = backend_for(MtaBackend.POSTFIX)
    rendered = backend.render(snapshot)
    files = dict(rendered.files)
    files[f"{MANAGED_DIR}/main.cf"] += "this line is not a postfix parameter\n"
    broken = replace(rendered, files=files, digest="")
    async with SshTarget(SshEndpoint.for_host(snapshot.host(HOST))) as target:
        report = await deploy_release(target, backend, broken)
    assert not report.ok and report.rolled_back and report.changed, report.message
    assert report.message.startswith(f"validation failed: `postconf -c {cdir} -n` exited 1"), report.message
    assert "missing '=' after attribute name" in report.message
    assert "restored and reloaded" in report.message, report.message
    # the previous release and the operator's files are back, byte for byte
    assert (cdir / MANAGED_DIR).readlink() == release
    assert {p: (cdir / p).read_text() for p in before} == before
    wait_reloads(pf, reloads_before + 1)  # the rollback reloaded the previous config
    assert send_from_tenants(pf) == {t: set(ips) for t, ips in TENANT_IPS.items()}
    # the restored state counts as deployed: the good render is a no-op again
    again = await deploy(2)
    assert again.ok and not again.changed and again.digest == good.digest, again.message
