"""`email-engine mta deploy` and `mta diff` against a real sshd (fake `pmta`: PowerMTA cannot be
installed here) and the real PowerMTA renderer; through the workflow on the dev server, or --direct."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.alerts import send_alert
from activities.db import session_scope
from activities.inventory import apply_inventory
from activities.mta.deploy import deploy_mta_host
from cli.main import app
from models.deploys import workflow_id
from models.enums import IpStatus
from models.settings import get_settings
from models.tables import SendingIp
from tests.mta_fleet import make_dkim_keys, small_inventory
from tests.servers.sshd import SshServer, start_sshd
from workflows.mta_deploy import MtaDeployWorkflow


@pytest.fixture
def fleet(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, SshServer]]:
    with start_sshd(tmp_path / "sshd", address="127.0.11.1") as server:
        for k, v in server.settings_env().items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        host = f"cli-{uuid.uuid4().hex[:8]}"
        inv = small_inventory(host, enabled=True, port=server.port, user=server.user,
                              config_dir=str(server.config_dir), key_dir=tmp_path / "dkim")
        make_dkim_keys(inv)  # a deploy ships every key its config names
        apply_inventory(inv, actor="test", url=sqlite_url)
        apply_inventory(small_inventory(f"{host}-off", enabled=False, address="127.0.11.250",
                                        ip_base=110, feeder_base=203), actor="test",
                        url=sqlite_url)
        (server.config_dir / "config").write_text("# operator settings\n")
        yield host, server
        get_settings.cache_clear()


def quarantine_first_ip(url: str, host: str) -> str:
    with session_scope(url) as s:
        ip = s.exec(select(SendingIp).where(SendingIp.address == "127.0.11.10")).one()
        ip.status = IpStatus.QUARANTINE
        return ip.address


def test_diff_deploy_direct_and_rollback(cli: CliRunner, fleet: tuple[str, SshServer], sqlite_url: str) -> None:
    host, server = fleet
    r = cli.invoke(app, ["mta", "diff", host])
    assert r.exit_code == 1, r.output  # never deployed: everything is drift
    assert "+++ rendered/email-engine/main.conf" in r.output

    r = cli.invoke(app, ["mta", "deploy", host, "--direct", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out[0]["ok"] and out[0]["changed"] and out[0]["host"] == host
    assert [c.args for c in server.pmta_calls()] == ["test config", "reload", "show vmtas"]

    r = cli.invoke(app, ["mta", "diff", host])
    assert r.exit_code == 0 and "no drift" in r.output, r.output
    r = cli.invoke(app, ["mta", "deploy", host, "--direct"])  # unchanged: no reload
    assert r.exit_code == 0 and "unchanged" in r.output, r.output
    assert len(server.pmta_calls()) == 3

    quarantine_first_ip(sqlite_url, host)
    r = cli.invoke(app, ["mta", "diff", host, "--json"])
    assert r.exit_code == 1
    assert "127.0.11.10 (quarantine" in json.loads(r.output)[0]["diff"]

    server.fail("reload", times=1)
    r = cli.invoke(app, ["mta", "deploy", host, "--direct"])
    assert r.exit_code == 1, r.output
    assert "FAILED, rolled back" in r.output and "reload failed" in r.output
    r = cli.invoke(app, ["mta", "diff", host])  # the previous config is back, so the change is still drift
    assert r.exit_code == 1

    # A disabled host is rendered into var/ only; `diff` compares against that render.
    off = f"{host}-off"
    r = cli.invoke(app, ["mta", "deploy", off, "--direct"])
    assert r.exit_code == 0 and "not contacted" in r.output, r.output
    assert (get_settings().var_dir / "mta" / off / "config").is_file()
    r = cli.invoke(app, ["mta", "diff", off])
    assert r.exit_code == 0, r.output

    r = cli.invoke(app, ["mta", "history", host, "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)  # newest first
    assert [(x["ok"], x["changed"], x["rolled_back"]) for x in rows] == [
        (False, True, True), (True, False, False), (True, True, False)]
    r = cli.invoke(app, ["mta", "history"])
    assert r.exit_code == 0 and "rolled back" in r.output and off in r.output, r.output


def test_bad_input_is_refused(cli: CliRunner, fleet: tuple[str, SshServer], monkeypatch: pytest.MonkeyPatch) -> None:
    host, server = fleet
    for args, msg in ((["mta", "deploy", "nope", "--direct"], "no MTA host named 'nope'"),
                      (["mta", "diff", "a;rm -rf /"], "not a valid MTA host name")):
        r = cli.invoke(app, args)
        assert r.exit_code == 2 and msg in r.output, r.output
    wrong = server.known_hosts_with_wrong_key(server.root / "wrong_known_hosts")
    monkeypatch.setenv("EMAIL_ENGINE_SSH_KNOWN_HOSTS", str(wrong))
    get_settings.cache_clear()
    r = cli.invoke(app, ["mta", "diff", host])
    assert r.exit_code == 2 and "HostKeyMismatch" in r.output and server.host_key_fingerprint in r.output, r.output
    assert server.pmta_calls() == []


async def test_deploy_through_the_workflow(  # type: ignore[no-untyped-def]
        temporal_local, cli: CliRunner, fleet: tuple[str, SshServer], monkeypatch: pytest.MonkeyPatch) -> None:
    host, server = fleet
    queue = f"mta-cli-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("EMAIL_ENGINE_TASK_QUEUE", queue)
    monkeypatch.setenv("EMAIL_ENGINE_TEMPORAL_ADDRESS", temporal_local.client.service_client.config.target_host)
    get_settings.cache_clear()
    client = temporal_local.client
    # No worker on the queue: the CLI says so instead of hanging.
    monkeypatch.setenv("EMAIL_ENGINE_TASK_QUEUE", f"{queue}-nobody")
    get_settings.cache_clear()
    for extra in (["--no-wait"], []):
        r = await asyncio.to_thread(cli.invoke, app, ["mta", "deploy", f"{host}-off", "--timeout", "1", *extra])
        assert r.exit_code == 2 and "is a worker running" in r.output, r.output
    await client.get_workflow_handle(workflow_id(f"{host}-off")).terminate("test done")
    monkeypatch.setenv("EMAIL_ENGINE_TASK_QUEUE", queue)
    get_settings.cache_clear()
    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow],
                      activities=[deploy_mta_host, send_alert]):
        r = await asyncio.to_thread(cli.invoke, app, ["mta", "deploy", host, "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert out[0]["generation"] == 1 and out[0]["ok"] and out[0]["changed"]
        r = await asyncio.to_thread(cli.invoke, app, ["mta", "deploy", host, "--no-wait"])
        assert r.exit_code == 0 and "queued as generation 2" in r.output, r.output
        result = await client.get_workflow_handle_for(MtaDeployWorkflow.run, workflow_id(host)).execute_update(
            MtaDeployWorkflow.wait_for, 2)
        assert result.ok and not result.changed
        await client.get_workflow_handle(workflow_id(host)).terminate("test done")
    assert [c.args for c in server.pmta_calls()].count("reload") == 1
