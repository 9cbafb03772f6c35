"""The host firewall deployed with the MTA config, against the real sshd fixture (tests/servers/sshd.py).

The host's `nft` there is a recording wrapper that runs the real nft inside a throwaway network namespace
(`unshare --net`; `-rn` when not root): the firewall must never be loaded into this machine's own namespace (it would
cut everyone off), so `nft -c -f` is the kernel's real check and `nft -f` a real load into a namespace
discarded at once; what a load does to connections is shown in tests/test_firewall_netns.py. PowerMTA
cannot be installed here: `pmta` is the fixture's recording fake (as in tests/test_mta_deploy.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from activities.inventory import apply_inventory
from activities.mta.base import MANAGED_DIR
from activities.mta.deploy import FirewallRefused, deploy_over_ssh
from activities.mta.ssh import SshEndpoint, SshTarget
from cli.main import app
from models import firewall as fw
from models.settings import get_settings
from models.snapshot import FleetSnapshot
from tests.firewall_support import fleet_of
from tests.mta_fleet import make_dkim_keys, small_inventory
from tests.servers.sshd import SshServer, start_sshd
from tests.support import require_tool
from tests.test_firewall_render import LOCKOUT
from tests.test_mta_deploy import V1, MiniBackend, tree

POLICY = {"deploy": True, "admin_addresses": ["192.0.2.0/24", "2001:db8:ad::/48"],
          "engine_addresses": ["127.0.0.1"]}
RULESET = f"{MANAGED_DIR}/{fw.RULESET_FILE}"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ruleset_for(server: SshServer, feeder: int = 201, **policy: object) -> str:
    """The real renderer's ruleset for a small fleet on the fixture's address and port."""
    inv = small_inventory("fw-host", enabled=True, port=server.port, user=server.user,
                          config_dir=str(server.config_dir), feeder_base=feeder)
    inv = inv.model_copy(update={"firewall": fw.FirewallPolicy.model_validate({**POLICY, **policy})})
    return fw.render(fleet_of(inv), "fw-host")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    require_tool("nft", "/usr/sbin/nft")
    require_tool("unshare")
    with start_sshd(tmp_path_factory.mktemp("sshd-firewall"), address="127.0.12.1") as s:
        yield s


@pytest.fixture
def fresh(server: SshServer) -> Iterator[SshServer]:
    import shutil

    shutil.rmtree(server.config_dir)
    server.config_dir.mkdir()
    (server.config_dir / "config").write_text("# operator's own settings\n")
    server.clear_calls()
    for what in ("test-config", "reload", "nft-check", "nft-apply"):
        server.fail(what, False)
    yield server
    server.resume_listener()


def endpoint(s: SshServer, connect_timeout: float = 15.0) -> SshEndpoint:
    return SshEndpoint(name="fw-test", address=s.address, port=s.port, user=s.user, known_hosts=s.known_hosts,
                       key_path=s.client_key, connect_timeout=connect_timeout)


async def deploy(s: SshServer, ruleset: str | None, conf: str = V1["client-1.conf"], **kw: object):  # type: ignore[no-untyped-def]
    files = {"client-1.conf": conf}
    if ruleset is not None:
        files[fw.RULESET_FILE] = ruleset
    backend = MiniBackend(str(s.config_dir), files)
    rendered = backend.render(FleetSnapshot())
    return await deploy_over_ssh(endpoint(s, float(kw.pop("connect_timeout", 15.0))), backend, rendered,  # type: ignore[arg-type]
                                 owner=f"test-{uuid.uuid4()}", firewall=ruleset is not None,
                                 reconnect_delay=0.1, **kw)  # type: ignore[arg-type]


def host_state(s: SshServer) -> dict[str, str]:
    """Every file and link under the config dir (the deployer's state included)."""
    out = {}
    for p in sorted(s.config_dir.rglob("*")):
        rel = p.relative_to(s.config_dir).as_posix()
        out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else p.read_text() if p.is_file() else "dir"
    return out


async def test_ruleset_checked_before_switch_applied_after_reload_and_rolled_back(fresh: SshServer) -> None:
    v1, v2 = ruleset_for(fresh), ruleset_for(fresh, feeder=205)
    report = await deploy(fresh, v1)
    assert report.ok and report.changed, report
    nft = fresh.nft_calls()
    release = (fresh.config_dir / MANAGED_DIR).readlink()
    assert [c.args for c in nft] == [f"-c -f {fresh.config_dir / release / fw.RULESET_FILE}",
                                     f"-f {fresh.config_dir / RULESET}"]
    assert [c.digest for c in nft] == [sha(v1), sha(v1)]
    pmta = fresh.pmta_calls()
    assert [c.args for c in pmta] == ["test config", "reload"]
    assert pmta[0].at > nft[0].at and nft[1].at > pmta[1].at  # checked before the switch, loaded after the reload
    assert tree(fresh)[RULESET] == v1
    assert any("stay accepted (nftables model)" in s for s in report.steps)
    assert "firewall: a new SSH connection to the host was accepted" in report.steps

    unchanged = await deploy(fresh, v1)
    assert unchanged.ok and not unchanged.changed and len(fresh.nft_calls()) == 2  # a no-op loads nothing

    before = tree(fresh)
    fresh.clear_calls()
    fresh.fail("nft-apply", times=1)
    failed = await deploy(fresh, v2)
    assert not failed.ok and failed.rolled_back and "firewall apply failed" in failed.message, failed.message
    assert tree(fresh) == before
    assert [(c.args.split()[0], c.digest) for c in fresh.nft_calls()] == [("-c", sha(v2)), ("-f", sha(v2)),
                                                                           ("-f", sha(v1))]
    assert "firewall after rollback: previous ruleset loaded again" in failed.steps
    assert [c.args for c in fresh.pmta_calls()] == ["test config", "reload", "reload"]

    fresh.clear_calls()
    fresh.fail("reload", times=1)  # the MTA fails before the new ruleset was loaded: the old one stays
    failed = await deploy(fresh, v2)
    assert failed.rolled_back and "reload failed" in failed.message
    assert [(c.args.split()[0], c.digest) for c in fresh.nft_calls()] == [("-c", sha(v2)), ("-f", sha(v1))]
    assert tree(fresh) == before


async def test_rolling_back_the_first_ruleset_removes_the_table(fresh: SshServer) -> None:
    assert (await deploy(fresh, None)).ok  # a release from before the firewall was turned on
    assert fresh.nft_calls() == []
    fresh.fail("nft-apply", times=1)
    report = await deploy(fresh, ruleset_for(fresh))
    assert report.rolled_back
    last = fresh.nft_calls()[-1]
    assert last.args == f"-f {fresh.config_dir / '.email-engine' / 'firewall-remove.nft'}"
    assert last.digest == sha(fw.REMOVE_TABLE)
    assert RULESET not in tree(fresh)


async def test_nft_check_failure_switches_nothing(fresh: SshServer) -> None:
    assert (await deploy(fresh, ruleset_for(fresh))).ok
    before, releases = tree(fresh), sorted(os.listdir(fresh.config_dir / ".email-engine" / "releases"))
    fresh.clear_calls()
    fresh.fail("nft-check", times=1)
    report = await deploy(fresh, ruleset_for(fresh, feeder=205))
    assert not report.ok and not report.changed and not report.rolled_back
    assert report.message.startswith("firewall check failed") and "Nothing was switched" in report.message
    assert [c.args.split()[0] for c in fresh.nft_calls()] == ["-c"] and fresh.pmta_calls() == []
    assert tree(fresh) == before
    assert sorted(os.listdir(fresh.config_dir / ".email-engine" / "releases")) == releases


async def test_real_nft_check_refuses_a_broken_ruleset(fresh: SshServer) -> None:
    """No failure requested: the kernel (in the wrapper's throwaway namespace) refuses the file."""
    broken = ruleset_for(fresh).replace("tcp dport 25 accept", "tcp dport 70000 accept", 1)
    with pytest.raises(FirewallRefused, match="cannot be checked"):  # the model refuses it first ...
        await deploy(fresh, broken)
    async with SshTarget(endpoint(fresh)) as target:  # ... and so does the host's nft
        await target.write_text(str(fresh.files_dir / "broken.nft"), broken)
        res = await target.run(["nft", "-c", "-f", str(fresh.files_dir / "broken.nft")])
    assert not res.ok and "70000" in res.stderr, res


async def test_a_ruleset_that_would_lock_out_the_session_is_refused_with_nothing_changed(fresh: SshServer) -> None:
    assert (await deploy(fresh, ruleset_for(fresh))).ok
    before = host_state(fresh)
    fresh.clear_calls()
    with pytest.raises(FirewallRefused) as err:
        await deploy(fresh, LOCKOUT, conf="# a new config that must not be switched to\n")
    message = str(err.value)
    assert "would lock this deploy out" in message and "Nothing was changed" in message
    assert "the open session's packets to the host" in message and "127.0.0.1" in message
    assert host_state(fresh) == before  # no upload, no release, no lock left behind
    assert fresh.nft_calls() == [] and fresh.pmta_calls() == []


async def test_new_logins_failing_after_the_load_roll_back_over_the_open_session(fresh: SshServer) -> None:
    """After `nft -f` the deployer opens a second SSH connection; here the sshd listener is stopped at
    that moment (a new login gets no banner, as behind a ruleset that drops new SSH), so the deploy
    rolls back through its still-open session."""
    v1 = ruleset_for(fresh)
    assert (await deploy(fresh, v1)).ok
    before = tree(fresh)
    fresh.clear_calls()
    fresh.stop_listener_on_nft_apply()
    try:
        report = await deploy(fresh, ruleset_for(fresh, feeder=205), connect_timeout=2.0)
    finally:
        fresh.resume_listener()
    assert report.rolled_back and "a new SSH connection to the host failed" in report.message, report.message
    assert tree(fresh) == before
    assert [c.digest for c in fresh.nft_calls()][-1] == sha(v1)  # the previous ruleset loaded again
    assert [c.args for c in fresh.pmta_calls()] == ["test config", "reload", "reload"]


# --- through the inventory, the deploy activity and the CLI ------------------------------------------------

@pytest.fixture
def fleet(tmp_path: Path, sqlite_url: str, server: SshServer,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, SshServer]]:
    for k, v in server.settings_env().items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    host = f"fw-{uuid.uuid4().hex[:8]}"
    inv = small_inventory(host, enabled=True, address=server.address, port=server.port, user=server.user,
                          config_dir=str(server.config_dir), key_dir=tmp_path / "dkim")
    inv = inv.model_copy(update={"firewall": fw.FirewallPolicy.model_validate(POLICY)})
    make_dkim_keys(inv)
    apply_inventory(inv, actor="test", url=sqlite_url)
    import shutil

    shutil.rmtree(server.config_dir)
    server.config_dir.mkdir()
    (server.config_dir / "config").write_text("# operator settings\n")
    server.clear_calls()
    yield host, server
    get_settings.cache_clear()


def test_mta_deploy_ships_the_ruleset_and_diff_sees_it(cli: CliRunner, fleet: tuple[str, SshServer],
                                                       sqlite_url: str, tmp_path: Path) -> None:
    host, server = fleet
    r = cli.invoke(app, ["mta", "render", "--host", host, "--out", str(tmp_path / "render")])
    assert r.exit_code == 0, r.output
    rendered = (tmp_path / "render" / RULESET).read_text()
    assert f"Host: MTA host {host} ({server.address})." in rendered and "ip saddr @engine_v4 tcp dport" in rendered
    r = cli.invoke(app, ["firewall", "render", "--host", host])
    assert r.exit_code == 0 and r.output == rendered, r.output

    r = cli.invoke(app, ["mta", "deploy", host, "--direct", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)[0]
    assert out["ok"] and out["changed"], out
    assert (server.config_dir / RULESET).read_text() == rendered
    assert [c.args.split()[0] for c in server.nft_calls()] == ["-c", "-f"]
    assert [c.args for c in server.pmta_calls()] == ["test config", "reload", "show vmtas"]
    r = cli.invoke(app, ["mta", "diff", host])
    assert r.exit_code == 0 and "no drift" in r.output, r.output

    # the operator turns deploys of the ruleset off: the next release has no ruleset, nft is not run
    inv = small_inventory(host, enabled=True, address=server.address, port=server.port, user=server.user,
                          config_dir=str(server.config_dir), key_dir=tmp_path / "dkim")
    policy = fw.FirewallPolicy.model_validate({**POLICY, "deploy": False})
    apply_inventory(inv.model_copy(update={"firewall": policy}), actor="test", url=sqlite_url)
    r = cli.invoke(app, ["mta", "diff", host])
    assert r.exit_code == 1 and f"deployed/{RULESET}" in r.output
    r = cli.invoke(app, ["mta", "deploy", host, "--direct"])
    assert r.exit_code == 0, r.output
    assert not (server.config_dir / RULESET).exists() and len(server.nft_calls()) == 2
