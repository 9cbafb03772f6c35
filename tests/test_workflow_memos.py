"""Workflows carry a memo a person can read in the Web UI (tenant, IP, listing; MTA host)."""

from __future__ import annotations

import uuid

from client.deploys import ensure_deploy_workflow
from client.failovers import start_saga
from models.failover import Listing
from models.failover_contracts import StartSagaRequest


async def test_failover_saga_and_deploy_workflow_have_readable_memos(temporal_local) -> None:  # type: ignore[no-untyped-def]
    client = temporal_local.client
    queue = f"memo-{uuid.uuid4().hex[:8]}"  # no worker: only the start and its metadata are checked
    started = await start_saga(client, StartSagaRequest(
        "memo-t", "127.0.40.99", [Listing(zone="zen.test", target="127.0.40.99", code="127.0.0.2")], "test"), queue)
    handle = client.get_workflow_handle(started.workflow_id)
    memo = await (await handle.describe()).memo()
    assert memo == {"tenant": "memo-t", "ip": "127.0.40.99", "listed_on": "127.0.40.99 on zen.test",
                    "detected_by": "test"}
    await handle.terminate("test done")

    host = f"memo-{uuid.uuid4().hex[:6]}"
    await ensure_deploy_workflow(client, host, queue)
    deploy = client.get_workflow_handle(f"mta-deploy/{host}")
    assert (await (await deploy.describe()).memo())["mta_host"] == host
    await deploy.terminate("test done")
