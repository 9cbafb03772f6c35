"""MtaDeployWorkflow: serialized, coalescing deploys; the deploy_tenant_pool contract; the deploy
activity end to end against a real sshd with the real PowerMTA renderer.

In the time-skipping tests the `deploy_mta_host` activity is replaced by a recording stand-in of the
same name (the real one needs an SSH host; it is exercised against the real sshd below and in
tests/test_mta_deploy.py). The concurrency test runs everything real: dev server, sshd, renderer.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Replayer, Worker

from activities.alerts import send_alert
from activities.db import session_scope
from activities.inventory import apply_inventory
from activities.mta.base import backend_for
from activities.mta.deploy import deploy_host, deploy_mta_host, local_render_dir
from activities.mta.ssh import SshEndpoint, SshTarget
from activities.snapshot import load_snapshot
from client.deploys import deploy_status, ensure_deploy_workflow, request_deploy
from client.relay import deploy_tenant_pool
from models.deploy_history import MtaDeployRecord
from models.deploys import (
    DeployOutcome,
    DeployPoolRequest,
    DeployRequest,
    HostDeployRequest,
    HostDeployResult,
    MtaDeployInput,
    workflow_id,
)
from models.enums import IpStatus
from models.settings import get_settings
from models.tables import SendingIp
from tests.mta_fleet import make_dkim_keys, small_inventory
from tests.servers.sshd import SshServer, start_sshd
from workflows.mta_deploy import MtaDeployWorkflow


@dataclass
class FakeHost:
    version: int = 0  # stands for the inventory: what a render at execution time would see
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)  # a deploy has read the version
    deploys: list[tuple[int, int]] = field(default_factory=list)  # (generation, version rendered)
    fail: bool = False


HOSTS: dict[str, FakeHost] = {}


@activity.defn(name="deploy_mta_host")
async def recording_deploy(req: HostDeployRequest) -> HostDeployResult:
    """Stand-in for the SSH deploy: 'renders' the version current at execution time."""
    host = HOSTS[req.host]
    version = host.version
    host.entered.set()
    await host.gate.wait()
    host.deploys.append((req.generation, version))
    return HostDeployResult(host=req.host, generation=req.generation, ok=not host.fail, changed=True,
                            digest=f"v{version}", message="rolled back: reload failed" if host.fail else f"v{version}",
                            rolled_back=host.fail)


def new_host(prefix: str = "wf") -> tuple[str, FakeHost]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    HOSTS[name] = FakeHost()
    return name, HOSTS[name]


async def wait_running(client: Client, host: str) -> None:
    for _ in range(200):
        st = await deploy_status(client, host)
        if st is not None and st.running:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("deploy never started")


async def test_requests_during_a_deploy_are_coalesced_into_one_newer_deploy(temporal_time_skipping) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_time_skipping.client
    queue = f"mta-{uuid.uuid4().hex[:8]}"
    host, fake = new_host()
    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow],
                      activities=[recording_deploy, send_alert]):
        await ensure_deploy_workflow(client, host, queue)
        handle = client.get_workflow_handle_for(MtaDeployWorkflow.run, workflow_id(host))
        first = await handle.start_update(MtaDeployWorkflow.deploy, DeployRequest("change 0", "test"),
                                          wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await asyncio.wait_for(fake.entered.wait(), 30)  # deploy 1 has rendered "version 0"
        later = []
        for i in range(1, 5):  # four changes land while deploy 1 runs
            fake.version = i
            later.append(await handle.start_update(MtaDeployWorkflow.deploy, DeployRequest(f"change {i}", "test"),
                                                   wait_for_stage=WorkflowUpdateStage.ACCEPTED))
        fake.gate.set()
        r1 = await first.result()
        rest = [await h.result() for h in later]
        assert (r1.generation, r1.digest) == (1, "v0")
        assert {(r.generation, r.digest) for r in rest} == {(2, "v4")}  # one more deploy, newest inventory
        assert fake.deploys == [(1, 0), (2, 4)]
        # Idle again: a new request opens generation 3; `request` returns at once with that number.
        fake.version = 5
        gen = await handle.execute_update(MtaDeployWorkflow.request, DeployRequest("later", "test"))
        assert gen == 3
        r3 = await handle.execute_update(MtaDeployWorkflow.wait_for, 3)
        assert r3.digest == "v5"
        st = await handle.query(MtaDeployWorkflow.status)
        assert (st.requested, st.started, st.completed, st.running) == (3, 3, 3, False)
        await handle.terminate("test done")
    # The recorded history replays deterministically with the current workflow code.
    await Replayer(workflows=[MtaDeployWorkflow]).replay_workflow(await handle.fetch_history())


async def test_many_waiting_callers_are_not_limited_by_in_flight_updates(temporal_time_skipping) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_time_skipping.client
    queue = f"mta-{uuid.uuid4().hex[:8]}"
    host, fake = new_host()
    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow],
                      activities=[recording_deploy, send_alert]):
        first = asyncio.ensure_future(request_deploy(client, host, "first", "test", task_queue=queue, poll=0.2))
        await asyncio.wait_for(fake.entered.wait(), 30)
        fake.version = 1
        callers = [asyncio.ensure_future(request_deploy(client, host, f"c{i}", "test", task_queue=queue, poll=0.2))
                   for i in range(15)]  # Temporal allows 10 in-flight updates per workflow
        for _ in range(600):  # until all 15 have joined the pending deploy
            st = await deploy_status(client, host)
            if st is not None and st.pending == 15:
                break
            await asyncio.sleep(0.05)
        assert st is not None and st.pending == 15 and st.running
        fake.gate.set()
        results = await asyncio.gather(first, *callers)
        assert results[0].generation == 1
        assert {(r.generation, r.digest) for r in results[1:]} == {(2, "v1")}
        assert fake.deploys == [(1, 0), (2, 1)]
        await client.get_workflow_handle(workflow_id(host)).terminate("test done")


async def test_a_waiting_caller_learns_when_the_workflow_is_terminated(temporal_time_skipping) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_time_skipping.client
    queue = f"mta-{uuid.uuid4().hex[:8]}"
    host, fake = new_host()
    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow],
                      activities=[recording_deploy, send_alert]):
        caller = asyncio.ensure_future(request_deploy(client, host, "x", "test", task_queue=queue, poll=0.05))
        await wait_running(client, host)
        await client.get_workflow_handle(workflow_id(host)).terminate("operator stopped it")
        with pytest.raises(RuntimeError, match="ended \\(TERMINATED\\) before deploying generation 1"):
            await asyncio.wait_for(caller, 30)
        fake.gate.set()


async def test_continues_as_new_when_idle_and_keeps_counting(temporal_time_skipping) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_time_skipping.client
    queue = f"mta-{uuid.uuid4().hex[:8]}"
    host, fake = new_host()
    fake.gate.set()
    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow],
                      activities=[recording_deploy, send_alert]):
        first = await client.start_workflow(MtaDeployWorkflow.run, MtaDeployInput(host=host, max_history=12),
                                            id=workflow_id(host), task_queue=queue)
        gens = []
        for i in range(5):
            fake.version = i
            r = await request_deploy(client, host, f"change {i}", "test", task_queue=queue)
            gens.append(r.generation)
        assert gens == [1, 2, 3, 4, 5]
        assert [d[0] for d in fake.deploys] == [1, 2, 3, 4, 5]
        desc = await client.get_workflow_handle(workflow_id(host)).describe()
        assert desc.run_id != first.result_run_id  # history grew past 12 events: a new run took over
        st = await deploy_status(client, host)
        assert st is not None and st.completed == 5 and st.last is not None and st.last.digest == "v4"
        await client.get_workflow_handle(workflow_id(host)).terminate("test done")


@workflow.defn(sandboxed=False)
class CallerWorkflow:
    """What the warmup/failover workflows do: call the contract activity by name."""

    @workflow.run
    async def run(self, req: DeployPoolRequest) -> DeployOutcome:
        return await workflow.execute_activity(
            "deploy_tenant_pool", req, result_type=DeployOutcome, start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=60), retry_policy=RetryPolicy(maximum_attempts=2))


async def test_deploy_tenant_pool_contract(temporal_time_skipping, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_time_skipping.client
    queue = f"mta-{uuid.uuid4().hex[:8]}"
    host, fake = new_host("pool")
    fake.gate.set()
    apply_inventory(small_inventory(host, enabled=False), actor="test", url=sqlite_url)
    tenant = f"dt-a-{host}"
    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow, CallerWorkflow],
                      activities=[recording_deploy, send_alert, deploy_tenant_pool]):
        out = await client.execute_workflow(CallerWorkflow.run, DeployPoolRequest(tenant, "warmup advanced", "t"),
                                            id=f"caller-{uuid.uuid4().hex[:8]}", task_queue=queue)
        assert out == DeployOutcome(host=host, generation=1, changed=True, message="v0")

        fake.fail = True
        with pytest.raises(Exception) as exc:
            await client.execute_workflow(CallerWorkflow.run, DeployPoolRequest(tenant, "failover", "t"),
                                          id=f"caller-{uuid.uuid4().hex[:8]}", task_queue=queue)
        cause = exc.value.__cause__
        assert isinstance(cause, ActivityError) and isinstance(cause.__cause__, ApplicationError)
        assert cause.__cause__.type == "DeployFailed" and cause.__cause__.non_retryable
        assert "reload failed" in str(cause.__cause__)
        assert len(fake.deploys) == 2  # not retried

        with pytest.raises(Exception) as exc:
            await client.execute_workflow(CallerWorkflow.run, DeployPoolRequest("no-such-tenant", "x", "t"),
                                          id=f"caller-{uuid.uuid4().hex[:8]}", task_queue=queue)
        assert exc.value.__cause__.__cause__.type == "UnknownTenant"  # type: ignore[union-attr]
        await client.get_workflow_handle(workflow_id(host)).terminate("test done")


# --- the real deploy activity --------------------------------------------------------------------------


@pytest.fixture
def ssh_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshServer]:
    with start_sshd(tmp_path / "sshd", address="127.0.11.1") as server:
        for k, v in server.settings_env().items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        yield server
        get_settings.cache_clear()


async def test_disabled_host_is_rendered_to_var_only(db_url: str) -> None:
    host = f"off-{uuid.uuid4().hex[:8]}"
    # Nothing listens at 127.0.11.250: contacting the host would fail the deploy.
    apply_inventory(small_inventory(host, enabled=False, address="127.0.11.250"), actor="test", url=db_url)
    r = await deploy_host(HostDeployRequest(host=host, generation=1, reason="t", actor="t"))
    out = local_render_dir(host)
    assert r.ok and r.changed and r.target == str(out) and "not contacted" in r.message
    assert (out / "config").is_file() and any((out / "email-engine").rglob("*.conf"))
    assert (out / "config").read_text().count("include") >= 1
    again = await deploy_host(HostDeployRequest(host=host, generation=2, reason="t", actor="t"))
    assert again.ok and not again.changed and again.digest == r.digest
    with session_scope(db_url) as s:
        rows = list(s.exec(select(MtaDeployRecord).where(MtaDeployRecord.host == host)))
    assert [(x.generation, x.ok, x.changed) for x in rows] == [(1, True, True), (2, True, False)]


async def test_five_concurrent_changes_converge_on_the_final_inventory(  # type: ignore[no-untyped-def]
        temporal_local, sqlite_url: str, ssh_server: SshServer, tmp_path: Path) -> None:
    client: Client = temporal_local.client
    queue = f"mta-{uuid.uuid4().hex[:8]}"
    host = f"e2e-{uuid.uuid4().hex[:8]}"
    inv = small_inventory(host, enabled=True, port=ssh_server.port, user=ssh_server.user,
                          config_dir=str(ssh_server.config_dir), ips_per_tenant=4, key_dir=tmp_path / "dkim")
    make_dkim_keys(inv)  # a deploy ships every key its config names
    apply_inventory(inv, actor="test", url=sqlite_url)
    (ssh_server.config_dir / "config").write_text("# operator settings\n")
    with session_scope(sqlite_url) as s:
        addresses = [ip.address for ip in s.exec(select(SendingIp).order_by(col(SendingIp.id)))][:5]

    async def change_and_deploy(address: str) -> HostDeployResult:
        with session_scope(sqlite_url) as s:  # the inventory change (a quarantine), committed first
            ip = s.exec(select(SendingIp).where(SendingIp.address == address)).one()
            ip.status = IpStatus.QUARANTINE
        return await request_deploy(client, host, f"quarantine {address}", "test", task_queue=queue)

    async with Worker(client, task_queue=queue, workflows=[MtaDeployWorkflow],
                      activities=[deploy_mta_host, send_alert]):
        results = await asyncio.gather(*(change_and_deploy(a) for a in addresses))
        assert all(r.ok for r in results), [r.message for r in results]
        generations = sorted({r.generation for r in results})
        with session_scope(sqlite_url) as s:
            rows = list(s.exec(select(MtaDeployRecord).where(MtaDeployRecord.host == host)))
        assert sorted(r.generation for r in rows) == generations  # one deploy per generation, none lost
        snapshot = load_snapshot(sqlite_url).for_host(host)
        backend = backend_for(snapshot.hosts[0].backend)
        rendered = backend.render(snapshot, config_dir=str(ssh_server.config_dir))
        async with SshTarget(SshEndpoint.for_host(snapshot.hosts[0])) as target:
            deployed = await backend.read_back(target, str(ssh_server.config_dir))
        assert deployed == backend.expected_read_back(rendered)  # the final inventory is what runs
        assert max(results, key=lambda r: r.generation).digest == rendered.digest
        text = "".join(deployed.values())
        for address in addresses:  # every one of the five changes is in the deployed config
            assert re.search(rf"^# {re.escape(address)} \(quarantine\b.*\): NOT in any pool$", text, re.M), address
        reloads = [c for c in ssh_server.pmta_calls() if c.args == "reload"]
        assert 1 <= len(reloads) <= len(generations)
        # A repeated request with no inventory change is a no-op: no upload, no reload.
        again = await request_deploy(client, host, "no change", "test", task_queue=queue)
        assert again.ok and not again.changed
        assert len([c for c in ssh_server.pmta_calls() if c.args == "reload"]) == len(reloads)
        await client.get_workflow_handle(workflow_id(host)).terminate("test done")
