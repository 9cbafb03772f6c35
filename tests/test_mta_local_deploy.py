"""deploy_local with real commands (sh) standing in for an MTA's validate/reload/verify: success,
unchanged no-op, and rollback after a failed reload or verify (files restored, reloaded again)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from activities.mta.base import BLOCK_BEGIN, extract_block
from activities.mta.local import DeployError, LocalTarget, deploy_local
from activities.mta.postfix import PostfixBackend
from models.enums import IpStatus
from models.inventory import parse
from models.mta_render.from_inventory import snapshot_from_inventory
from tests.conftest import REFERENCE_INVENTORY


class ScriptedPostfix(PostfixBackend):
    """The real Postfix renderer; commands are shell snippets that log each call and fail on request."""

    def __init__(self, log: Path):
        self.log = log
        self.fail: set[str] = set()

    def _cmd(self, step: str) -> list[list[str]]:
        code = 1 if step in self.fail else 0
        return [["sh", "-c", f"echo {step} >> {self.log}; exit {code}"]]

    def validate_commands(self, config_dir: str) -> list[list[str]]:
        return self._cmd("validate")

    def reload_commands(self, config_dir: str) -> list[list[str]]:
        return self._cmd("reload")

    def verify_commands(self, config_dir: str) -> list[list[str]]:
        return self._cmd("verify")


@pytest.mark.parametrize("failing", ["reload", "verify"])
async def test_deploy_local_rolls_back(tmp_path: Path, failing: str) -> None:
    cdir = tmp_path / "postfix"
    cdir.mkdir()
    (cdir / "main.cf").write_text("myhostname = mta.example.com\n")
    log = tmp_path / "calls"
    b = ScriptedPostfix(log)
    snap = snapshot_from_inventory(parse(REFERENCE_INVENTORY.read_text()))
    first = b.render(snap, config_dir=str(cdir))
    res = await deploy_local(b, first, LocalTarget())
    assert res.changed and log.read_text().split() == ["validate", "reload", "verify"]
    main = (cdir / "main.cf").read_text()
    assert main.startswith("myhostname = mta.example.com\n") and main.count(BLOCK_BEGIN) == 1
    assert (await deploy_local(b, first, LocalTarget())).changed is False
    assert log.read_text().split() == ["validate", "reload", "verify"]  # no-op ran nothing
    before = {p.relative_to(cdir): p.read_text() for p in cdir.rglob("*") if p.is_file()}

    t = snap.tenants[0]
    changed = replace(snap, tenants=(replace(t, ips=(replace(t.ips[0], status=IpStatus.QUARANTINE),
                                                     *t.ips[1:])), *snap.tenants[1:]))
    second = b.render(changed, config_dir=str(cdir))
    assert second.digest != first.digest
    log.write_text("")
    b.fail = {failing}
    with pytest.raises(DeployError) as exc:
        await deploy_local(b, second, LocalTarget())
    assert exc.value.step == failing and "previous configuration restored" in str(exc.value)
    expected_calls = {"reload": ["validate", "reload", "reload"], "verify": ["validate", "reload", "verify", "reload"]}
    assert log.read_text().split() == expected_calls[failing]
    assert {p.relative_to(cdir): p.read_text() for p in cdir.rglob("*") if p.is_file()} == before
    assert extract_block((cdir / "master.cf").read_text()) == extract_block(b.materialize(first, {})["master.cf"])
