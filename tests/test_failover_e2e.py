"""End to end with real parts: rbldnsd lists one of a tenant's loopback IPs, the scheduled scan's
workflow (real scanner, real DNS on loopback) detects it, the FailoverSaga quarantines it, activates a
standby (real warmup feature), the MTA deploy workflow renders the pool and reloads real Postfix, and
no new message leaves from the listed IP. Runs on the Temporal dev server (real time)."""

from __future__ import annotations

import uuid

import pytest

from models.blocklist import load_catalog
from models.failover import saga_id
from models.failover_contracts import SagaState
from models.scan_contracts import ScanInput, ScanSummary
from models.settings import get_settings
from tests import failover_e2e as e2e
from tests import failover_support as fs
from tests.servers.postfix import PostfixInstance, postfix_instance  # noqa: F401  (fixture)
from tests.servers.rbldnsd import Rbldnsd
from workflows.blocklist_scan import BlocklistScanWorkflow

LISTED = "127.0.40.11"
POOL_BEFORE = {"127.0.40.11", "127.0.40.12", "127.0.40.13", "127.0.40.14"}


async def test_listing_to_reloaded_postfix(temporal_local, sqlite_url: str, postfix_instance: PostfixInstance,  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pf, url, client = postfix_instance, sqlite_url, temporal_local.client
    e2e.seed_for(url, str(pf.config_dir))
    with Rbldnsd.for_catalog(load_catalog()) as bl:
        for key, value in e2e.env_for(bl.resolver).items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        async with fs.engine_worker(client) as queue:
            # the pool as deployed before the listing: mail leaves from the tenant's four sending IPs
            await _deploy(client, queue)
            pf.send("news@fo11.example", count=60, source=e2e.FEEDER_A)
            pf.sink.wait_for(60, timeout=60)
            assert set(pf.sink.by_source()) <= POOL_BEFORE and LISTED in pf.sink.by_source()

            bl.list("spamhaus-zen", LISTED)
            scan_id = f"scan-{uuid.uuid4().hex[:6]}"
            summary = await client.execute_workflow(BlocklistScanWorkflow.run, ScanInput(), id=scan_id,
                                                    task_queue=queue, result_type=ScanSummary)
            assert summary.sagas == [saga_id("fo-a", LISTED)], summary
            assert not summary.broken_zones, summary.broken_zones
            saga = await client.get_workflow_handle(summary.sagas[0], result_type=SagaState).result()
            assert saga.status == "completed" and saga.decision == "automatic" and saga.standby == "127.0.40.21"
            # Postfix reloaded with the new pool (by the saga's deploy, or by the standby's warmup start when
            # that deploy already included the saga's change: deploys of one host coalesce)
            assert e2e.reloads_since(url, e2e.detected_at(url, scan_id)) and saga.deploy

            st = fs.statuses(url)
            assert st[LISTED] == "quarantine" and st["127.0.40.21"] == "warming"
            warm = await client.get_workflow_handle("warmup/fo-a/127.0.40.21").describe()
            assert warm.status is not None and warm.status.name == "RUNNING"  # the standby's warmup outlives the saga
            assert "reload" in pf.log()

            pf.sink.clear()
            pf.send("news@fo11.example", count=100, source=e2e.FEEDER_A)
            pf.sink.wait_for(100, timeout=60)
            after = pf.sink.by_source()
            assert LISTED not in after, after
            assert set(after) <= (POOL_BEFORE - {LISTED}) | {"127.0.40.21"}, after
            # a second scan: still listed, the quarantine is running, the same saga is not started again
            again = await client.execute_workflow(BlocklistScanWorkflow.run, ScanInput(),
                                                  id=f"scan-{uuid.uuid4().hex[:6]}", task_queue=queue,
                                                  result_type=ScanSummary)
            assert again.sagas == [] and again.extended == [] and again.retired == []
    get_settings.cache_clear()


async def _deploy(client, queue: str) -> None:
    """The initial deploy, through the same MTA deploy workflow the saga uses."""
    from client.deploys import request_deploy

    result = await request_deploy(client, fs.HOST, "initial deploy", "test", task_queue=queue)
    assert result.ok, result.message
