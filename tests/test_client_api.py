"""client/failovers.py and client/scans.py against the Temporal dev server.

The workflows here are stand-ins with the real names, message names and contract types (the real
saga and scan need a fleet, resolvers and an MTA; they are exercised end to end in
tests/test_failover_*.py). What is tested is the client: typed reads, typed refusals, ids.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from client import failovers, scans
from client.errors import NotRunning, Refused
from models.failover import saga_id
from models.failover_contracts import SagaState
from models.scan_contracts import SCHEDULE_ID, ScanInput, ScanSummary


@workflow.defn(name="FailoverSaga", sandboxed=False)
class HeldSaga:
    def __init__(self) -> None:
        self._state: SagaState | None = None
        self._answer: str | None = None

    @workflow.run
    async def run(self, tenant: str) -> None:
        wid = workflow.info().workflow_id
        self._state = SagaState(tenant=tenant, address=wid.rsplit("/", 1)[1], workflow_id=wid, status="held",
                                reasons=["another listing in 7 days"])
        await workflow.wait_condition(lambda: False)  # a real saga goes on after the answer

    @workflow.query
    def state(self) -> SagaState | None:
        return self._state

    @workflow.update
    async def approve(self, reason: str) -> str:
        self._answer = reason
        return f"approved: {reason}"

    @approve.validator
    def _check(self, reason: str) -> None:
        if self._answer is not None:
            raise ValueError("this failover is not waiting for an operator's decision")


@workflow.defn(name="BlocklistScanWorkflow", sandboxed=False)
class ScanStub:
    @workflow.run
    async def run(self, inp: ScanInput) -> ScanSummary:
        return ScanSummary(targets=3, listed=1, sagas=[f"failover/{inp.tenant}/198.51.100.7"])


async def test_failovers_list_state_approve_and_refusals(temporal_local) -> None:  # type: ignore[no-untyped-def]
    client: Client = temporal_local.client
    tenant, queue = f"cl-{uuid.uuid4().hex[:6]}", f"client-{uuid.uuid4()}"
    wid = saga_id(tenant, "198.51.100.8")
    async with Worker(client, task_queue=queue, workflows=[HeldSaga]):
        handle = await client.start_workflow("FailoverSaga", tenant, id=wid, task_queue=queue)
        state = None
        for _ in range(50):
            state = await failovers.failover_state(client, tenant, "198.51.100.8")
            if state is not None:
                break
        assert isinstance(state, SagaState) and state.status == "held" and state.workflow_id == wid
        listed: dict[str, failovers.OpenFailover] = {}
        for _ in range(100):  # visibility is eventually consistent
            listed = {f.workflow_id: f for f in await failovers.list_failovers(client)}
            if wid in listed:
                break
        assert listed[wid].state is not None and listed[wid].state.tenant == tenant and listed[wid].error is None
        assert await failovers.approve(client, tenant, "198.51.100.8", " checked ") == "approved: checked"
        with pytest.raises(Refused, match="not waiting for an operator's decision"):
            await failovers.approve(client, tenant, "198.51.100.8", "again")
        await handle.terminate("test done")
        with pytest.raises(NotRunning, match=f"no running failover {wid}"):
            await failovers.approve(client, tenant, "198.51.100.8", "too late")
    with pytest.raises(Refused, match="reason must not be empty"):
        await failovers.deny(client, tenant, "198.51.100.8", "  ")
    with pytest.raises(NotRunning, match=f"no running failover failover/{tenant}/198.51.100.99"):
        await failovers.failover_state(client, tenant, "198.51.100.99")


async def test_scan_now_runs_the_scan_workflow(temporal_local, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from temporalio.converter import DataConverter

    from models.settings import get_settings

    client: Client = temporal_local.client
    queue = f"client-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ScanStub]):
        summary = await scans.run_blocklist_scan(client, "client-1", task_queue=queue)
    assert summary == ScanSummary(targets=3, listed=1, sagas=["failover/client-1/198.51.100.7"])
    monkeypatch.setenv("EMAIL_ENGINE_BLOCKLIST_ACT_CONCURRENCY", "7")
    get_settings.cache_clear()
    try:
        wid = await scans.start_blocklist_scan(client, None, task_queue=f"nobody-{uuid.uuid4()}")
    finally:
        monkeypatch.delenv("EMAIL_ENGINE_BLOCKLIST_ACT_CONCURRENCY")
        get_settings.cache_clear()
    assert wid.startswith(f"{SCHEDULE_ID}/now/")
    handle = client.get_workflow_handle(wid)
    started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
    [inp] = DataConverter.default.payload_converter.from_payloads(list(started.input.payloads), [ScanInput])
    assert inp == ScanInput(act_concurrency=7)  # the setting reaches a scan run now
    await handle.terminate("test: no worker on that queue")
