"""SSH deploy with rollback against a real OpenSSH server on loopback (tests/servers/sshd.py).

PowerMTA cannot be installed here: the host's `pmta` is the fixture's recording fake. The backend in
these tests is a minimal one implementing activities.mta.base.MtaBackendImpl (a fixed file set and
PowerMTA's main-file block), so the deployer is tested on its own; the real PowerMTA renderer is
deployed end to end in tests/test_mta_deploy_workflow.py.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from activities.mta.base import (
    MANAGED_DIR,
    RenderedConfig,
    Target,
    expected_read_back_common,
    read_back_common,
    replace_block,
)
from activities.mta.deploy import deploy_release, drift
from activities.mta.ssh import HostKeyMismatch, SshEndpoint, SshTarget
from models.deploys import UnsafePath, files_digest, relative_path
from models.enums import MtaBackend
from models.snapshot import FleetSnapshot
from tests.servers.sshd import SshServer, start_sshd


class MiniBackend:
    """Renders a given file set; the operator's `config` gets an include block (like PowerMTA)."""

    kind = MtaBackend.POWERMTA
    default_config_dir = "/etc/pmta"
    merged_files: tuple[str, ...] = ("config",)

    def __init__(self, config_dir: str, files: Mapping[str, str]):
        self.config_dir, self.files = config_dir, dict(files)

    def render(self, snapshot: FleetSnapshot, config_dir: str | None = None) -> RenderedConfig:
        return RenderedConfig(backend=self.kind, config_dir=config_dir or self.config_dir,
                              files={f"{MANAGED_DIR}/{k}": v for k, v in self.files.items()})

    def materialize(self, rendered: RenderedConfig, existing: Mapping[str, str | None]) -> dict[str, str]:
        return {"config": replace_block(existing.get("config"),
                                        f"include {rendered.config_dir}/{MANAGED_DIR}/*.conf")}

    def validate_commands(self, config_dir: str) -> list[list[str]]:
        return [["pmta", "test", "config"]]

    def reload_commands(self, config_dir: str) -> list[list[str]]:
        return [["pmta", "reload"]]

    def verify_commands(self, config_dir: str) -> list[list[str]]:
        return []

    async def read_back(self, target: Target, config_dir: str) -> dict[str, str]:
        return await read_back_common(self, target, config_dir)

    def expected_read_back(self, rendered: RenderedConfig) -> dict[str, str]:
        return expected_read_back_common(self, rendered)


V1 = {"client-1.conf": "<virtual-mta vmta-a>\nsmtp-source-host 127.0.11.10 a.example.com\n</virtual-mta>\n",
      "client-2.conf": "<virtual-mta vmta-b>\nsmtp-source-host 127.0.11.11 b.example.com\n</virtual-mta>\n"}
V2 = {"client-1.conf": V1["client-1.conf"].replace("127.0.11.10", "127.0.11.12")}
OPERATOR_CONFIG = "# operator's own settings\nhttp-mgmt-port 8080\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with start_sshd(tmp_path_factory.mktemp("sshd-deploy"), address="127.0.11.1") as s:
        yield s


@pytest.fixture
def fresh(server: SshServer) -> SshServer:
    """The module's server with an empty config dir (only the operator's `config`) and no pmta calls."""
    import shutil

    shutil.rmtree(server.config_dir)
    server.config_dir.mkdir()
    (server.config_dir / "config").write_text(OPERATOR_CONFIG)
    server.clear_calls()
    server.fail("test-config", False)
    server.fail("reload", False)
    return server


def endpoint(s: SshServer, known_hosts: Path | None = None) -> SshEndpoint:
    return SshEndpoint(name="mta-test", address=s.address, port=s.port, user=s.user,
                       known_hosts=known_hosts or s.known_hosts, key_path=s.client_key)


async def deploy(s: SshServer, files: Mapping[str, str], **kw: object):  # type: ignore[no-untyped-def]
    backend = MiniBackend(str(s.config_dir), files)
    rendered = backend.render(FleetSnapshot())
    async with SshTarget(endpoint(s, kw.pop("known_hosts", None))) as target:  # type: ignore[arg-type]
        return await deploy_release(target, backend, rendered, **kw), rendered  # type: ignore[arg-type]


def tree(s: SshServer) -> dict[str, str]:
    """What the MTA would read: the managed dir through its symlink, and the main file."""
    root = s.config_dir / MANAGED_DIR
    out = {f"{MANAGED_DIR}/{p.relative_to(root).as_posix()}": p.read_text() for p in root.rglob("*") if p.is_file()}
    out["config"] = (s.config_dir / "config").read_text()
    return out


async def test_success_then_unchanged_is_a_noop(fresh: SshServer) -> None:
    report, _rendered = await deploy(fresh, V1)
    assert report.ok and report.changed and not report.rolled_back, report
    assert (fresh.config_dir / MANAGED_DIR).is_symlink()
    t = tree(fresh)
    assert t[f"{MANAGED_DIR}/client-1.conf"] == V1["client-1.conf"]
    assert t["config"].startswith(OPERATOR_CONFIG)  # the operator's lines are kept, our block appended
    assert f"include {fresh.config_dir}/{MANAGED_DIR}/*.conf" in t["config"]
    calls = fresh.pmta_calls()
    assert [c.args for c in calls] == ["test config", "reload"]
    loaded_digest = calls[-1].digest

    report2, _ = await deploy(fresh, V1)
    assert report2.ok and not report2.changed
    assert "unchanged" in report2.message
    assert [c.args for c in fresh.pmta_calls()] == ["test config", "reload"]  # no reload for a no-op

    report3, _ = await deploy(fresh, V2)  # a tenant fragment disappears from the render: gone on the host
    assert report3.ok and report3.changed
    assert set(tree(fresh)) == {f"{MANAGED_DIR}/client-1.conf", "config"}
    assert fresh.pmta_calls()[-1].args == "reload" and fresh.pmta_calls()[-1].digest != loaded_digest
    assert tree(fresh)["config"].count("BEGIN email-engine") == 1


@pytest.mark.parametrize("failure", ["test-config", "reload"])
async def test_failure_rolls_back_and_reloads_previous(fresh: SshServer, failure: str) -> None:
    ok, _ = await deploy(fresh, V1)
    assert ok.ok
    before = tree(fresh)
    good_digest = fresh.pmta_calls()[-1].digest
    fresh.clear_calls()
    fresh.fail(failure, times=1)

    report, _ = await deploy(fresh, V2)

    assert not report.ok and report.rolled_back and report.changed
    word = "validation" if failure == "test-config" else "reload"
    assert f"{word} failed" in report.message and "restored" in report.message, report.message
    assert tree(fresh) == before  # previous files back
    calls = fresh.pmta_calls()
    expected = ["test config", "reload"] if failure == "test-config" else ["test config", "reload", "reload"]
    assert [c.args for c in calls] == expected
    assert calls[0].digest != good_digest  # the new config was in place when it was tested
    assert calls[-1].digest == good_digest  # ... and the last reload loaded the previous one again


async def test_first_deploy_failure_removes_everything_it_added(fresh: SshServer) -> None:
    fresh.fail("test-config")
    report, _ = await deploy(fresh, V1)
    assert not report.ok and report.rolled_back
    assert not (fresh.config_dir / MANAGED_DIR).exists()
    assert (fresh.config_dir / "config").read_text() == OPERATOR_CONFIG
    assert "argument missing" in report.message


async def test_host_key_mismatch_is_refused_before_anything_happens(fresh: SshServer, tmp_path: Path) -> None:
    wrong = fresh.known_hosts_with_wrong_key(tmp_path / "known_hosts")
    with pytest.raises(HostKeyMismatch) as exc:
        await deploy(fresh, V1, known_hosts=wrong)
    message = str(exc.value)
    assert "mta-test" in message and f"{fresh.address}:{fresh.port}" in message
    assert fresh.host_key_fingerprint in message  # names the key it was shown
    assert fresh.pmta_calls() == []
    assert not (fresh.config_dir / MANAGED_DIR).exists()

    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    with pytest.raises(HostKeyMismatch, match="does not match"):
        await deploy(fresh, V1, known_hosts=unknown)


async def test_drift_is_detected_and_redeploy_repairs_it(fresh: SshServer) -> None:
    report, rendered = await deploy(fresh, V1)
    assert report.ok
    backend = MiniBackend(str(fresh.config_dir), V1)
    release_file = fresh.config_dir / MANAGED_DIR / "client-2.conf"
    release_file.write_text(release_file.read_text() + "max-smtp-out 999\n")  # edited by hand on the host
    async with SshTarget(endpoint(fresh)) as target:
        deployed = await backend.read_back(target, str(fresh.config_dir))
    diff = drift(backend.expected_read_back(rendered), deployed)
    assert "-max-smtp-out 999" in diff and f"deployed/{MANAGED_DIR}/client-2.conf" in diff
    again, _ = await deploy(fresh, V1)
    assert again.ok and again.changed
    assert "max-smtp-out" not in tree(fresh)[f"{MANAGED_DIR}/client-2.conf"]


async def test_old_releases_are_pruned(fresh: SshServer) -> None:
    clock = iter(dt.datetime(2026, 11, 28, 1, i, tzinfo=dt.UTC) for i in range(10))
    for i in range(6):
        report, _ = await deploy(fresh, {"a.conf": f"# v{i}\n"}, keep_releases=3, now=lambda: next(clock))
        assert report.ok
    releases = sorted(p.name for p in (fresh.config_dir / ".email-engine" / "releases").iterdir())
    assert len(releases) == 3
    current = posixpath.basename(str((fresh.config_dir / MANAGED_DIR).readlink()))
    assert current == releases[-1]


def test_rendered_paths_and_digest_rules() -> None:
    for bad in ["/etc/passwd", "../x", "a/../../b", "a b", "a;rm -rf", "x/.hidden", "", "a//b", "$(id)"]:
        with pytest.raises(UnsafePath):
            relative_path(bad)
    assert relative_path("email-engine/tenants/client-1.conf") == "email-engine/tenants/client-1.conf"
    assert files_digest({"a": "1", "b": "2"}) == files_digest({"b": "2", "a": "1"})
    assert files_digest({"a": "12"}) != files_digest({"a1": "2"})


async def test_a_concurrent_deployer_is_kept_out_by_the_host_lock(fresh: SshServer) -> None:
    import os

    from activities.mta.deploy import DeployBusy

    lock = fresh.config_dir / ".email-engine" / "lock"
    lock.mkdir(parents=True)  # another deployer is busy
    with pytest.raises(DeployBusy, match="another deploy holds"):
        await deploy(fresh, V1, lock_wait=0.5)
    assert fresh.pmta_calls() == [] and not (fresh.config_dir / MANAGED_DIR).exists()
    old = lock.stat().st_mtime - 3600  # ... that crashed an hour ago: its lock is stale
    os.utime(lock, (old, old))
    report, _ = await deploy(fresh, V1, lock_wait=0.5)
    assert report.ok and report.changed
    assert not lock.exists()  # released after the deploy


async def test_a_deploy_interrupted_before_its_reload_is_redone(fresh: SshServer) -> None:
    report, _ = await deploy(fresh, V1)
    assert report.ok
    # The deployer died after switching the files but before reloading: no `loaded` mark.
    (fresh.config_dir / ".email-engine" / "loaded").unlink()
    fresh.clear_calls()
    again, _ = await deploy(fresh, V1)
    assert again.ok and again.changed  # not a no-op: validated and reloaded this time
    assert [c.args for c in fresh.pmta_calls()] == ["test config", "reload"]
    third, _ = await deploy(fresh, V1)
    assert third.ok and not third.changed


def test_ssh_settings_default_under_var_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from models.settings import Settings
    from models.snapshot import MtaHostView

    monkeypatch.setenv("EMAIL_ENGINE_SSH_KNOWN_HOSTS", "")  # empty in .env means "the default"
    monkeypatch.setenv("EMAIL_ENGINE_VAR_DIR", str(tmp_path))
    host = MtaHostView(name="pmta-9", address="127.0.11.9", backend=MtaBackend.POWERMTA, ssh_port=2222,
                       ssh_user="deploy", enabled=True)
    ep = SshEndpoint.for_host(host, Settings())
    assert ep.known_hosts == tmp_path / "ssh" / "known_hosts" and ep.key_path == tmp_path / "ssh" / "id_ed25519"
    assert (ep.port, ep.user, ep.describe()) == (2222, "deploy", "ssh://deploy@127.0.11.9:2222")
