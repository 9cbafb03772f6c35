"""SSH deploys that lose their connection, get cancelled, or meet another deployer's lock (issue 11).

Everything is real: OpenSSH on loopback (tests/servers/sshd.py) and its recording `pmta`. A dropped
connection is made by terminating the session's sshd child process on the server while `pmta test
config` is blocked, i.e. after the release switch and before the reload: the worst moment.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from activities.mta.deploy import (
    JOURNAL,
    STATE_DIR,
    DeployBusy,
    SwitchInterrupted,
    deploy_over_ssh,
    deploy_release,
)
from activities.mta.host_lock import HostLock, owner_id
from activities.mta.ssh import SshTarget
from models.snapshot import FleetSnapshot
from tests.servers.sshd import SshServer, start_sshd
from tests.test_mta_deploy import OPERATOR_CONFIG, V1, V2, MiniBackend, endpoint, tree


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with start_sshd(tmp_path_factory.mktemp("sshd-robust"), address="127.0.11.2") as s:
        yield s


@pytest.fixture
def fresh(server: SshServer) -> Iterator[SshServer]:
    import shutil

    shutil.rmtree(server.config_dir)
    server.config_dir.mkdir()
    (server.config_dir / "config").write_text(OPERATOR_CONFIG)
    server.clear_calls()
    for what in ("test-config", "reload"):
        server.fail(what, False)
        server.hang(what, False)
    yield server
    for what in ("test-config", "reload"):
        server.hang(what, False)


def state(s: SshServer) -> os.PathLike[str]:
    return s.config_dir / STATE_DIR


async def good_deploy(s: SshServer) -> tuple[dict[str, str], str]:
    """Deploy V1; return the tree and the digest pmta reloaded."""
    backend = MiniBackend(str(s.config_dir), V1)
    async with SshTarget(endpoint(s)) as target:
        report = await deploy_release(target, backend, backend.render(FleetSnapshot()), owner="setup")
    assert report.ok, report
    return tree(s), s.pmta_calls()[-1].digest


async def kill_when_hanging(s: SshServer) -> None:
    """Once `pmta test config` blocks (the release is switched), drop every SSH connection."""
    await asyncio.to_thread(s.wait_hanging, "test-config")
    assert (s.config_dir / STATE_DIR / JOURNAL).exists()  # mid-switch: the journal is on the host
    assert s.kill_sessions() >= 1
    s.hang("test-config", False)  # the orphaned pmta call may exit now


async def test_connection_killed_mid_switch_reconnects_and_rolls_back(fresh: SshServer) -> None:
    before, good = await good_deploy(fresh)
    fresh.clear_calls()
    fresh.hang("test-config")
    backend = MiniBackend(str(fresh.config_dir), V2)
    deploy = asyncio.create_task(deploy_over_ssh(endpoint(fresh), backend, backend.render(FleetSnapshot()),
                                                 owner="worker-1", reconnect_delay=0.2))
    await kill_when_hanging(fresh)
    report = await asyncio.wait_for(deploy, 60)

    assert not report.ok and report.rolled_back and report.changed, report
    assert "connection lost after the switch" in report.message and "restored and reloaded" in report.message
    assert tree(fresh) == before  # symlink and main file back to V1
    calls = fresh.pmta_calls()
    assert [c.args for c in calls] == ["test config", "reload"]  # the reload is the repair's
    assert calls[0].digest != good and calls[-1].digest == good  # V2 was switched in; V1 reloaded again
    assert not (fresh.config_dir / STATE_DIR / JOURNAL).exists()
    assert not (fresh.config_dir / STATE_DIR / "lock").exists()  # the lock was released


async def test_connection_killed_without_reconnect_is_repaired_by_the_next_deploy(fresh: SshServer) -> None:
    before, good = await good_deploy(fresh)
    fresh.clear_calls()
    fresh.hang("test-config")
    backend = MiniBackend(str(fresh.config_dir), V2)

    async def deploy_v2() -> None:
        async with SshTarget(endpoint(fresh)) as target:
            await deploy_release(target, backend, backend.render(FleetSnapshot()), owner="worker-1")

    task = asyncio.create_task(deploy_v2())
    await kill_when_hanging(fresh)
    with pytest.raises(SwitchInterrupted, match="lost"):
        await asyncio.wait_for(task, 60)
    # What the dead deployer left: V2 switched in but never reloaded, its journal, and its lock.
    assert tree(fresh) != before
    assert (fresh.config_dir / STATE_DIR / JOURNAL).exists()
    assert (fresh.config_dir / STATE_DIR / "lock" / owner_id("worker-1")).exists()
    assert not (fresh.config_dir / STATE_DIR / "loaded").exists()

    # The retry (same owner: the same activity's next attempt) reclaims the lock and restores V1 first;
    # V1 is then what the host runs, so deploying V1 is a no-op.
    fresh.clear_calls()
    v1 = MiniBackend(str(fresh.config_dir), V1)
    async with SshTarget(endpoint(fresh)) as target:
        report = await deploy_release(target, v1, v1.render(FleetSnapshot()), owner="worker-1", lock_wait=1)
    assert report.ok and not report.changed, report
    assert any("found an interrupted switch" in s for s in report.steps), report.steps
    assert any("reclaimed our own lock" in s for s in report.steps), report.steps
    assert tree(fresh) == before
    assert [(c.args, c.digest) for c in fresh.pmta_calls()] == [("reload", good)]
    assert not (fresh.config_dir / STATE_DIR / JOURNAL).exists()
    assert not (fresh.config_dir / STATE_DIR / "lock").exists()


async def test_a_cancelled_deploy_rolls_back_before_it_stops(fresh: SshServer) -> None:
    before, good = await good_deploy(fresh)
    fresh.clear_calls()
    fresh.hang("test-config")
    backend = MiniBackend(str(fresh.config_dir), V2)
    task = asyncio.create_task(deploy_over_ssh(endpoint(fresh), backend, backend.render(FleetSnapshot()),
                                               owner="worker-1"))
    await asyncio.to_thread(fresh.wait_hanging, "test-config")
    task.cancel()  # e.g. the activity's heartbeat timed out, or the worker shuts down
    await asyncio.sleep(0.2)
    fresh.hang("test-config", False)  # the blocked command returns; the rollback runs
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)
    await asyncio.sleep(0.5)  # the shielded rollback finishes its last request
    assert tree(fresh) == before
    assert fresh.pmta_calls()[-1].args == "reload" and fresh.pmta_calls()[-1].digest == good
    assert not (fresh.config_dir / STATE_DIR / JOURNAL).exists()


# --- the lock's ownership rules -----------------------------------------------------------------------

async def test_lock_ownership_a_broken_deployer_never_removes_its_successors_lock(fresh: SshServer) -> None:
    state_dir = str(fresh.config_dir / STATE_DIR)
    lock_dir = fresh.config_dir / STATE_DIR / "lock"
    async with SshTarget(endpoint(fresh)) as ta, SshTarget(endpoint(fresh)) as tb:
        a = HostLock(ta, state_dir, "deployer-a")
        b = HostLock(tb, state_dir, "deployer-b")
        await a.acquire()
        assert sorted(os.listdir(lock_dir)) == [owner_id("deployer-a")]

        with pytest.raises(DeployBusy, match=r"held by deployer-a .* by the host's clock"):
            await b.acquire(wait=0.5)  # a fresh lock is respected

        # A stalls (no refresh for an hour, by the host's own clock): B breaks the lock and takes it.
        token_a = lock_dir / owner_id("deployer-a")
        old = time.time() - 3600
        os.utime(token_a, (old, old))
        await b.acquire(wait=5)
        assert sorted(os.listdir(lock_dir)) == [owner_id("deployer-b")]
        assert any("broke a stale lock (held by deployer-a" in n for n in b.notes), b.notes

        # A wakes up: it sees it lost the lock, and its release leaves B's lock alone.
        assert not await a.still_held()
        assert await a.release() is False
        assert sorted(os.listdir(lock_dir)) == [owner_id("deployer-b")]

        # Only the owner removes it.
        assert await b.release() is True
        assert not lock_dir.exists()


async def test_lock_age_comes_from_the_hosts_clock_not_ours(fresh: SshServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Our clock two hours ahead of the host's must not make a fresh lock look stale (the old lock
    compared the remote mtime with the local clock)."""
    state_dir = str(fresh.config_dir / STATE_DIR)
    async with SshTarget(endpoint(fresh)) as ta, SshTarget(endpoint(fresh)) as tb:
        a = HostLock(ta, state_dir, "deployer-a")
        await a.acquire()
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 7200)
        with pytest.raises(DeployBusy, match="deployer-a"):
            await HostLock(tb, state_dir, "deployer-b").acquire(wait=1.5)
        monkeypatch.setattr(time, "time", real)
        assert await a.release()


async def test_a_lock_broken_before_the_switch_stops_the_deploy(fresh: SshServer) -> None:
    """A deployer that stalled until its lock was broken does not switch over its successor's work."""
    before, _good = await good_deploy(fresh)
    fresh.clear_calls()
    fresh.hang("test-config", False)
    backend = MiniBackend(str(fresh.config_dir), V2)
    lock_dir = fresh.config_dir / STATE_DIR / "lock"

    class StallingTarget(SshTarget):
        """Between upload and switch, another deployer breaks our lock (we were too slow)."""

        async def write_text(self, path: str, text: str, mode: int = 0o644) -> None:
            if path.endswith(f"/{JOURNAL}"):
                for token in lock_dir.iterdir():
                    token.unlink()
                (lock_dir / owner_id("successor")).write_text("successor\n")
            await super().write_text(path, text, mode)

    async with StallingTarget(endpoint(fresh)) as target:
        with pytest.raises(DeployBusy, match="broken by another deployer before the switch"):
            await deploy_release(target, backend, backend.render(FleetSnapshot()), owner="slow")
    assert tree(fresh) == before and fresh.pmta_calls() == []
    assert sorted(os.listdir(lock_dir)) == [owner_id("successor")]  # the successor's lock is untouched
