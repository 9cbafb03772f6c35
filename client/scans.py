"""Blocklist scans now: run the real BlocklistScanWorkflow (the one the Schedule runs every few hours,
which acts: starts failovers, extends or ends quarantines) and wait for its summary.
"""

from __future__ import annotations

import datetime as dt
import uuid

from temporalio.client import Client

from models import names
from models.scan_contracts import ScanInput, ScanSummary, manual_scan_id
from models.settings import get_settings

WORKFLOW = "BlocklistScanWorkflow"
#: Same bound as the Schedule's runs (client/schedules.py).
EXECUTION_TIMEOUT = dt.timedelta(hours=2)


async def start_blocklist_scan(client: Client, tenant: str | None = None, task_queue: str | None = None) -> str:
    """Start a scan of the fleet (or one tenant) now; returns its workflow id."""
    if tenant is not None:
        names.tenant(tenant)
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        WORKFLOW, ScanInput(tenant=tenant, act_concurrency=get_settings().blocklist_act_concurrency),
        id=manual_scan_id(stamp),
        task_queue=task_queue or get_settings().task_queue, execution_timeout=EXECUTION_TIMEOUT,
        static_summary=f"Blocklist scan now ({tenant or 'whole fleet'})")
    return handle.id


async def run_blocklist_scan(client: Client, tenant: str | None = None, task_queue: str | None = None
                             ) -> ScanSummary:
    """Run a scan now and wait for its summary (sagas started, quarantines extended, ...)."""
    wid = await start_blocklist_scan(client, tenant, task_queue)
    summary: ScanSummary = await client.get_workflow_handle(wid, result_type=ScanSummary).result()
    return summary
