"""DKIM private keys deployed with the config (issue 10): in the release, 0600, owned by the MTA's user,
never replaced by a different key without the operator's flag, rolled back with the config, never shown.

Real OpenSSH on loopback with the recording `pmta` (PowerMTA cannot be installed here), the real
PowerMTA renderer, the inventory -> render -> `deploy_host` path. Mode and owner are read over SFTP.
"""

from __future__ import annotations

import os
import pwd
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError

from activities.db import session_scope
from activities.inventory import apply_inventory
from activities.mta.base import MANAGED_DIR
from activities.mta.deploy import deploy_host, drift
from activities.mta.ssh import SshEndpoint, SshTarget
from activities.snapshot import load_snapshot
from models.deploy_history import MtaDeployRecord
from models.deploys import HostDeployRequest
from models.settings import get_settings
from tests.mta_fleet import make_dkim_keys, small_inventory
from tests.servers.sshd import SshServer, start_sshd

#: The MTA's user owning the keys: another account than the SSH login when we can chown (root, as in CI).
MTA_USER = "nobody" if os.geteuid() == 0 else None


@pytest.fixture
def fleet(tmp_path: Path, sqlite_url: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, SshServer, dict[str, Path]]]:
    with start_sshd(tmp_path / "sshd", address="127.0.11.3") as server:
        for k, v in server.settings_env().items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        host = f"dkim-{uuid.uuid4().hex[:8]}"
        inv = small_inventory(host, enabled=True, address=server.address, port=server.port, user=server.user,
                              config_dir=str(server.config_dir), ips_per_tenant=2, key_dir=tmp_path / "engine-keys",
                              mta_user=MTA_USER)
        keys = make_dkim_keys(inv)
        apply_inventory(inv, actor="test", url=sqlite_url)
        (server.config_dir / "config").write_text("# operator settings\n")
        yield host, server, keys
        get_settings.cache_clear()


def deployed_key(server: SshServer, domain: str) -> Path:
    return server.config_dir / MANAGED_DIR / "dkim" / f"{domain}.default.key"


async def deploy(host: str, generation: int, replace: bool = False):  # type: ignore[no-untyped-def]
    return await deploy_host(HostDeployRequest(host=host, generation=generation, reason="test", actor="test",
                                               replace_dkim_keys=replace))


def assert_no_key_material(*texts: str) -> None:
    for text in texts:
        assert "PRIVATE KEY" not in text and "MII" not in text, text[:300]


async def test_keys_ship_in_the_release_0600_owned_by_the_mta_user(
        fleet: tuple[str, SshServer, dict[str, Path]], sqlite_url: str) -> None:
    host, server, keys = fleet
    result = await deploy(host, 1)
    assert result.ok and result.changed, result.message
    assert any("4 DKIM keys (0600)" in s for s in result.steps), result.steps

    tenant_files = "".join(p.read_text() for p in (server.config_dir / MANAGED_DIR / "tenants").iterdir())
    uid = pwd.getpwnam(MTA_USER).pw_uid if MTA_USER else os.geteuid()
    snapshot = load_snapshot(sqlite_url).for_host(host)
    async with SshTarget(SshEndpoint.for_host(snapshot.host(host))) as target:
        for domain, local in keys.items():
            remote = f"{server.config_dir}/{MANAGED_DIR}/dkim/{domain}.default.key"
            # the rendered domain-key line names exactly the deployed file ...
            assert f"domain-key default,{domain},{remote}\n" in tenant_files
            # ... which is the engine's key, mode 0600, owned by the MTA's user (read over SFTP)
            assert await target.read_bytes(remote) == local.read_bytes()
            status = await target.file_status(remote)
            assert status is not None and status[0] == 0o600 and status[1] == uid, status
        dir_status = await target.file_status(f"{server.config_dir}/{MANAGED_DIR}/dkim")
        assert dir_status is not None and dir_status[0] == 0o700 and dir_status[1] == uid
        # the key lives in the release the symlink points at (switched and rolled back with it)
        release = (server.config_dir / MANAGED_DIR).readlink()
        assert (server.config_dir / release / "dkim" / f"{next(iter(keys))}.default.key").is_file()
        # drift (`mta diff`) never reads keys, so never prints them
        backend_render = result.digest
        assert backend_render
        from activities.mta.base import backend_for

        backend = backend_for(snapshot.host(host).backend)
        rendered = backend.render(snapshot, config_dir=str(server.config_dir))
        deployed = await backend.read_back(target, str(server.config_dir))
        assert not any("/dkim/" in p for p in deployed)
        assert drift(backend.expected_read_back(rendered), deployed) == ""

    with session_scope(sqlite_url) as s:
        rows = list(s.exec(select(MtaDeployRecord).where(MtaDeployRecord.host == host)))
    assert_no_key_material(result.message, *result.steps, *(r.message for r in rows))

    again = await deploy(host, 2)  # same config, same keys: a no-op
    assert again.ok and not again.changed, again.message


async def test_a_different_key_is_refused_without_the_operator_flag(
        fleet: tuple[str, SshServer, dict[str, Path]]) -> None:
    from activities.dkim_keys import ensure_key

    host, server, keys = fleet
    assert (await deploy(host, 1)).ok
    domain, local = next(iter(keys.items()))
    old = local.read_bytes()
    release = (server.config_dir / MANAGED_DIR).readlink()
    server.clear_calls()

    local.unlink()  # the operator rotates this domain's key on the engine
    ensure_key(local, 1024)
    with pytest.raises(ApplicationError) as exc:
        await deploy(host, 2)
    err = exc.value
    assert err.type == "DkimKeyChangeRefused" and err.non_retryable
    message = str(err)
    assert f"{domain}.default.key" in message and "--replace-dkim-keys" in message and "Nothing was changed" in message
    assert re.search(r"new public key sha256:[0-9a-f]{64}", message), message
    assert_no_key_material(message)
    # nothing changed on the host: same release, same key, no pmta call
    assert (server.config_dir / MANAGED_DIR).readlink() == release
    assert deployed_key(server, domain).read_bytes() == old
    assert server.pmta_calls() == []

    replaced = await deploy(host, 3, replace=True)  # the operator's explicit go-ahead
    assert replaced.ok and replaced.changed, replaced.message
    assert any("replacing DKIM keys" in s for s in replaced.steps), replaced.steps
    assert deployed_key(server, domain).read_bytes() == local.read_bytes() != old


async def test_a_failed_deploy_rolls_the_previous_key_back(
        fleet: tuple[str, SshServer, dict[str, Path]]) -> None:
    from activities.dkim_keys import ensure_key

    host, server, keys = fleet
    assert (await deploy(host, 1)).ok
    domain, local = next(iter(keys.items()))
    old = local.read_bytes()
    local.unlink()
    ensure_key(local, 1024)
    server.fail("reload", times=1)

    result = await deploy(host, 2, replace=True)

    assert not result.ok and result.rolled_back, result.message
    assert deployed_key(server, domain).read_bytes() == old  # the key went back with the config
    assert (deployed_key(server, domain).stat().st_mode & 0o7777) == 0o600
    assert server.pmta_calls()[-1].args == "reload"
    retry = await deploy(host, 3, replace=True)  # the next deploy ships the new key
    assert retry.ok and deployed_key(server, domain).read_bytes() == local.read_bytes()


async def test_a_missing_key_is_refused_before_anything_is_written(
        fleet: tuple[str, SshServer, dict[str, Path]]) -> None:
    host, server, keys = fleet
    domain, local = next(iter(keys.items()))
    local.unlink()
    with pytest.raises(ApplicationError) as exc:
        await deploy(host, 1)
    assert exc.value.type == "DeployConfigError" and exc.value.non_retryable
    assert f"{domain}.default ({local})" in str(exc.value) and "dkim generate" in str(exc.value)
    assert not (server.config_dir / MANAGED_DIR).exists() and server.pmta_calls() == []


def test_mta_user_is_validated_by_the_inventory() -> None:
    from pydantic import ValidationError

    from models.inventory import MtaHostEntry

    assert MtaHostEntry(name="h", address="127.0.11.9", mta_user="pmta").mta_user == "pmta"
    assert MtaHostEntry(name="h", address="127.0.11.9").mta_user is None  # default: the SSH user owns the keys
    for bad in ["root; rm -rf /", "Pmta", "-x", "a" * 33, "pm ta", "$(id)", "pmta\n"]:
        with pytest.raises(ValidationError, match="not a valid user name"):
            MtaHostEntry(name="h", address="127.0.11.9", mta_user=bad)


async def test_a_key_changed_on_the_host_is_noticed_and_unchanged_keys_are_reused(
        fleet: tuple[str, SshServer, dict[str, Path]], sqlite_url: str, tmp_path: Path) -> None:
    """The per-release manifest spares reading every key back, but a key file changed on the host (its
    size or mtime no longer match) is read and compared; keys that did not change are hard-linked into
    the next release, not uploaded again."""
    from activities.dkim_keys import ensure_key
    from models.enums import IpStatus
    from models.tables import SendingIp

    host, server, keys = fleet
    assert (await deploy(host, 1)).ok
    domain = next(iter(keys))
    with session_scope(sqlite_url) as s:  # a config change (not a key change): a new release
        ip = s.exec(select(SendingIp).where(SendingIp.status == IpStatus.ACTIVE)).first()
        assert ip is not None
        ip.status = IpStatus.QUARANTINE
    second = await deploy(host, 2)
    assert second.ok and second.changed, second.message
    assert deployed_key(server, domain).stat().st_nlink == 2  # shared with the previous release

    other = tmp_path / "other.key"  # someone replaces the key on the host by hand
    ensure_key(other, 1024)
    deployed_key(server, domain).unlink()
    deployed_key(server, domain).write_bytes(other.read_bytes())
    deployed_key(server, domain).chmod(0o600)
    with pytest.raises(ApplicationError) as exc:
        await deploy(host, 3)
    assert exc.value.type == "DkimKeyChangeRefused" and f"{domain}.default.key" in str(exc.value)
